import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders

@Suite("Episode lines without filler: reactions dropped, neighbours' captions given once, in full", .timeLimit(.minutes(1)))
struct EpisodeFillerTests {
    let t0 = Date(timeIntervalSince1970: 1_763_759_979)  // 21 November 2025
    let user = UserKey("u_aaaaaaaaaaaaaaaaaaaaaaaaaa")!

    @Test("a sentence that only reacts is dropped; a line that is nothing but reaction stays whole")
    func reactions() {
        #expect(EpisodeFiller.trimmed("Wow, that's great, Caroline! I went to a pottery class yesterday.") == "I went to a pottery class yesterday.")
        #expect(EpisodeFiller.trimmed("Thanks, Mel! Glad you like it. What did you paint?") == "What did you paint?")
        #expect(EpisodeFiller.trimmed("Thanks, Mel! Awesome!") == "Thanks, Mel! Awesome!")
        // Questions, numbers and content words are never a reaction.
        #expect(!EpisodeFiller.isReaction("Wow, is that new?"))
        #expect(!EpisodeFiller.isReaction("Great, see you at 10."))
        #expect(!EpisodeFiller.isReaction("Thanks, I love hiking."))
        #expect(EpisodeFiller.isReaction("That's so cool, Jon!"))
        #expect(EpisodeFiller.trimmed("I booked Friday at 10 a.m. for the cleaning.") == "I booked Friday at 10 a.m. for the cleaning.")
    }

    @Test("a neighbour line leaves its image caption to its own episode; a caption alone stays")
    func captions() {
        let turn = "Here's my latest painting! [shared an image: a photo of a sunset over a lake]"
        #expect(EpisodeFiller.neighbour(turn) == "Here's my latest painting!")
        #expect(EpisodeFiller.neighbour("[shared an image: a photo of a dog]") == "[shared an image: a photo of a dog]")
        #expect(EpisodeFiller.withoutCaptions("a [shared an image: x] b [shared an image: y") == "a b")
        let turns = [
            Conversation.Turn(index: 0, speaker: .caller, text: turn),
            Conversation.Turn(index: 1, speaker: .agent, text: "Wow, Caroline! The colours of that sunset over the lake are stunning."),
        ]
        let memories = LocalExtractor().extractNow(Conversation(conversationID: "c1", startedAt: t0, turns: turns)).memories
        let own = memories.first { $0.kind == "conversation" && $0.sourceTurns == [0] }
        let reply = memories.first { $0.kind == "conversation" && $0.sourceTurns == [0, 1] }
        #expect(own?.content.contains("[shared an image: a photo of a sunset over a lake]") == true)
        #expect(
            reply?.content
                == "On 21 November 2025:\ncaller: Here's my latest painting!\nagent: The colours of that sunset over the lake are stunning.")
    }

    @Test("odd text never traps and never grows")
    func oddInput() {
        for text in ["", "!", "?", "[", "]", "[shared an image:", "]]]][[[", "…", "Hi.  ", "\n\n", "Wow! [shared an image: ] !", "a.b.c. d! e?"] {
            #expect(EpisodeFiller.trimmed(text).count <= text.count)
            #expect(EpisodeFiller.neighbour(text).count <= text.count)
        }
    }

    func memory(_ id: String, _ content: String, turns: [Int]) -> Memory {
        Memory(
            id: id, tenant: "t", user: user, sector: .episodic, content: content, importance: 0.5, salience0: 0.6, reinforcedAt: t0,
            validFrom: t0, sources: [MemorySource(conversationID: "c1", turns: turns, kind: "conversation", extractor: "local-v1")], createdAt: t0)
    }

    @Test("a turn given without its caption is given whole when its own episode comes, within the budget")
    func fullerLine() {
        let reply = memory("r", "On 21 November 2025:\ncaller: Here's my painting!\nagent: Stunning colours.", turns: [0, 1])
        let own = memory("o", "On 21 November 2025:\ncaller: Here's my painting! [shared an image: a photo of a sunset]", turns: [0])
        var packer = AnswerPacker(budget: 1000)
        #expect(packer.add(reply) == .added)
        #expect(packer.add(own) == .merged)
        #expect(packer.text == "On 21 November 2025:\ncaller: Here's my painting! [shared an image: a photo of a sunset]\nagent: Stunning colours.")
        #expect(packer.text.count == packer.used)
        #expect(packer.add(own) == .redundant)
        // No room for the caption: the shorter line stays.
        var tight = AnswerPacker(budget: reply.content.count + 5)
        #expect(tight.add(reply) == .added)
        #expect(tight.add(own) == .overBudget)
        #expect(tight.text == reply.content)
        // A line is never swapped for a longer one that drops its words (an agent's question).
        var agent = AnswerPacker(budget: 1000)
        #expect(agent.add(memory("a", "On 21 November 2025:\nagent: It is lovely.", turns: [4])) == .added)
        #expect(agent.add(memory("b", "On 21 November 2025:\nagent: Lovely. Where was it?", turns: [4])) == .redundant)
    }

    @Test("whatever is offered, the answer never passes its budget and gives every turn once")
    func budgetHoldsWithFullerLines() {
        let base = [
            memory("r", "On 21 November 2025:\ncaller: Here's my painting!\nagent: Stunning colours.", turns: [0, 1]),
            memory("o", "On 21 November 2025:\ncaller: Here's my painting! [shared an image: a photo of a sunset]", turns: [0]),
            memory("n", "On 21 November 2025:\nagent: Stunning colours. [shared an image: a photo of a lake]\ncaller: Thanks.", turns: [1, 2]),
            memory("f", "On 21 November 2025 the caller said: I love painting.", turns: [0]),
        ]
        for budget in [0, 20, 60, 80, 100, 120, 150, 200, 400] {
            for _ in 0..<20 {
                let answer = AnswerPacker.pack(base.shuffled(), budget: budget)
                #expect(answer.text.count <= budget)
                #expect(answer.text.count == answer.used)
                let lines = answer.text.split(separator: "\n").filter { $0.hasPrefix("caller: ") || $0.hasPrefix("agent: ") }
                #expect(lines.count == Set(lines.map { $0.prefix(18) }).count)
            }
        }
    }
}

@Suite("A stated fact is taken back when an episode gives its whole turn: the answer says it once", .timeLimit(.minutes(1)))
struct AnswerTakeBackTests {
    let t0 = Date(timeIntervalSince1970: 1_763_759_979)  // 21 November 2025
    let user = UserKey("u_aaaaaaaaaaaaaaaaaaaaaaaaaa")!

    func memory(_ id: String, _ content: String, turns: [Int], conversation: String = "c1") -> Memory {
        Memory(
            id: id, tenant: "t", user: user, sector: .episodic, content: content, importance: 0.5, salience0: 0.6, reinforcedAt: t0,
            validFrom: t0, sources: [MemorySource(conversationID: conversation, turns: turns, kind: "conversation", extractor: "local-v1")],
            createdAt: t0)
    }

    @Test("the fact goes when its turn comes whole, and what it frees is left for the memories after")
    func factTakenBack() {
        let fact = memory("f", "On 21 November 2025 the caller said: I went to a pottery class.", turns: [3])
        let episode = memory("e", "On 21 November 2025:\nagent: How was your week?\ncaller: I went to a pottery class. It was fun.", turns: [2, 3])
        let later = memory("l", "On 21 November 2025:\ncaller: My sister visits on Sunday.", turns: [9])
        let budget = fact.content.count + 1 + episode.content.count + 1 + later.content.count - 5
        var packer = AnswerPacker(budget: budget)
        #expect(packer.add(fact) == .added)
        #expect(packer.add(episode) == .added)
        #expect(packer.items.count == 1)
        #expect(packer.text == episode.content)
        #expect(packer.used == packer.text.count)
        #expect(packer.add(fact) == .redundant)
        #expect(packer.add(later) == .added)
        #expect(packer.text.count <= budget)
        #expect(packer.text.count == packer.used)
        #expect(packer.citedTurns.contains(AnswerPacker.TurnRef(conversationID: "c1", turn: 3)))
    }

    @Test("a fact that says more than the line, cites other turns, comes from another call or holds a slot stays")
    func factsThatStay() {
        var slotted = AnswerPacker(budget: 2000)
        var current = memory("s", "The caller's favourite colour is green.", turns: [0])
        current.slot = "favourite.colour"
        #expect(slotted.add(current) == .added)
        #expect(slotted.add(memory("e0", "On 21 November 2025:\ncaller: My favourite colour is green now.", turns: [0])) == .added)
        #expect(slotted.items.first?.text == "The caller's favourite colour is green.")
        var packer = AnswerPacker(budget: 2000)
        #expect(packer.add(memory("n", "The caller's name is Dana.", turns: [0])) == .added)
        #expect(packer.add(memory("two", "On 21 November 2025 the caller said: Hi.", turns: [0, 1])) == .added)
        #expect(packer.add(memory("other", "On 21 November 2025 the caller said: Hi there Alex.", turns: [0], conversation: "c2")) == .added)
        #expect(packer.add(memory("e", "On 21 November 2025:\ncaller: Hi there Alex.\nagent: Hi Dana!", turns: [0, 1])) == .added)
        #expect(packer.items.count == 4)
        #expect(packer.used == packer.text.count)
    }

    @Test("shuffled facts and episodes: the budget holds, the text is what is counted, no turn's line twice")
    func budgetHolds() {
        let memories = [
            memory("f1", "On 21 November 2025 the caller said: I went to a pottery class.", turns: [3]),
            memory("f2", "On 21 November 2025 the agent said: That sounds fun.", turns: [4]),
            memory("e1", "On 21 November 2025:\nagent: How was your week?\ncaller: I went to a pottery class. It was fun.", turns: [2, 3]),
            memory("e2", "On 21 November 2025:\ncaller: I went to a pottery class. It was fun.\nagent: That sounds fun.", turns: [3, 4]),
            memory("e3", "On 21 November 2025:\nagent: That sounds fun. [shared an image: a bowl]", turns: [4]),
        ]
        for budget in [0, 30, 60, 90, 120, 160, 200, 260, 400] {
            for _ in 0..<30 {
                let answer = AnswerPacker.pack(memories.shuffled(), budget: budget)
                #expect(answer.text.count <= budget)
                #expect(answer.text.count == answer.used)
            }
        }
    }
}

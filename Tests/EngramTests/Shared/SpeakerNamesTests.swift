import Foundation
import Testing

@testable import EngramCore
@testable import EngramProviders

@Suite("Speaker names: who is who from how the two sides address each other, used by the keyword index only", .timeLimit(.minutes(1)))
struct SpeakerNamesTests {
    let t0 = Date(timeIntervalSince1970: 1_763_759_979)  // 21 November 2025

    func turn(_ index: Int, _ speaker: Conversation.Speaker, _ text: String) -> Conversation.Turn {
        Conversation.Turn(index: index, speaker: speaker, text: text)
    }

    @Test("a name one side addresses goes to the other side, a name a side gives itself to that side")
    func learnsBothSides() {
        let names = SpeakerNames.learn(from: [
            turn(0, .caller, "Hey Mel! Long time no talk."),
            turn(1, .agent, "Hi Caroline, good to hear from you! How was the weekend?"),
            turn(2, .caller, "Great, thanks. I painted a sunset. Yeah, it took all Sunday."),
            turn(3, .agent, "That's lovely, Caroline! I love sunsets."),
            turn(4, .caller, "Melanie, you should come see it."),
        ])
        #expect(names.caller == ["Caroline"])
        #expect(names.agent == ["Mel", "Melanie"])
        #expect(names.names(of: .caller) == ["Caroline"])
    }

    @Test("self-introductions count for the speaker; sentence starters and weekdays are not names; a tie names nobody")
    func introductionsAndNonNames() {
        let names = SpeakerNames.learn(from: [
            turn(0, .agent, "Thanks for calling, this is Sam. Who am I speaking with?"),
            turn(1, .caller, "Hi, my name is Dana. Yeah, Friday! Okay, Monday."),
            turn(2, .agent, "Great, Dana. Wow, Tuesday works too."),
            turn(3, .caller, "I'm Alex."),
            turn(4, .caller, "Thanks, Alex."),
        ])
        #expect(names.caller == ["Dana"])
        #expect(names.agent == ["Sam"])  // "Alex": one vote each way
    }

    @Test("the index text drops the names that address someone, keeps other mentions, and adds the speaker's names")
    func indexText() {
        let content = "On 21 November 2025:\nagent: Wow, Caroline! Mel's painting is lovely.\ncaller: Thanks, Mel. Caroline here, I painted it."
        let text = SpeakerNames.indexText(content, addressedNames: ["Caroline", "Mel"], speakerNames: ["Caroline"])
        let terms = TextNormalizer.terms(text)
        #expect(terms.filter { $0 == "mel" }.count == 1)  // "Mel's painting" stays; "Thanks, Mel." goes
        #expect(terms.filter { $0 == "caroline" }.count == 2)  // "Caroline here" and the speaker's name; "Wow, Caroline!" goes
        #expect(text.hasSuffix("\nCaroline"))
        #expect(SpeakerNames.indexText("caller: hello", addressedNames: [], speakerNames: []) == "caller: hello")
    }

    @Test("strange input never traps: empty, emoji, combining marks, lone punctuation")
    func strangeInput() {
        let odd = ["", "!", ",", "Hey 👋🏽 Zoë!", "e\u{301}, Ana!", String(repeating: "Hey Bo! ", count: 200), "Thanks,\nMel\n?"]
        let names = SpeakerNames.learn(from: odd.enumerated().map { turn($0.offset, $0.offset % 2 == 0 ? .caller : .agent, $0.element) })
        for text in odd {
            _ = SpeakerNames.indexText(text, addressedNames: Set(names.caller + names.agent + ["Ana", "Bo"]), speakerNames: names.agent)
        }
        #expect(names.caller.contains("Bo"))
        #expect(names.agent.contains("Ana"))
    }

    @Test("the local extractor indexes each memory with its speaker's names; the memory's text is unchanged")
    func extractorIndexes() throws {
        let conversation = Conversation(
            conversationID: "c", startedAt: t0,
            turns: [
                turn(0, .caller, "Hey Mel, I went to a pottery class yesterday and made a bowl."),
                turn(1, .agent, "Wow, Caroline! That sounds like so much fun, I love pottery."),
            ])
        let memories = LocalExtractor().extractNow(conversation).memories
        let callerEpisode = try #require(memories.first { $0.content.hasPrefix("On 21 November 2025:\ncaller: ") })
        #expect(callerEpisode.content.contains("Hey Mel, I went"))
        let callerTerms = TextNormalizer.terms(try #require(callerEpisode.indexText))
        #expect(callerTerms.contains("caroline") && !callerTerms.contains("mel"))
        let agentFact = try #require(memories.first { $0.content.hasPrefix("On 21 November 2025 the agent said:") })
        let agentTerms = TextNormalizer.terms(try #require(agentFact.indexText))
        #expect(agentTerms.contains("mel") && !agentTerms.contains("caroline"))
    }

    @Test("an episode carries the turn before, and the turn after only when its own turn asks something")
    func episodeShape() {
        let conversation = Conversation(
            conversationID: "c", startedAt: t0,
            turns: [
                turn(0, .agent, "Good morning, how can I help?"),
                turn(1, .caller, "I would like to book a cleaning for my teeth."),
                turn(2, .agent, "Of course, we have Friday at ten open."),
                turn(3, .caller, "Could you check whether Monday afternoon works instead?"),
                turn(4, .agent, "Monday at three is free, I have booked it."),
            ])
        let episodes = LocalExtractor().extractNow(conversation).memories.filter { $0.content.hasPrefix("On 21 November 2025:\n") }
        let byCentre = Dictionary(episodes.map { ($0.sourceTurns, $0) }, uniquingKeysWith: { a, _ in a })
        #expect(byCentre[[0, 1]] != nil)  // a statement: the question before it, not the reply after
        #expect(byCentre[[1, 2]] != nil)
        #expect(byCentre[[2, 3, 4]] != nil)  // turn 3 asks: its answer travels with it
        #expect(byCentre[[3, 4]] != nil)
        #expect(!episodes.contains { $0.sourceTurns == [0, 1, 2] || $0.sourceTurns == [1, 2, 3] })
    }
    @Test("the quick word check before the patterns passes every text a pattern finds a name in", .timeLimit(.minutes(1)))
    func quickCheckLosesNothing() {
        let pieces = [
            "Hey Mel!", "thanks, Dana.", "Maria, that's great", "this is Jon", "I'm Sam here", "wow Caroline", "Yes, sure.", "ok",
            "McDonald,", "Zoë!", "Paris", "BOB,", "a", ",", "!", " ", "Friday at ten.", "call me Al.", "Hi Supercalifragilisticexpi!",
            "über", "— Jo.", "(Ann)", "\n", "😀 Eve!",
        ]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<5_000 {
            let text = (0..<Int.random(in: 1...6, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined(
                separator: [" ", "", ", ", ". "].randomElement(using: &rng)!)
            let found = SpeakerNames.addressed(in: text, quickCheck: false).union(SpeakerNames.introduced(in: text, quickCheck: false))
            if !found.isEmpty { #expect(SpeakerNames.mayHoldName(text), "\(text)") }
            #expect(SpeakerNames.addressed(in: text) == SpeakerNames.addressed(in: text, quickCheck: false))
        }
        #expect(!SpeakerNames.mayHoldName("yes, Friday works. Thanks!"))
        #expect(SpeakerNames.mayHoldName("Thanks, Dana."))
    }
}

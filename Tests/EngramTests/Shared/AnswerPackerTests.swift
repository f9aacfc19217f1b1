import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders

@Suite("Recall answers: packed within a budget, no turn twice, dated facts", .timeLimit(.minutes(1)))
struct AnswerPackerTests {
    let t0 = Date(timeIntervalSince1970: 1_763_759_979)  // 21 November 2025, a Friday
    let user = UserKey("u_aaaaaaaaaaaaaaaaaaaaaaaaaa")!

    func memory(_ id: String, _ content: String, turns: [Int], conversation: String? = "c1", kind: String = "conversation") -> Memory {
        Memory(
            id: id, tenant: "t", user: user, sector: .episodic, content: content, importance: 0.5, salience0: 0.6, reinforcedAt: t0,
            validFrom: t0, sources: [MemorySource(conversationID: conversation, turns: turns, kind: kind, extractor: "local-v1")], createdAt: t0)
    }

    /// The local extractor's episodes for a call of `count` alternating turns.
    func episodes(_ count: Int, conversation: String = "c1") -> [Memory] {
        let turns = (0..<count).map {
            Conversation.Turn(index: $0, speaker: $0 % 2 == 0 ? .caller : .agent, text: "turn number \($0) about the garden \($0) in \(conversation)")
        }
        let extraction = LocalExtractor().extractNow(Conversation(conversationID: conversation, startedAt: t0, turns: turns))
        return extraction.memories.enumerated().map { i, m in
            memory("\(conversation)-\(i)", m.content, turns: m.sourceTurns, conversation: conversation)
        }
    }

    @Test("overlapping episodes merge into one passage that gives every turn once")
    func overlappingEpisodesMerge() {
        let answer = AnswerPacker.pack(episodes(6), budget: 10_000)
        #expect(answer.items.count == 1)
        let lines = answer.text.split(separator: "\n").filter { $0.hasPrefix("caller: ") || $0.hasPrefix("agent: ") }
        #expect(lines == (0..<6).map { "\($0 % 2 == 0 ? "caller" : "agent"): turn number \($0) about the garden \($0) in c1" })
        #expect(answer.citedTurns == Set((0..<6).map { AnswerPacker.TurnRef(conversationID: "c1", turn: $0) }))
        #expect(answer.text.count == answer.used)
    }

    @Test("the answer never passes its budget, whatever the budget and the memories")
    func budgetHolds() {
        let memories =
            episodes(9) + episodes(7, conversation: "c2")
            + [memory("f", "The caller likes roses.", turns: [2]), memory("s", "Call on 21 November 2025: a summary.", turns: [], kind: "summary")]
        for budget in [0, 1, 15, 40, 80, 150, 300, 700, 1000, 2000, 5000] {
            let answer = AnswerPacker.pack(memories.shuffled(), budget: budget)
            #expect(answer.text.count <= budget)
            #expect(answer.text.count == answer.used)
            let lines = answer.text.split(separator: "\n").filter { $0.hasPrefix("caller: ") || $0.hasPrefix("agent: ") }
            #expect(lines.count == Set(lines).count)
        }
    }

    @Test("a fact whose turns were already given word for word, and a repeated text, are dropped; what does not fit is passed over")
    func redundantAndOverBudget() {
        var packer = AnswerPacker(budget: 200)
        let episode = memory("e", "On 21 November 2025:\ncaller: I love roses.\nagent: Roses are lovely.", turns: [3, 4])
        #expect(packer.add(episode) == .added)
        #expect(packer.add(memory("f", "The caller likes roses.", turns: [3])) == .redundant)
        #expect(packer.add(memory("s", "Call on 21 November 2025: roses.", turns: [], kind: "summary")) == .added)
        #expect(packer.add(memory("s2", "Call on 21 November 2025: roses.", turns: [], kind: "summary")) == .redundant)
        #expect(packer.add(memory("big", String(repeating: "x", count: 500), turns: [9])) == .overBudget)
        #expect(packer.add(memory("small", "The caller's name is Dana.", turns: [0])) == .added)
        #expect(packer.items.count == 3)
        #expect(packer.text.count <= 200)
    }

    @Test("a fact given first does not hide the words of its turn; the item limit caps entries but not merges")
    func factsThenEpisodesAndItemLimit() {
        var packer = AnswerPacker(budget: 1000, maxItems: 1)
        #expect(packer.add(memory("f", "The caller likes roses.", turns: [3])) == .added)
        #expect(packer.add(memory("e", "On 21 November 2025:\ncaller: I love roses.", turns: [3])) == .itemLimit)
        var open = AnswerPacker(budget: 1000, maxItems: 1)
        #expect(open.add(memory("e", "On 21 November 2025:\ncaller: I love roses.\nagent: Lovely.", turns: [3, 4])) == .added)
        #expect(open.add(memory("e2", "On 21 November 2025:\nagent: Lovely.\ncaller: Yes, red ones.", turns: [4, 5])) == .merged)
        #expect(open.text == "On 21 November 2025:\ncaller: I love roses.\nagent: Lovely.\ncaller: Yes, red ones.")
    }

    @Test("content that does not parse as an episode is one opaque entry, and odd input never traps")
    func oddInput() {
        let odd = [
            memory("a", "", turns: []), memory("b", "On 21 November 2025:\ncaller: one line but two turns", turns: [1, 2]),
            memory("c", "On x:\nnobody: hi", turns: [1]), memory("d", "On x:\ncaller: a\ncaller: b", turns: [5, 5]),
            memory("e", "\n\n\n", turns: [-1, Int.max]), memory("f", "On :\ncaller: ", turns: [0], conversation: nil),
            memory("g", "On x:\ncaller: a\nagent: b", turns: [Int.max, Int.min]),
            memory("h", "On x:\nagent: c\ncaller: d", turns: [Int.min, Int.max]),
        ]
        let answer = AnswerPacker.pack(odd, budget: 1000)
        #expect(answer.text.count <= 1000)
        #expect(answer.items.contains { $0.text == "On 21 November 2025:\ncaller: one line but two turns" })
        #expect(AnswerPacker.pack(odd, budget: -5).items.isEmpty)
    }

    @Test("every slot the local extractor names comes from a fixed vocabulary, never from the caller's words (slots are stored in clear)")
    func slotsNeverCarryWords() {
        let turns = [
            Conversation.Turn(
                index: 0, speaker: .caller, text: "My favourite oncologist is Dr Zed. My favourite colour is teal. I'm allergic to penicillin."),
            Conversation.Turn(index: 1, speaker: .agent, text: "Your chemotherapy is booked for Monday at 9 am. Hi Dana."),
            Conversation.Turn(index: 2, speaker: .caller, text: "My wife is called Ann and I live in Springfield. Call me in the mornings."),
        ]
        let extraction = LocalExtractor().extractNow(Conversation(conversationID: "c", startedAt: t0, turns: turns, dataCollection: ["reason": "x"]))
        let fixed: Set<String> = ["name", "booking", "work", "home.city", "preferred_contact_time", "reason"]
        let slots = extraction.memories.compactMap(\.slot)
        #expect(slots.contains("booking") && slots.contains("favourite.colour"))
        for slot in slots {
            let allowed =
                fixed.contains(slot) || (slot.hasPrefix("favourite.") && PatternFacts.favouriteThings.contains(String(slot.dropFirst(10))))
                || ["family.wife", "family.husband", "family.partner"].contains(slot)
            #expect(allowed, "slot \(slot)")
            #expect(!slot.contains("oncologist") && !slot.contains("chemotherapy"))
        }
    }

    @Test("the fixture's booking becomes one dated fact citing the turns it carries")
    func bookingFact() {
        let turns = [
            Conversation.Turn(
                index: 0, speaker: .agent,
                text: "Hi Dana, welcome back! Last time we talked about moving your cleaning to Friday. How can I help today?"),
            Conversation.Turn(index: 1, speaker: .caller, text: "Yeah, can you check if I still have the Friday slot?"),
            Conversation.Turn(index: 4, speaker: .agent, text: "Yes, you're booked for Friday at 10 a.m."),
        ]
        let facts = DatedFacts.bookings(in: Conversation(conversationID: "c", startedAt: t0, turns: turns), day: "21 November 2025")
        #expect(facts.count == 1)
        #expect(facts.first?.content == "On 21 November 2025 the caller confirmed a cleaning on Friday (28 November 2025) at 10 a.m.")
        #expect(facts.first?.sourceTurns == [0, 1, 4])
        #expect(facts.first?.slot == "booking")

        let booked = DatedFacts.bookings(
            in: Conversation(
                conversationID: "c", startedAt: t0,
                turns: [
                    Conversation.Turn(index: 0, speaker: .caller, text: "I'd like a haircut."),
                    Conversation.Turn(index: 1, speaker: .agent, text: "Done, I have scheduled you for 3 pm tomorrow."),
                ]), day: "21 November 2025")
        #expect(booked.first?.content == "On 21 November 2025 the caller booked a haircut for 3 pm tomorrow (22 November 2025).")
        #expect(booked.first?.sourceTurns == [0, 1])
        // No time or day: no booking.
        #expect(
            DatedFacts.bookings(
                in: Conversation(
                    conversationID: "c", startedAt: t0,
                    turns: [
                        Conversation.Turn(index: 0, speaker: .agent, text: "You are booked, see you then.")
                    ]), day: "21 November 2025"
            ).isEmpty)
    }
}

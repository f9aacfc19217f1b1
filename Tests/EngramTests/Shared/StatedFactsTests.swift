import Foundation
import Testing

@testable import EngramCore
@testable import EngramProviders

@Suite("Stated facts: one dated sentence per event, plan, preference or relation, citing only its turn", .timeLimit(.minutes(1)))
struct StatedFactsTests {
    let t0 = Date(timeIntervalSince1970: 1_763_759_979)  // 21 November 2025, a Friday
    let day = "21 November 2025"

    func facts(_ turns: [Conversation.Turn]) -> [ExtractedMemory] {
        StatedFacts.facts(in: Conversation(conversationID: "c", startedAt: t0, turns: turns), day: day)
    }

    @Test("an event with a relative date becomes a dated sentence of the caller's own words, citing that turn alone")
    func eventWithRelativeDate() {
        let found = facts([
            Conversation.Turn(index: 0, speaker: .agent, text: "Good morning, how have you been?"),
            Conversation.Turn(
                index: 1, speaker: .caller, text: "Oh, not bad! I went to a pottery class yesterday and made a small bowl. Do you do any crafts?"),
            Conversation.Turn(index: 2, speaker: .agent, text: "That sounds lovely."),
        ])
        #expect(
            found.map(\.content) == [
                "On 21 November 2025 the caller said: I went to a pottery class yesterday (20 November 2025) and made a small bowl."
            ])
        #expect(found.first?.sourceTurns == [1])
        #expect(found.first?.validFrom == t0)
        #expect(found.first?.slot == nil)
    }

    @Test("plans, preferences and relations are kept from either side, each sentence apart; questions and small talk are not")
    func plansPreferencesRelations() {
        let found = facts([
            Conversation.Turn(
                index: 3, speaker: .agent, text: "Great news! My husband and I are planning a trip to Lisbon next month. Have you been?"),
            Conversation.Turn(
                index: 4, speaker: .caller,
                text: "Not yet. I really love hiking though, and my daughter started rock climbing. The weather was nice today."),
            Conversation.Turn(index: 5, speaker: .caller, text: "Did you go to the game yesterday?"),
        ])
        #expect(
            found.map(\.content) == [
                "On 21 November 2025 the agent said: My husband and I are planning a trip to Lisbon next month.",
                "On 21 November 2025 the caller said: I really love hiking though, and my daughter started rock climbing.",
            ])
        #expect(found.map(\.sourceTurns) == [[3], [4]])
        // A little below the episodes of the same turns, so a memory budget cuts facts first.
        #expect(found.map(\.importance) == [0.3, 0.45])
    }

    @Test("typographic apostrophes read like straight ones")
    func typographicApostrophe() {
        let found = facts([
            Conversation.Turn(index: 7, speaker: .caller, text: "Honestly? I\u{2019}m learning Spanish for the trip. It helps.")
        ])
        #expect(found.map(\.content) == ["On 21 November 2025 the caller said: I\u{2019}m learning Spanish for the trip."])
        #expect(found.map(\.sourceTurns) == [[7]])
    }

    @Test("a sentence said twice in one call is one fact; a sensitive turn makes a sensitive fact")
    func onceAndSensitive() {
        let found = facts([
            Conversation.Turn(index: 0, speaker: .caller, text: "I moved to Denver last year."),
            Conversation.Turn(index: 2, speaker: .caller, text: "I moved to Denver last year."),
            Conversation.Turn(index: 4, speaker: .caller, text: "My doctor said the surgery went well, I went home yesterday."),
        ])
        #expect(found.count == 2)
        #expect(found.first?.sourceTurns == [0])
        #expect(found.last?.sensitive == true)
        #expect(found.first?.sensitive == false)
    }

    @Test("the local extractor adds stated facts beside the episodes, and the fixture call gives none beyond its booking")
    func extractorAddsThem() {
        let turns = [
            Conversation.Turn(
                index: 0, speaker: .agent,
                text: "Hi Dana, welcome back! Last time we talked about moving your cleaning to Friday. How can I help today?"),
            Conversation.Turn(index: 1, speaker: .caller, text: "Yeah, can you check if I still have the Friday slot?"),
            Conversation.Turn(index: 4, speaker: .agent, text: "Yes, you're booked for Friday at 10 a.m."),
        ]
        let fixture = LocalExtractor().extractNow(Conversation(conversationID: "c", startedAt: t0, turns: turns))
        #expect(!fixture.memories.contains { $0.content.contains(" said: ") })
        #expect(
            fixture.memories.contains { $0.content == "On 21 November 2025 the caller confirmed a cleaning on Friday (28 November 2025) at 10 a.m." })

        let other = LocalExtractor().extractNow(
            Conversation(
                conversationID: "c", startedAt: t0,
                turns: [
                    Conversation.Turn(index: 0, speaker: .caller, text: "We adopted a puppy last week, she is called Pepper.")
                ]))
        #expect(
            other.memories.contains {
                $0.content == "On 21 November 2025 the caller said: We adopted a puppy last week (14 November 2025), she is called Pepper."
                    && $0.sourceTurns == [0]
            })
        #expect(other.memories.contains { $0.content.hasPrefix("On 21 November 2025:\ncaller: ") })
    }

    @Test("odd text never traps and long sentences are clipped")
    func oddText() {
        let long = "I went " + String(repeating: "very far away ", count: 200) + "."
        let found = facts([
            Conversation.Turn(index: 0, speaker: .caller, text: long),
            Conversation.Turn(index: 1, speaker: .caller, text: "?!.\n\n I\u{2019}m going\u{0}"),
            Conversation.Turn(index: Int.max, speaker: .agent, text: ""),
        ])
        #expect(found.allSatisfy { $0.content.utf8.count <= 480 })
        #expect(found.first?.content.hasSuffix("…") == true)
    }
}

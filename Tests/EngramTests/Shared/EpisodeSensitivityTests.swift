import Foundation
import Testing

@testable import EngramCore
@testable import EngramProviders

/// An episode quotes the turn before its own and, for a question, the answer after it: whatever
/// it quotes decides whether it is sensitive, whichever side speaks in its centre turn. A caller's
/// episode that quoted the agent's "your diabetes medication" was stored as not sensitive, and so
/// went into pre-call contexts and searches that leave sensitive memories out.
@Suite("An episode is sensitive when any turn it quotes is", .timeLimit(.minutes(1)))
struct EpisodeSensitivityTests {
    let t0 = Date(timeIntervalSince1970: 1_763_759_979)

    func turn(_ index: Int, _ speaker: Conversation.Speaker, _ text: String) -> Conversation.Turn {
        Conversation.Turn(index: index, speaker: speaker, text: text)
    }

    @Test("a sensitive turn before or after, quoted in either side's episode, makes that episode sensitive")
    func quotedNeighboursDecide() {
        let conversation = Conversation(
            conversationID: "c1", startedAt: t0,
            turns: [
                turn(0, .agent, "The clinic moved your diabetes medication review to next week."),
                turn(1, .caller, "Okay, I will drive over to the shop on Friday afternoon then."),
                turn(2, .caller, "Can you tell me what the doctor said about my results from March?"),
                turn(3, .agent, "The doctor confirmed the diagnosis and will call you about the surgery."),
                turn(4, .caller, "Right, and the garden centre delivery is still booked for Saturday morning."),
                turn(5, .agent, "Yes, the delivery van arrives around nine with the roses and the compost."),
                turn(6, .caller, "Lovely, I will leave the side gate open for the driver that morning."),
            ])
        let memories = LocalExtractor().extractNow(conversation).memories
        let episodes = memories.filter { $0.kind == "conversation" && $0.sourceTurns.count > 1 }
        #expect(episodes.contains { $0.sourceTurns.contains(1) && $0.content.contains("diabetes") }, "the caller's episode quotes the turn before")
        #expect(episodes.contains { $0.sourceTurns.contains(2) && $0.content.contains("diagnosis") }, "a question's episode quotes its answer")
        for episode in episodes where LocalExtractor.isSensitive(episode.content) {
            #expect(episode.sensitive, "turns \(episode.sourceTurns)")
        }
        let plain = episodes.filter { !LocalExtractor.isSensitive($0.content) }
        #expect(!plain.isEmpty && plain.allSatisfy { !$0.sensitive }, "an episode quoting nothing sensitive stays visible")
    }
}

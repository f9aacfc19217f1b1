import Foundation

/// Bounds on the work one event may cause, so no single call holds a worker (and the queue
/// behind it) for more than seconds: at most `maxTurns` turns of at most `maxTurnBytes` UTF-8
/// bytes go to the extractor, and at most `maxMemories` memories come out, the most important
/// first. What is cut is counted, never silently lost.
public struct ExtractionBudget: Sendable, Equatable {
    public var maxMemories: Int
    public var maxTurns: Int
    public var maxTurnBytes: Int

    public static let defaultMaxMemories = 200
    public static let defaultMaxTurns = 2_000
    public static let defaultMaxTurnBytes = 16 * 1024

    public init(maxMemories: Int = defaultMaxMemories, maxTurns: Int = defaultMaxTurns, maxTurnBytes: Int = defaultMaxTurnBytes) {
        self.maxMemories = max(1, maxMemories)
        self.maxTurns = max(1, maxTurns)
        self.maxTurnBytes = max(64, maxTurnBytes)
    }

    /// What one event lost to the budget.
    public struct Cuts: Sendable, Equatable {
        public var turns = 0
        public var clippedTurns = 0
        public var memories = 0
        public var isEmpty: Bool { turns == 0 && clippedTurns == 0 && memories == 0 }
        public init() {}
    }

    /// The first `maxTurns` turns, each clipped to `maxTurnBytes` (at a character boundary).
    public func bound(_ conversation: Conversation, cuts: inout Cuts) -> Conversation {
        var bounded = conversation
        if bounded.turns.count > maxTurns {
            cuts.turns += bounded.turns.count - maxTurns
            bounded.turns = Array(bounded.turns.prefix(maxTurns))
        }
        for index in bounded.turns.indices where bounded.turns[index].text.utf8.count > maxTurnBytes {
            bounded.turns[index].text = Self.clip(bounded.turns[index].text, bytes: maxTurnBytes)
            cuts.clippedTurns += 1
        }
        return bounded
    }

    /// At most `maxMemories`, the most important kept (ties: the earlier), in their original order.
    public func cap(_ extraction: Extraction, cuts: inout Cuts) -> Extraction {
        guard extraction.memories.count > maxMemories else { return extraction }
        cuts.memories += extraction.memories.count - maxMemories
        let kept = extraction.memories.indices
            .sorted { a, b in
                let (x, y) = (Self.rank(extraction.memories[a].importance), Self.rank(extraction.memories[b].importance))
                return x != y ? x > y : a < b
            }
            .prefix(maxMemories)
            .sorted()
        var capped = extraction
        capped.memories = kept.map { extraction.memories[$0] }
        return capped
    }

    /// Importance as a sort key; NaN (a provider's odd answer) ranks last.
    static func rank(_ importance: Double) -> Double { importance.isNaN ? -.infinity : importance }

    /// The longest prefix of whole characters within `bytes` UTF-8 bytes.
    public static func clip(_ text: String, bytes: Int) -> String {
        guard text.utf8.count > bytes else { return text }
        var used = 0
        var end = text.startIndex
        for index in text.indices {
            let next = text.index(after: index)
            let size = text.utf8.distance(from: index, to: next)
            if used + size > bytes { break }
            used += size
            end = next
        }
        return String(text[..<end])
    }
}

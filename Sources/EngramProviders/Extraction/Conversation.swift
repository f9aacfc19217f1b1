import EngramCore
import Foundation

/// A finished call, as extraction sees it: turns keep their transcript index.
public struct Conversation: Sendable {
    /// How a turn's text carries the image the speaker shared: "[shared an image: <caption>]".
    public static let imageCaptionOpening = "[shared an image:"

    public enum Speaker: String, Sendable, Codable { case caller, agent }

    public struct Turn: Sendable {
        public var index: Int
        public var speaker: Speaker
        public var text: String
        public init(index: Int, speaker: Speaker, text: String) {
            self.index = index
            self.speaker = speaker
            self.text = text
        }
    }

    public var conversationID: String?
    public var startedAt: Date
    public var turns: [Turn]
    public var summary: String?
    /// `analysis.data_collection_results`, item id → value as text.
    public var dataCollection: [String: String]

    public init(conversationID: String?, startedAt: Date, turns: [Turn], summary: String? = nil, dataCollection: [String: String] = [:]) {
        self.conversationID = conversationID
        self.startedAt = startedAt
        self.turns = turns
        self.summary = summary
        self.dataCollection = dataCollection
    }

    /// From a post-call payload: tool turns (no message) are skipped but indices are kept.
    public init(_ data: PostCallData, fallbackStart: Date) {
        conversationID = data.conversationID
        startedAt = data.metadata?.startTimeUnixSecs.map { Date(timeIntervalSince1970: TimeInterval($0)) } ?? fallbackStart
        turns = data.transcript.enumerated().compactMap { index, turn in
            var text = turn.message?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            if let caption = turn.imageCaption, !caption.isEmpty {
                text += (text.isEmpty ? "" : " ") + Self.imageCaptionOpening + " \(caption)]"
            }
            guard !text.isEmpty else { return nil }
            return Turn(index: index, speaker: turn.role == "user" ? .caller : .agent, text: text)
        }
        let summary = data.analysis?.transcriptSummary?.trimmingCharacters(in: .whitespacesAndNewlines)
        self.summary = summary?.isEmpty == false ? summary : nil
        var collected: [String: String] = [:]
        for (key, result) in data.analysis?.dataCollectionResults ?? [:] {
            if let value = result.value?.stringValue, !value.isEmpty { collected[key] = value }
        }
        dataCollection = collected
    }
}

/// One memory proposed by an extractor.
public struct ExtractedMemory: Sendable, Equatable {
    public var content: String
    public var sector: Sector
    public var slot: String?
    public var importance: Double
    public var validFrom: Date?
    public var sourceTurns: [Int]
    public var sensitive: Bool
    /// `conversation`, `summary`, `data_collection`, `tool`.
    public var kind: String
    /// What the keyword index reads instead of `content` when set (`SpeakerNames.indexText`);
    /// never shown, never stored apart from the index's keyed term hashes.
    public var indexText: String?

    public init(
        content: String, sector: Sector, slot: String? = nil, importance: Double, validFrom: Date? = nil, sourceTurns: [Int], sensitive: Bool = false,
        kind: String = "conversation"
    ) {
        self.content = content
        self.sector = sector
        self.slot = slot
        self.importance = importance
        self.validFrom = validFrom
        self.sourceTurns = sourceTurns
        self.sensitive = sensitive
        self.kind = kind
    }
}

/// The result of one extraction per conversation.
public struct Extraction: Sendable {
    public var memories: [ExtractedMemory]
    public var summary: String?
    public var userName: String?
    /// Which extractor produced it (stored in each memory's source).
    public var extractor: String
    /// Produced by the local fallback after the LLM failed: re-extractable.
    public var isFallback: Bool

    public init(memories: [ExtractedMemory], summary: String?, userName: String?, extractor: String, isFallback: Bool = false) {
        self.memories = memories
        self.summary = summary
        self.userName = userName
        self.extractor = extractor
        self.isFallback = isFallback
    }
}

/// Why an extraction failed; never carries a response body (it can echo the transcript).
public enum ExtractionError: Error, CustomStringConvertible, Sendable {
    case rateLimited(retryAfter: Double?)
    case server(status: Int)
    case client(status: Int)
    case malformedResponse(String)
    case timeout
    case transport(String)
    case circuitOpen

    public var description: String {
        switch self {
        case .rateLimited(let after): return "rate limited (429)" + (after.map { ", retry after \($0)s" } ?? "")
        case .server(let status): return "server error \(status)"
        case .client(let status): return "client error \(status)"
        case .malformedResponse(let why): return "malformed response: \(why)"
        case .timeout: return "timed out"
        case .transport(let why): return "transport: \(why)"
        case .circuitOpen: return "circuit breaker open"
        }
    }

    /// Worth another attempt later.
    public var isTransient: Bool {
        switch self {
        case .client: return false
        default: return true
        }
    }
}

/// Turns a finished conversation into memories.
public protocol Extractor: Sendable {
    var id: String { get }
    func extract(_ conversation: Conversation) async throws -> Extraction
}

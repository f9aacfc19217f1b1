import Foundation

/// Where a memory came from: the conversation and the transcript turns it cites.
public struct MemorySource: Codable, Sendable, Equatable {
    public var conversationID: String?
    public var turns: [Int]
    /// `conversation`, `tool`, `summary`, `data_collection`.
    public var kind: String
    public var extractor: String

    public init(conversationID: String?, turns: [Int], kind: String, extractor: String) {
        self.conversationID = conversationID
        self.turns = turns
        self.kind = kind
        self.extractor = extractor
    }

    enum CodingKeys: String, CodingKey {
        case conversationID = "conversation_id"
        case turns, kind, extractor
    }
}

/// One remembered thing about one caller, decrypted (the domain model; rows live in the store).
public struct Memory: Sendable, Equatable, Identifiable {
    public var id: String
    public var tenant: String
    public var user: UserKey
    public var sector: Sector
    public var content: String
    public var slot: String?
    public var importance: Double
    public var salience0: Double
    public var reinforcedAt: Date
    public var sensitive: Bool
    public var validFrom: Date
    public var validTo: Date?
    public var supersededBy: String?
    public var status: MemoryStatus
    public var sources: [MemorySource]
    public var createdAt: Date
    public var lastRecalledAt: Date?
    /// Stored by a fallback extractor: `engram reextract` may redo it with the LLM.
    public var needsReextraction: Bool

    public init(
        id: String, tenant: String, user: UserKey, sector: Sector, content: String, slot: String? = nil,
        importance: Double, salience0: Double, reinforcedAt: Date, sensitive: Bool = false, validFrom: Date,
        validTo: Date? = nil, supersededBy: String? = nil, status: MemoryStatus = .active, sources: [MemorySource],
        createdAt: Date, lastRecalledAt: Date? = nil, needsReextraction: Bool = false
    ) {
        self.id = id
        self.tenant = tenant
        self.user = user
        self.sector = sector
        self.content = content
        self.slot = slot
        self.importance = importance
        self.salience0 = salience0
        self.reinforcedAt = reinforcedAt
        self.sensitive = sensitive
        self.validFrom = validFrom
        self.validTo = validTo
        self.supersededBy = supersededBy
        self.status = status
        self.sources = sources
        self.createdAt = createdAt
        self.lastRecalledAt = lastRecalledAt
        self.needsReextraction = needsReextraction
    }

    /// All transcript turns this memory cites, across its sources.
    public var sourceTurns: [Int] { sources.flatMap(\.turns) }

    /// Active and not closed by a later fact at `date`.
    public func isCurrent(at date: Date) -> Bool {
        status == .active && (validTo.map { $0 > date } ?? true)
    }
}

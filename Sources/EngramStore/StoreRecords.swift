import EngramCore
import Foundation

/// A tenant row: one business. Its pseudonym secret (for user keys) is stored wrapped.
public struct TenantRecord: Sendable, Equatable {
    public var id: String
    public var name: String
    public var pseudonymSecretWrapped: Data
    public var keyID: String
    public var consentMode: ConsentMode
    public var allowSensitivePrecall: Bool
    public var createdAt: Date
    /// Memories older than this many days are deleted for good by the sweep; nil = kept.
    public var retentionDays: Int? = nil
    /// Whether a caller id the client supplies (`user_id`) is trusted before the phone number
    /// (`CallerResolution`). Off by default: a web client could otherwise pick someone's id.
    public var trustClientUserIDs = false

    public init(
        id: String, name: String, pseudonymSecretWrapped: Data, keyID: String, consentMode: ConsentMode, allowSensitivePrecall: Bool, createdAt: Date,
        retentionDays: Int? = nil, trustClientUserIDs: Bool = false
    ) {
        self.retentionDays = retentionDays
        self.trustClientUserIDs = trustClientUserIDs
        self.id = id
        self.name = name
        self.pseudonymSecretWrapped = pseudonymSecretWrapped
        self.keyID = keyID
        self.consentMode = consentMode
        self.allowSensitivePrecall = allowSensitivePrecall
        self.createdAt = createdAt
    }
}

/// A user row: pseudonymous key, wrapped data key, consent, and a version that changes whenever
/// the set of searchable memories changes (so caches in other processes know to reload).
public struct UserRecord: Sendable, Equatable {
    public var tenant: String
    public var user: UserKey
    public var dataKeyWrapped: Data
    public var keyID: String
    /// nil = never asked; true = granted; false = withdrawn.
    public var consent: Bool?
    public var consentAt: Date?
    public var createdAt: Date
    public var lastCallAt: Date?
    public var memoryVersion: Int64

    public init(
        tenant: String, user: UserKey, dataKeyWrapped: Data, keyID: String, consent: Bool? = nil, consentAt: Date? = nil, createdAt: Date,
        lastCallAt: Date? = nil, memoryVersion: Int64 = 0
    ) {
        self.tenant = tenant
        self.user = user
        self.dataKeyWrapped = dataKeyWrapped
        self.keyID = keyID
        self.consent = consent
        self.consentAt = consentAt
        self.createdAt = createdAt
        self.lastCallAt = lastCallAt
        self.memoryVersion = memoryVersion
    }
}

/// A memory row as stored: content sealed with the user's data key.
public struct MemoryRow: Sendable, Equatable {
    public var id: String
    public var tenant: String
    public var user: UserKey
    public var sector: Sector
    public var sealedContent: Data
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
    public var needsReextraction: Bool
    public var termCount: Int

    public init(
        id: String, tenant: String, user: UserKey, sector: Sector, sealedContent: Data, slot: String?, importance: Double, salience0: Double,
        reinforcedAt: Date, sensitive: Bool, validFrom: Date, validTo: Date?, supersededBy: String?, status: MemoryStatus, sources: [MemorySource],
        createdAt: Date, lastRecalledAt: Date?, needsReextraction: Bool, termCount: Int
    ) {
        self.id = id
        self.tenant = tenant
        self.user = user
        self.sector = sector
        self.sealedContent = sealedContent
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
        self.termCount = termCount
    }
}

/// A current memory without its content: what pre-call ranking needs to choose what to decrypt.
public struct MemoryHead: Sendable {
    public var id: String
    public var sector: Sector
    public var slot: String?
    public var importance: Double
    public var salience0: Double
    public var reinforcedAt: Date
    public var validFrom: Date
    public var sensitive: Bool
    public var isSummary: Bool

    public init(
        id: String, sector: Sector, slot: String?, importance: Double, salience0: Double, reinforcedAt: Date, validFrom: Date, sensitive: Bool,
        isSummary: Bool
    ) {
        self.id = id
        self.sector = sector
        self.slot = slot
        self.importance = importance
        self.salience0 = salience0
        self.reinforcedAt = reinforcedAt
        self.validFrom = validFrom
        self.sensitive = sensitive
        self.isSummary = isSummary
    }
}

/// A memory's vector from one embedder.
public struct VectorRow: Sendable {
    public var memoryID: String
    public var embedder: String
    public var vector: [Float]
    public init(memoryID: String, embedder: String, vector: [Float]) {
        self.memoryID = memoryID
        self.embedder = embedder
        self.vector = vector
    }
}

/// One keyed term hash in one memory, with its frequency.
public struct TermPosting: Sendable, Equatable {
    public var term: Data
    public var memoryID: String
    public var frequency: Int
    /// The memory's term count (document length for BM25), filled when read back.
    public var documentLength: Int
    public init(term: Data, memoryID: String, frequency: Int, documentLength: Int = 0) {
        self.term = term
        self.memoryID = memoryID
        self.frequency = frequency
        self.documentLength = documentLength
    }
}

/// Everything one processed event writes, applied in one transaction together with its
/// idempotency key: either all of it lands once, or (a redelivery) none of it.
public struct WriteBatch: Sendable {
    public var tenant: String
    public var user: UserKey
    public var idempotencyKey: String
    public var eventID: String
    public var eventType: String
    public var processedAt: Date
    public var callAt: Date?
    public var inserts: [MemoryRow] = []
    public var vectors: [VectorRow] = []
    public var postings: [TermPosting] = []
    /// Old memory id → (closing time, the memory that replaces it).
    public var supersessions: [(id: String, validTo: Date, by: String)] = []
    /// Existing memory id → new salience0 at `processedAt`, plus the source to add.
    public var reinforcements: [(id: String, salience0: Double, source: MemorySource)] = []
    /// The user's erasure the writer saw and cleared (consent given again after it); nil: none.
    /// The store refuses the batch (`StoreError.erased`) if, inside its write transaction, the
    /// user's tombstone is another one: an erasure that landed while the batch was prepared.
    public var erasedAt: Date?
    /// The user row (its `memory_version`) the batch was prepared against: after the write,
    /// `MemoryVault.didApply` moves that version's caches forward in place. Not stored.
    public var preparedAgainst: UserRecord?

    /// Whether a tombstone at `erasedAt` (nil: none) found inside the write refuses this batch.
    public func isRefused(byErasureAt tombstone: Date?) -> Bool {
        guard let tombstone else { return false }
        guard let seen = erasedAt else { return true }
        // The same instant read twice from one column; a millisecond covers any rounding.
        return abs(tombstone.timeIntervalSince(seen)) > 0.001
    }

    public init(tenant: String, user: UserKey, idempotencyKey: String, eventID: String, eventType: String, processedAt: Date, callAt: Date?) {
        self.tenant = tenant
        self.user = user
        self.idempotencyKey = idempotencyKey
        self.eventID = eventID
        self.eventType = eventType
        self.processedAt = processedAt
        self.callAt = callAt
    }
}

/// An API key as stored: only its SHA-256, with its tenant and scope.
public struct APIKeyRecord: Sendable, Equatable {
    public enum Scope: String, Sendable, Codable { case tool, admin }
    public var id: String
    public var tenant: String
    public var scope: Scope
    public var keyHash: Data
    public var createdAt: Date
    public var revokedAt: Date?

    public init(id: String, tenant: String, scope: Scope, keyHash: Data, createdAt: Date, revokedAt: Date? = nil) {
        self.id = id
        self.tenant = tenant
        self.scope = scope
        self.keyHash = keyHash
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }
}

/// One management action: who, what, when, which user key; never content.
public struct AuditEntry: Sendable, Codable, Equatable {
    public var id: String
    public var tenant: String
    public var actor: String
    public var action: String
    public var user: String?
    public var memoryID: String?
    public var at: Date

    public init(tenant: String, actor: String, action: String, user: UserKey?, memoryID: String? = nil, at: Date) {
        id = UUIDv7.make(at: at)
        self.tenant = tenant
        self.actor = actor
        self.action = action
        self.user = user?.rawValue
        self.memoryID = memoryID
        self.at = at
    }

    enum CodingKeys: String, CodingKey {
        case id, tenant, actor, action
        case user = "user_key"
        case memoryID = "memory_id"
        case at
    }
}

/// A wrapped secret, for master-key rotation: which row, its bytes and the key id that wrapped them.
public struct WrappedSecret: Sendable {
    public enum Kind: String, Sendable { case userDataKey, tenantPseudonym, tenantWebhook, tenantWebhookPrevious }
    public var kind: Kind
    public var tenant: String
    public var user: UserKey?
    public var wrapped: Data
    public var keyID: String

    public init(kind: Kind, tenant: String, user: UserKey?, wrapped: Data, keyID: String) {
        self.kind = kind
        self.tenant = tenant
        self.user = user
        self.wrapped = wrapped
        self.keyID = keyID
    }
}

/// Per-user keyword statistics for BM25.
public struct TermStatistics: Sendable {
    public var documentCount: Int
    public var averageLength: Double
    public init(documentCount: Int, averageLength: Double) {
        self.documentCount = documentCount
        self.averageLength = averageLength
    }
}

/// Store failures, free of HTTP and of personal data.
public enum StoreError: Error, CustomStringConvertible, Sendable {
    case notFound(String)
    case unsupported(String)
    case corrupt(String)
    /// The backend could not be reached or set up (names the server, never a password).
    case unavailable(String)
    /// The user was erased while the write was being prepared: nothing was written.
    case erased

    public var description: String {
        switch self {
        case .notFound(let what): return "not found: \(what)"
        case .unsupported(let what): return "unsupported: \(what)"
        case .corrupt(let what): return "corrupt: \(what)"
        case .unavailable(let what): return "unavailable: \(what)"
        case .erased: return "the user was erased while the write was prepared"
        }
    }
}

/// An erasure as the store records it: which caller, and when.
public struct Tombstone: Sendable, Equatable, Hashable {
    public var tenant: String
    public var user: UserKey
    public var erasedAt: Date

    public init(tenant: String, user: UserKey, erasedAt: Date) {
        self.tenant = tenant
        self.user = user
        self.erasedAt = erasedAt
    }
}

import EngramCore
import Foundation

/// Persistence for tenants, users, memories, vectors, the term index, processed events and
/// tombstones, as one small protocol per kind of record. Backends (`SQLite/`, `Postgres/`)
/// implement all of them and store sealed content only; `MemoryVault` does the crypto above
/// them. Every method is scoped by tenant (and user where it applies).
public typealias MemoryStore = StoreHealth & TenantStore & APIKeyStore & UserStore & EventLedger & MemoryWriteStore
    & MemoryReadStore & RecallIndexStore & AuditStore & WrappedSecretStore

/// Whether the database answers, and what it holds (metrics).
public protocol StoreHealth: Sendable {
    func ping() async throws
    /// Closes the store's connections; it cannot be used afterwards. Called once, at shutdown.
    func close() async
    /// Memory rows per status across tenants (metrics).
    func memoryCountsByStatus() async throws -> [String: Int]
}

/// Tenants and their policies: retention, consent mode, webhook secrets, caller-id trust.
public protocol TenantStore: Sendable {
    func ensureTenant(_ tenant: TenantRecord) async throws -> TenantRecord
    func tenant(id: String) async throws -> TenantRecord?
    func tenants() async throws -> [TenantRecord]
    func setRetention(tenant: String, days: Int?) async throws
    func setTenantConsentMode(tenant: String, mode: ConsentMode, allowSensitivePrecall: Bool) async throws
    /// The tenant's webhook secrets (current, previous), wrapped.
    func setTenantWebhookSecrets(tenant: String, current: Data?, previous: Data?, keyID: String) async throws
    func tenantWebhookSecrets(tenant: String) async throws -> (current: Data?, previous: Data?, keyID: String)?
    /// Whether the tenant trusts client-supplied caller ids (`TenantRecord.trustClientUserIDs`).
    func setTrustClientUserIDs(tenant: String, trusted: Bool) async throws
}

/// API keys, stored as hashes.
public protocol APIKeyStore: Sendable {
    func insertAPIKey(_ key: APIKeyRecord) async throws
    func apiKey(hash: Data) async throws -> APIKeyRecord?
    func apiKeys(tenant: String) async throws -> [APIKeyRecord]
    func revokeAPIKey(tenant: String, id: String, at: Date) async throws -> Bool
}

/// Callers: their row (data key, consent), erasure and its tombstones.
public protocol UserStore: Sendable {
    /// Inserts the user unless present; returns the stored row either way.
    func ensureUser(_ user: UserRecord) async throws -> UserRecord
    func user(tenant: String, user: UserKey) async throws -> UserRecord?
    func setConsent(tenant: String, user: UserKey, granted: Bool, at: Date) async throws
    func tombstone(tenant: String, user: UserKey) async throws -> Date?
    /// Destroys the data key first, then every row of the user, and leaves a tombstone.
    func erase(tenant: String, user: UserKey, at: Date) async throws
    /// Tombstones with `erased_at` after the given time, oldest first (the erasure purge).
    func tombstones(erasedAfter: Date) async throws -> [Tombstone]
}

/// Processed events: the idempotency keys that make each event's effect happen once.
public protocol EventLedger: Sendable {
    func isProcessed(tenant: String, idempotencyKey: String) async throws -> Bool
    /// Records an event that wrote nothing (no user, no consent, failure notice). False if already recorded.
    func recordEvent(tenant: String, idempotencyKey: String, eventID: String, eventType: String, user: UserKey?, at: Date) async throws -> Bool
}

/// Writes to memories, each in one transaction that bumps the user's version.
public protocol MemoryWriteStore: Sendable {
    /// Applies a batch with its idempotency key in one transaction. False if the key was already there.
    func apply(_ batch: WriteBatch) async throws -> Bool
    /// `engram reextract`'s write, in one transaction: false (and nothing changed) if the batch's
    /// idempotency key is already recorded. Otherwise deletes each listed memory of the batch's
    /// user that still has `needs_reextraction` (with its vectors and term postings); a memory
    /// it had superseded takes over its `valid_to` and `superseded_by` (so is current again if
    /// it was); then applies the batch exactly as `apply`.
    func replaceExtraction(_ batch: WriteBatch, replacing ids: [String]) async throws -> Bool
    /// Replaces one memory's content and indexes (an operator's correction); bumps the user's version.
    func replaceMemory(_ row: MemoryRow, vectors: [VectorRow], postings: [TermPosting]) async throws
    func deleteMemory(tenant: String, id: String) async throws -> Bool
    /// Deletes for good the tenant's memories whose event time is before `cutoff` (retention).
    func deleteMemories(tenant: String, olderThan cutoff: Date) async throws -> Int
    /// Reinforcement from recall: new salience0 and reinforced_at per memory (batched).
    func reinforce(tenant: String, _ updates: [(id: String, salience0: Double, at: Date)]) async throws
    /// Archives the given active memories; bumps the users' memory versions.
    func archive(tenant: String, ids: [String]) async throws
}

/// Reads of memory rows (sealed content).
public protocol MemoryReadStore: Sendable {
    /// Memories of one user; `includeHistory` adds superseded and archived ones.
    func memories(tenant: String, user: UserKey, includeHistory: Bool) async throws -> [MemoryRow]
    func memories(tenant: String, user: UserKey, ids: [String]) async throws -> [MemoryRow]
    func memory(tenant: String, id: String) async throws -> MemoryRow?
    /// How many current (active, not closed) memories the user has.
    func activeMemoryCount(tenant: String, user: UserKey) async throws -> Int
    /// The user's current memories without content (cheap for callers with thousands).
    func memoryHeads(tenant: String, user: UserKey) async throws -> [MemoryHead]
    /// Memories stored by the fallback extractor (`needs_reextraction`), any status, of the
    /// tenant or of one user, ordered by user, then `valid_from`, then id.
    func memoriesNeedingReextraction(tenant: String, user: UserKey?) async throws -> [MemoryRow]
    /// Active memories of all users of a tenant, for the sweep.
    func sweepCandidates(tenant: String, limit: Int, after: String?) async throws -> [MemoryRow]
}

/// What recall ranks with: vectors and the keyed term index, never content.
public protocol RecallIndexStore: Sendable {
    /// All vectors of one embedder for the user's active memories: ids and a flat row-major array.
    func vectors(tenant: String, user: UserKey, embedder: String) async throws -> (ids: [String], flat: [Float])
    func postings(tenant: String, user: UserKey, terms: [Data]) async throws -> [TermPosting]
    func termStatistics(tenant: String, user: UserKey) async throws -> TermStatistics
    /// Every current memory's id and term count, and those memories' postings, from one snapshot:
    /// what a user's in-memory keyword index (`TermIndex`) is built from.
    func termIndexRows(tenant: String, user: UserKey) async throws -> (documents: [(id: String, length: Int)], postings: [TermPosting])
}

/// The audit log of management calls and privacy tools.
public protocol AuditStore: Sendable {
    func audit(_ entry: AuditEntry) async throws
    func auditEntries(tenant: String, limit: Int) async throws -> [AuditEntry]
}

/// Wrapped secrets (data-key wrapping keys) of the key ring.
public protocol WrappedSecretStore: Sendable {
    func wrappedSecrets() async throws -> [WrappedSecret]
    /// Replaces wrapped secrets (rotation) in one transaction.
    func replaceWrappedSecrets(_ secrets: [WrappedSecret]) async throws
}

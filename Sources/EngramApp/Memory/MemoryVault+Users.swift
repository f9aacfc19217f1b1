import EngramCore
import EngramStore
import Foundation

/// What the gateway and the CLI do to a caller's data. The vault is the only way to the store and
/// the key ring from outside EngramApp, so each rule here is written once for every caller of it.
extension MemoryVault {
    /// Whether the database answers (the gateway's readiness check).
    public func ping() async throws { try await store.ping() }

    /// The caller's row (consent, dates); nil before their first write.
    public func user(tenant: String, user: UserKey) async throws -> UserRecord? {
        try await store.user(tenant: tenant, user: user)
    }

    /// When the caller was erased; nil if never.
    public func erasedAt(tenant: String, user: UserKey) async throws -> Date? {
        try await store.tombstone(tenant: tenant, user: user)
    }

    /// Records a caller's consent choice, creating the caller (and their data key) first when new.
    public func setConsent(tenant: String, user: UserKey, granted: Bool, at: Date? = nil) async throws {
        _ = try await userForWriting(tenant: tenant, user: user)
        try await store.setConsent(tenant: tenant, user: user, granted: granted, at: at ?? clock.now())
    }

    /// Erases a caller in the database and drops their vectors from the cache. The gateway calls
    /// `ErasurePurge.eraseUser`, which also carries the erasure to the queue and audits it.
    public func erase(tenant: String, user: UserKey) async throws {
        try await store.erase(tenant: tenant, user: user, at: clock.now())
        await forgetCached(tenant: tenant, user: user)
    }

    /// One memory by id, decrypted; nil when there is none in this tenant (another tenant's
    /// memory is indistinguishable from a missing one).
    public func memory(tenant: String, id: String) async throws -> Memory? {
        guard let row = try await store.memory(tenant: tenant, id: id),
            let user = try await store.user(tenant: tenant, user: row.user)
        else { return nil }
        return try decrypt(row, key: try dataKey(of: user))
    }

    /// Deletes one memory; false when there was none.
    public func deleteMemory(tenant: String, id: String) async throws -> Bool {
        try await store.deleteMemory(tenant: tenant, id: id)
    }

    /// How many current memories a caller has.
    public func activeMemoryCount(tenant: String, user: UserKey) async throws -> Int {
        try await store.activeMemoryCount(tenant: tenant, user: user)
    }

    /// Whether an event (by its idempotency key) has been stored already.
    public func isProcessed(tenant: String, idempotencyKey: String) async throws -> Bool {
        try await store.isProcessed(tenant: tenant, idempotencyKey: idempotencyKey)
    }

    /// Writes a batch made by `prepareWrite` in one transaction; false when its event was stored
    /// already (the benchmark seeder's path; events go through `EventIngestor`).
    public func write(_ batch: WriteBatch) async throws -> Bool {
        try await store.apply(batch)
    }

    /// Whether the memories live in a local SQLite file (backups, and their scrubbing, exist only there).
    public var isSQLite: Bool { store is SQLiteMemoryStore }

    /// Appends a line to the tenant's audit log, stamped now.
    public func audit(tenant: String, actor: String, action: String, user: UserKey?, memoryID: String? = nil) async throws {
        try await store.audit(AuditEntry(tenant: tenant, actor: actor, action: action, user: user, memoryID: memoryID, at: clock.now()))
    }

    /// The tenant's newest audit lines.
    public func auditEntries(tenant: String, limit: Int) async throws -> [AuditEntry] {
        try await store.auditEntries(tenant: tenant, limit: limit)
    }
}

import EngramCore
import Foundation
import GRDB

/// Erasure propagation and the tenant's caller-id trust, on SQLite.
extension SQLiteMemoryStore {
    public func tombstones(erasedAfter: Date) async throws -> [Tombstone] {
        try await database.pool.read { db in try SQLiteMemoryStore.tombstones(db, erasedAfter: erasedAfter) }
    }

    /// The tombstones of any Engram SQLite database (the live one or a backup).
    static func tombstones(_ db: Database, erasedAfter: Date = .distantPast) throws -> [Tombstone] {
        try Row.fetchAll(
            db, sql: "SELECT tenant_id, user_key, erased_at FROM tombstones WHERE erased_at > ? ORDER BY erased_at",
            arguments: [erasedAfter.timeIntervalSince1970]
        ).map { row in
            Tombstone(tenant: row["tenant_id"], user: UserKey(unchecked: row["user_key"]), erasedAt: Date(timeIntervalSince1970: row["erased_at"]))
        }
    }

    public func setTrustClientUserIDs(tenant: String, trusted: Bool) async throws {
        try await database.pool.write { db in
            try db.execute(sql: "UPDATE tenants SET trust_client_user_ids = ? WHERE id = ?", arguments: [trusted, tenant])
            guard db.changesCount > 0 else { throw StoreError.notFound("tenant") }
        }
    }
}

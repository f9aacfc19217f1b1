import EngramCore
import Foundation
import PostgresNIO

/// Erasure propagation and the tenant's caller-id trust, on PostgreSQL.
extension PostgresMemoryStore {
    public func tombstones(erasedAfter: Date) async throws -> [Tombstone] {
        try await transaction { connection in
            try await connection.rows(
                "SELECT tenant_id, user_key, erased_at FROM tombstones WHERE erased_at > \(erasedAfter) ORDER BY erased_at",
                logger: Logger(label: "engram-store")
            ).map { row in
                Tombstone(
                    tenant: try row["tenant_id"].decode(String.self), user: UserKey(unchecked: try row["user_key"].decode(String.self)),
                    erasedAt: try row["erased_at"].decode(Date.self))
            }
        }
    }

    public func setTrustClientUserIDs(tenant: String, trusted: Bool) async throws {
        let updated = try await transaction { connection in
            try await connection.rows(
                "UPDATE tenants SET trust_client_user_ids = \(trusted) WHERE id = \(tenant) RETURNING id", logger: Logger(label: "engram-store")
            ).count
        }
        guard updated > 0 else { throw StoreError.notFound("tenant") }
    }
}

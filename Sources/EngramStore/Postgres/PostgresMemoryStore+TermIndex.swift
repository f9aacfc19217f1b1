import EngramCore
import Foundation
import PostgresNIO

/// The rows an in-memory keyword index is built from, on PostgreSQL.
extension PostgresMemoryStore {
    public func termIndexRows(tenant: String, user: UserKey) async throws -> (documents: [(id: String, length: Int)], postings: [TermPosting]) {
        // Two statements in one REPEATABLE READ transaction, so one snapshot: the memories through
        // `memories_by_user`, the postings through their primary key's (tenant_id, user_key)
        // prefix, matched here. The one join of the two that this replaces did not finish within
        // the 10 s store deadline for a caller with 20,000 memories on a just-loaded database
        // (`make bench-search`), so that caller's keyword search failed on PostgreSQL.
        try await transaction { connection in
            try await connection.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", logger: Logger(label: "engram-store"))
            var documents: [(id: String, length: Int)] = []
            let memories = try await connection.query(
                """
                SELECT id, term_count FROM memories
                WHERE tenant_id = \(tenant) AND user_key = \(user.rawValue) AND status = 'active' AND valid_to IS NULL
                """, logger: Logger(label: "engram-store"))
            for try await (id, length) in memories.decode((String, Int).self) { documents.append((id, length)) }
            let current = Set(documents.map(\.id))
            var postings: [TermPosting] = []
            let terms = try await connection.query(
                "SELECT term, memory_id, frequency FROM memory_terms WHERE tenant_id = \(tenant) AND user_key = \(user.rawValue)",
                logger: Logger(label: "engram-store"))
            for try await (term, memoryID, frequency) in terms.decode((Data, String, Int).self) where current.contains(memoryID) {
                postings.append(TermPosting(term: term, memoryID: memoryID, frequency: frequency))
            }
            return (documents, postings)
        }
    }
}

import EngramCore
import Foundation
import PostgresNIO

/// The rows an in-memory keyword index is built from, on PostgreSQL.
extension PostgresMemoryStore {
    public func termIndexRows(tenant: String, user: UserKey) async throws -> (documents: [(id: String, length: Int)], postings: [TermPosting]) {
        // One statement, so one snapshot: each current memory with its postings (none: one row of NULLs).
        try await transaction { connection in
            let rows = try await connection.query(
                """
                SELECT m.id, m.term_count, t.term, t.frequency FROM memories m
                LEFT JOIN memory_terms t ON t.memory_id = m.id AND t.tenant_id = m.tenant_id AND t.user_key = m.user_key
                WHERE m.tenant_id = \(tenant) AND m.user_key = \(user.rawValue) AND m.status = 'active' AND m.valid_to IS NULL
                ORDER BY m.id
                """, logger: Logger(label: "engram-store"))
            var documents: [(id: String, length: Int)] = []
            var postings: [TermPosting] = []
            for try await (id, length, term, frequency) in rows.decode((String, Int, Data?, Int?).self) {
                if documents.last?.id != id { documents.append((id, length)) }
                if let term, let frequency { postings.append(TermPosting(term: term, memoryID: id, frequency: frequency)) }
            }
            return (documents, postings)
        }
    }
}

import EngramCore
import Foundation
import GRDB

/// The rows an in-memory keyword index is built from, on SQLite.
extension SQLiteMemoryStore {
    public func termIndexRows(tenant: String, user: UserKey) async throws -> (documents: [(id: String, length: Int)], postings: [TermPosting]) {
        let pool = database.pool
        do {
            return try await withTimeout(callTimeout) {
                // One read transaction: the documents and their postings come from one snapshot.
                try await pool.read { db in
                    var documents: [(id: String, length: Int)] = []
                    let memories = try Row.fetchCursor(
                        db,
                        sql: "SELECT id, term_count FROM memories WHERE tenant_id = ? AND user_key = ? AND status = 'active' AND valid_to IS NULL",
                        arguments: [tenant, user.rawValue])
                    while let row = try memories.next() {
                        let id: String = row["id"]
                        let length: Int = row["term_count"]
                        documents.append((id, length))
                    }
                    var postings: [TermPosting] = []
                    let terms = try Row.fetchCursor(
                        db,
                        sql: """
                            SELECT t.term, t.memory_id, t.frequency FROM memory_terms t JOIN memories m ON m.id = t.memory_id
                            WHERE t.tenant_id = ? AND t.user_key = ? AND m.status = 'active' AND m.valid_to IS NULL
                            """,
                        arguments: [tenant, user.rawValue])
                    while let row = try terms.next() {
                        postings.append(TermPosting(term: row["term"], memoryID: row["memory_id"], frequency: row["frequency"]))
                    }
                    return (documents, postings)
                }
            }
        } catch is TimeoutError {
            throw StoreError.unavailable("SQLite: termIndexRows did not finish within \(callTimeout)")
        }
    }
}

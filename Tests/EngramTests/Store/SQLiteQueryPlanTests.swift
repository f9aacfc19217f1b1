import GRDB
import Testing

@testable import EngramStore

/// SQLite plans a statement without statistics, and for a list of ids it once chose the per-user
/// index, reading every memory of the user on each search. These plans are the reads whose cost
/// must not grow with a caller's history.
@Suite("SQLite query plans", .timeLimit(.minutes(1)))
struct SQLiteQueryPlanTests {
    @Test("memories by id look each id up in the primary key, for one id or a hundred", arguments: [1, 16, 100])
    func memoriesByIDUseThePrimaryKey(count: Int) async throws {
        let env = try await TestEnvironment.make(.sqlite)
        let store = try #require(try await env.openStore() as? SQLiteMemoryStore)
        let plan = try await store.database.pool.read { db in
            try Row.fetchAll(
                db, sql: "EXPLAIN QUERY PLAN " + SQLiteMemoryStore.memoriesByIDSQL(count: count),
                arguments: StatementArguments(
                    Array(repeating: "x", count: count + 2))
            ).map { $0["detail"] as String }
        }
        await store.close()
        await env.cleanUp()
        #expect(plan.count == 1, "\(plan)")
        #expect(plan.allSatisfy { $0.contains("sqlite_autoindex_memories_1 (id=?)") }, "\(plan)")
        #expect(!plan.contains { $0.contains("memories_by_user") || $0.hasPrefix("SCAN") }, "\(plan)")
    }
}

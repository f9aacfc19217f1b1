import Foundation
import Testing

/// `engram bench-search` on real PostgreSQL: its pgvector rows time searches that find the
/// caller's vectors. They used to query with the unkeyed local embedder while the vault stores
/// the tenant-keyed one, so every pgvector search matched no row (0 of 25 in BENCHMARKS.md).
@Suite(
    "engram bench-search on PostgreSQL", .enabled(if: TestPostgres.serverURL != nil, "needs ENGRAM_TEST_POSTGRES_URL (make test starts one)"),
    .timeLimit(.minutes(2)))
struct BenchSearchCLITests {
    @Test("the pgvector rows, exact and HNSW, return 25 of 25 rows for callers holding more than 25 memories")
    func pgvectorRowsFindTheVectors() async throws {
        let env = try await TestEnvironment.make(.postgres)
        let environment = serviceEnvironment(env, port: 0)
        let run = try await runEngram(
            ["bench-search", "--callers", "3", "--memories", "40", "--heavy", "60", "--queries", "4"], environment: environment,
            directory: env.directory, timeout: .seconds(100))
        #expect(run.status == 0, "stderr: \(run.stderr.suffix(2_000))")
        let rows = run.stdout.split(separator: "\n").filter { $0.hasPrefix("pgvector") }
        #expect(rows.count == 4, "stdout: \(run.stdout)")
        for row in rows { #expect(row.contains("25.0 of 25 rows returned"), "\(row)") }
        await env.cleanUp()
    }
}

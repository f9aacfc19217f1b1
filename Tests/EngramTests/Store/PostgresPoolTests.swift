import Foundation
import PostgresNIO
import Testing

@testable import EngramStore

/// postgres-nio 1.33.2's pool, once a connection attempt has failed, queues every lease until a new
/// connection succeeds, even while an idle connection is there: with the default 30 s keep-alive
/// every store call then waited up to 30 s (issue 11 §2: the worker's event sat in processing with
/// one idle connection at the server). The store's settings bound that wait; this pins it.
@Suite(
    "PostgreSQL connection pool", .enabled(if: TestPostgres.serverURL != nil, "needs ENGRAM_TEST_POSTGRES_URL (make test starts one)"),
    .timeLimit(.minutes(1)))
struct PostgresPoolTests {
    @Test("after the server refused a new connection, calls on the idle connection still answer within the store's deadline")
    func refusedConnectionDoesNotStallTheIdleOne() async throws {
        let env = try await TestEnvironment.make(.postgres)
        let name = try #require(env.postgres?.name)
        let server = try #require(TestPostgres.serverURL)
        let store = try #require(try await env.openStore() as? PostgresMemoryStore)
        #expect(store.callTimeout == StoreDeadline.defaultTimeout)
        _ = try await store.tenants()  // the pool has one connection, idle now
        try await TestPostgres.admin(server) {
            try await $0.query(PostgresQuery(unsafeSQL: "ALTER DATABASE \(name) ALLOW_CONNECTIONS false"), logger: testLogger)
        }

        // A second call while the first holds the connection: the pool asks for another, refused.
        let (leased, leasedSignal) = AsyncStream.makeStream(of: Void.self)
        async let holder: Void = store.client.withConnection { connection in
            leasedSignal.finish()
            _ = try await connection.query("SELECT pg_sleep(2)", logger: testLogger)
        }
        for await _ in leased {}
        _ = try await store.tenants()
        try await holder

        // With new connections still refused, each call must be served by the idle connection in
        // time (with a 30 s keep-alive each one timed out at the 10 s deadline).
        for _ in 0..<3 { #expect(try await store.tenants().isEmpty) }

        try await TestPostgres.admin(server) {
            try await $0.query(PostgresQuery(unsafeSQL: "ALTER DATABASE \(name) ALLOW_CONNECTIONS true"), logger: testLogger)
        }
        await store.close()
        await env.cleanUp()
    }
}

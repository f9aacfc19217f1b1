import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramStore

/// Every store call has a deadline: a call stalled in the database (a lock held elsewhere, a busy
/// writer) fails with `StoreError.unavailable` when it runs out, and the store works again once
/// the stall ends. No test here waits on the clock: the stall is released only after the call
/// has answered, so without the deadline these tests hang until their time limit.
@Suite("Store call deadlines", .timeLimit(.minutes(1)))
struct StoreDeadlineTests {
    @Test("a call stalled behind a lock fails at its deadline, and the store answers again once the lock is gone", arguments: Backend.available)
    func stalledCallFails(backend: Backend) async throws {
        let f = try await StoreContractTests.Fixture.make(backend)
        let short = try await StoreFactory.open(f.env.databaseLocation, embeddingDimension: 384, callTimeout: .milliseconds(500), logger: testLogger)
        let stall = try await Stall.begin(on: f.store)
        do {
            _ = try await short.setConsent(tenant: f.tenant, user: f.user, granted: true, at: f.t0)
            Issue.record("a stalled write answered before the stall ended")
        } catch let error as StoreError {
            guard case .unavailable(let message) = error else {
                Issue.record("expected unavailable, got \(error)")
                throw error
            }
            #expect(message.contains("setConsent"))
        }
        await stall.end()
        try await waitUntil(timeout: .seconds(20), "the store answers again") {
            (try? await short.setConsent(tenant: f.tenant, user: f.user, granted: true, at: f.t0)) != nil
        }
        #expect(try await short.user(tenant: f.tenant, user: f.user)?.consent == true)
        await StoreFactory.close(short)
        await f.finish()
    }

    @Test(
        "SQLite's point reads (a user, memories by id) see what was just written and answer while the writer is held; closed, they fail"
    )
    func sqlitePointReads() async throws {
        let f = try await StoreContractTests.Fixture.make(.sqlite)
        let rows = (0..<3).map { f.row("m_point_\($0)") }
        #expect(try await f.store.apply(f.batch("point", rows: rows)))
        let version = try #require(try await f.store.user(tenant: f.tenant, user: f.user)).memoryVersion
        // Many ids go the ordinary way (a write's conflict candidates), few on the calling thread: both answer alike.
        let many = rows.map(\.id) + (0..<200).map { "m_absent_\($0)" }
        #expect(Set(try await f.store.memories(tenant: f.tenant, user: f.user, ids: many).map(\.id)) == Set(rows.map(\.id)))
        #expect(Set(try await f.store.memories(tenant: f.tenant, user: f.user, ids: Array(many.prefix(4))).map(\.id)) == Set(rows.map(\.id)))

        // WAL readers take no lock: with the writer held the point reads still answer, at once.
        let stall = try await Stall.begin(on: f.store)
        #expect(try await f.store.user(tenant: f.tenant, user: f.user)?.memoryVersion == version)
        #expect(try await f.store.memories(tenant: f.tenant, user: f.user, ids: [rows[0].id]).count == 1)
        await stall.end()

        await StoreFactory.close(f.store)
        await #expect(throws: (any Error).self) { try await f.store.user(tenant: f.tenant, user: f.user) }
        await #expect(throws: (any Error).self) { try await f.store.memories(tenant: f.tenant, user: f.user, ids: [rows[0].id]) }
        await f.env.cleanUp()
    }

    @Test("withTimeout answers with the value, the timeout, or the caller's cancellation, whichever comes first")
    func withTimeoutRaces() async throws {
        #expect(try await withTimeout(.seconds(30)) { 42 } == 42)
        // A body that ignores cancellation (a stalled database call): the budget answers anyway.
        let gate = Gate()
        await #expect(throws: TimeoutError.self) {
            try await withTimeout(.milliseconds(100)) {
                await gate.wait()
                return 1
            }
        }
        // The caller's cancellation answers at once, long before the budget.
        let caller = Task {
            try await withTimeout(.seconds(600)) {
                await gate.wait()
                return 2
            }
        }
        caller.cancel()
        await #expect(throws: CancellationError.self) { try await caller.value }
        gate.open()
    }

    @Test(
        "the PostgreSQL store closes its pool at graceful shutdown when it runs as a service",
        .enabled(if: TestPostgres.serverURL != nil, "needs ENGRAM_TEST_POSTGRES_URL (make test starts one)"))
    func postgresStoreAsService() async throws {
        let env = try await TestEnvironment.make(.postgres)
        let store = try #require(try await env.openStore() as? PostgresMemoryStore)
        try await store.ping()
        let group = ServiceGroup(configuration: .init(services: [.init(service: store)], logger: testLogger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await store.ping()
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        // Closed: a call fails (it does not hang).
        await #expect(throws: (any Error).self) { try await store.ping() }
        await env.cleanUp()
    }

    @Test("the SQLite store closes its pool at graceful shutdown through the services its factory gives")
    func sqliteStoreClosedAtShutdown() async throws {
        let env = try await TestEnvironment.make(.sqlite)
        let store = try await env.openStore()
        try await store.ping()
        let services = StoreFactory.services(for: store).map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) }
        #expect(services.count == 1)
        let group = ServiceGroup(configuration: .init(services: services, logger: testLogger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await store.ping()
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        // Closed: a call fails (it does not hang).
        await #expect(throws: (any Error).self) { try await store.ping() }
        await env.cleanUp()
    }
}

/// Holds the store's writer (SQLite) or an exclusive lock on `users` (PostgreSQL) until `end`.
struct Stall {
    let end: @Sendable () async -> Void

    static func begin(on store: any MemoryStore) async throws -> Stall {
        let (locked, lockedSignal) = AsyncStream.makeStream(of: Void.self)
        let gate = Gate()
        let holder: Task<Void, any Error>
        if let sqlite = store as? SQLiteMemoryStore {
            holder = Task {
                // GRDB runs this on its writer queue (not a Swift concurrency thread).
                try await sqlite.database.pool.write { _ in
                    lockedSignal.finish()
                    gate.block()
                }
            }
        } else if let postgres = store as? PostgresMemoryStore {
            holder = Task {
                try await postgres.client.withTransaction(logger: testLogger) { connection in
                    try await connection.query("LOCK TABLE users IN ACCESS EXCLUSIVE MODE", logger: testLogger)
                    lockedSignal.finish()
                    await gate.wait()
                }
            }
        } else {
            throw TestSetupError.timeout("unknown backend")
        }
        for await _ in locked {}
        return Stall {
            gate.open()
            _ = await holder.result
        }
    }
}

/// A one-shot gate: `wait` (async) and `block` (a thread, for GRDB's writer) return once `open` is called.
final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))
    private let semaphore = DispatchSemaphore(value: 0)

    func wait() async {
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLock { state -> Bool in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    func block() {
        semaphore.wait()
        semaphore.signal()
    }

    func open() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>]? in
            if state.open { return nil }
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        guard let waiters else { return }
        for waiter in waiters { waiter.resume() }
        semaphore.signal()
    }
}

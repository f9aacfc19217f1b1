import Foundation
import GRDB
import Synchronization
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramStore

/// What `SharedLoadsTests` leaves out: loads of two versions in flight at once, the keyword
/// index's and the heads' shared loads, every cache of a caller dropped by `forgetCached`, and
/// the SQLite point reader never waiting on a busy database.
@Suite("Shared cache loads: versions, erasure, point reads", .timeLimit(.minutes(1)))
struct SharedLoadsOrderTests {
    let user = UserKey("u_sharedorderaaaaaaaaaaaaaa2")!

    typealias CountedLoad = SharedLoadsTests.CountedLoad

    static func vectors(_ counted: CountedLoad, ids: [String]) -> @Sendable () async throws -> (ids: [String], flat: [Float]) {
        { [counted] in
            counted.runs.add(1, ordering: .sequentiallyConsistent)
            await counted.gate.wait()
            return (ids, ids.flatMap { _ in [Float(1), 0] })
        }
    }

    static func runs(_ counted: CountedLoad) -> Int { counted.runs.load(ordering: .sequentiallyConsistent) }

    /// A load that must not run (the value is to come from the cache).
    static let unexpected: @Sendable () async throws -> (ids: [String], flat: [Float]) = {
        Issue.record("the cache loaded again")
        return ([], [])
    }

    @Test(
        "a newer version's load supersedes an older one in flight, whichever ends first: both readers are answered, only the newer is kept",
        arguments: [true, false])
    func newerVersionSupersedes(olderEndsFirst: Bool) async throws {
        let cache = VectorCache()
        let user = self.user
        let older = CountedLoad()
        let newer = CountedLoad()
        let first = Task {
            try await cache.entry(tenant: "t", user: user, embedder: "e", dimension: 2, version: "1", load: Self.vectors(older, ids: ["old"]))
        }
        try await waitUntil("the older load started") { Self.runs(older) == 1 }
        let second = Task {
            try await cache.entry(tenant: "t", user: user, embedder: "e", dimension: 2, version: "2", load: Self.vectors(newer, ids: ["new"]))
        }
        try await waitUntil("the newer load started") { Self.runs(newer) == 1 }
        if olderEndsFirst {
            older.gate.open()
            #expect(try await first.value.ids == ["old"])
            newer.gate.open()
            #expect(try await second.value.ids == ["new"])
        } else {
            newer.gate.open()
            #expect(try await second.value.ids == ["new"])
            older.gate.open()
            #expect(try await first.value.ids == ["old"])
        }
        // Version 2 is held (no load), the superseded version 1 is not.
        let held = try await cache.entry(tenant: "t", user: user, embedder: "e", dimension: 2, version: "2", load: Self.unexpected)
        #expect(held.ids == ["new"] && held.version == "2")
        #expect(Self.runs(older) == 1 && Self.runs(newer) == 1)
    }

    @Test("concurrent searches of a cold caller share one keyword-index load; one in flight at an erasure is not kept")
    func termIndexSharesAndForgets() async throws {
        let cache = TermIndexCache()
        let user = self.user
        let counted = CountedLoad()
        let load: @Sendable () async throws -> TermIndex = {
            counted.runs.add(1, ordering: .sequentiallyConsistent)
            await counted.gate.wait()
            return TermIndex(version: "1", documents: [("m1", 1)], postings: [])
        }
        try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<6 { group.addTask { try await cache.index(tenant: "t", user: user, version: "1", load: load).version } }
            try await waitUntil("the load started") { Self.runs(counted) >= 1 }
            try? await waitUntil(timeout: .seconds(1), "a second load") { Self.runs(counted) > 1 }
            counted.gate.open()
            for try await version in group { #expect(version == "1") }
        }
        #expect(Self.runs(counted) == 1)
        #expect(await cache.contains(tenant: "t", user: user))

        // Erased while a load of a new version runs: the load answers its search and is not kept.
        let newer = CountedLoad()
        let pending = Task {
            try await cache.index(tenant: "t", user: user, version: "2") {
                newer.runs.add(1, ordering: .sequentiallyConsistent)
                await newer.gate.wait()
                return TermIndex(version: "2", documents: [("m2", 1)], postings: [])
            }
        }
        try await waitUntil("the second load started") { Self.runs(newer) == 1 }
        await cache.invalidate(tenant: "t", user: user)
        newer.gate.open()
        #expect(try await pending.value.version == "2")
        #expect(await cache.contains(tenant: "t", user: user) == false)
        #expect(await cache.usage.bytes == 0)
    }

    @Test("a heads load in flight at an erasure answers its reader and is not kept")
    func headsLoadForgotten() async throws {
        let cache = VectorCache()
        let user = self.user
        let counted = CountedLoad()
        let load: @Sendable () async throws -> [MemoryHead] = {
            counted.runs.add(1, ordering: .sequentiallyConsistent)
            await counted.gate.wait()
            return []
        }
        let first = Task { try await cache.heads(tenant: "t", user: user, version: "1", load: load) }
        try await waitUntil("the load started") { Self.runs(counted) == 1 }
        await cache.invalidate(tenant: "t", user: user)
        counted.gate.open()
        #expect(try await first.value.isEmpty)
        _ = try await cache.heads(tenant: "t", user: user, version: "1", load: load)
        #expect(Self.runs(counted) == 2, "the forgotten load's heads were kept")
    }

    @Test("forgetting a caller (erasure) drops every cache of theirs: vectors, heads, keyword index, conflict index")
    func forgetCachedDropsEveryCache() async throws {
        let env = try await TestEnvironment.make(.sqlite)
        let store = try await env.openStore()
        let vault = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder())
        let user = self.user
        let loads = SharedLoadsTests.Counter()
        func fill() async throws {
            _ = try await vault.vectorCache.entry(tenant: "t", user: user, embedder: "e", dimension: 2, version: "1") {
                loads.add()
                return (["m1"], [1, 0])
            }
            _ = try await vault.vectorCache.heads(tenant: "t", user: user, version: "1") {
                loads.add()
                return []
            }
            _ = try await vault.termIndexCache.index(tenant: "t", user: user, version: "1") {
                loads.add()
                return TermIndex(version: "1", documents: [("m1", 1)], postings: [])
            }
            _ = try await vault.conflictIndexes.index(tenant: "t", user: user, version: "1") {
                loads.add()
                return []
            }
        }
        try await fill()
        #expect(loads.value == 4)
        try await fill()
        #expect(loads.value == 4, "a second read at the same version is served from the caches")
        await vault.forgetCached(tenant: "t", user: user)
        try await fill()
        #expect(loads.value == 8, "every cache loads again after forgetCached")
        await StoreFactory.close(store)
        await env.cleanUp()
    }

    /// The busy timeout of a reader of `pool`, read synchronously as `SQLiteMemoryStore.pointReading` reads.
    static func busyTimeoutOnThisThread(_ pool: DatabasePool) throws -> Int? {
        try pool.read { try Int.fetchOne($0, sql: "PRAGMA busy_timeout") }
    }

    @Test("SQLite's point-read connections never wait on a busy database (GRDB gives pool readers a 10 s busy timeout otherwise)")
    func pointReaderDoesNotWait() async throws {
        let f = try await StoreContractTests.Fixture.make(.sqlite)
        let sqlite = try #require(f.store as? SQLiteMemoryStore)
        // A read on the calling thread may not sleep in SQLite's busy handler: it fails, and the
        // ordinary read (GRDB's queue, under the deadline) answers instead.
        #expect(try Self.busyTimeoutOnThisThread(sqlite.database.pointReader) == 0)
        #expect(try await sqlite.database.pool.read { try Int.fetchOne($0, sql: "PRAGMA busy_timeout") } == 10_000)
        #expect(try await sqlite.database.pool.write { try Int.fetchOne($0, sql: "PRAGMA busy_timeout") } == 10_000)
        let rows = [f.row("m_busy_0")]
        #expect(try await f.store.apply(f.batch("busy", rows: rows)))
        #expect(try await f.store.memories(tenant: f.tenant, user: f.user, ids: [rows[0].id]).map(\.id) == [rows[0].id])
        await StoreFactory.close(f.store)
        await f.env.cleanUp()
    }
}

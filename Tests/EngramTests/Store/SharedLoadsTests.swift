import Foundation
import Synchronization
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramStore

/// A caller's caches (vectors, heads, keyword index) load once however many searches find them
/// cold at the same time; a load an erasure forgot, or one that failed, is not kept.
@Suite("Shared cache loads", .timeLimit(.minutes(1)))
struct SharedLoadsTests {
    let user = UserKey("u_sharedaaaaaaaaaaaaaaaaaaa2")!

    /// A load that counts its runs and waits for `gate`.
    final class CountedLoad: Sendable {
        let runs = Atomic<Int>(0)
        let gate = Gate()
    }

    static func vectors(_ counted: CountedLoad) -> @Sendable () async throws -> (ids: [String], flat: [Float]) {
        { [counted] in
            counted.runs.add(1, ordering: .sequentiallyConsistent)
            await counted.gate.wait()
            return (["m1", "m2"], [1, 0, 0, 1])
        }
    }

    static func heads(_ counted: CountedLoad) -> @Sendable () async throws -> [MemoryHead] {
        { [counted] in
            counted.runs.add(1, ordering: .sequentiallyConsistent)
            await counted.gate.wait()
            return []
        }
    }

    @Test("eight searches that find a caller's vectors and heads cold share one load of each")
    func concurrentReadersShareOneLoad() async throws {
        let cache = VectorCache()
        let vectors = CountedLoad()
        let heads = CountedLoad()
        let user = self.user
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    let entry = try await cache.entry(tenant: "t", user: user, embedder: "e", dimension: 2, version: "1", load: Self.vectors(vectors))
                    _ = try await cache.heads(tenant: "t", user: user, version: "1", load: Self.heads(heads))
                    return entry.ids.count
                }
            }
            try await waitUntil("the vectors' load started") { vectors.runs.load(ordering: .sequentiallyConsistent) >= 1 }
            // Readers keep arriving while the load waits; none may start another.
            try? await waitUntil(timeout: .seconds(1), "a second load") { vectors.runs.load(ordering: .sequentiallyConsistent) > 1 }
            vectors.gate.open()
            try await waitUntil("the heads' load started") { heads.runs.load(ordering: .sequentiallyConsistent) >= 1 }
            try? await waitUntil(timeout: .seconds(1), "a second load") { heads.runs.load(ordering: .sequentiallyConsistent) > 1 }
            heads.gate.open()
            for try await count in group { #expect(count == 2) }
        }
        #expect(vectors.runs.load(ordering: .sequentiallyConsistent) == 1)
        #expect(heads.runs.load(ordering: .sequentiallyConsistent) == 1)
        #expect(await cache.holds(tenant: "t", user: user, embedder: "e", version: "1"))
    }

    @Test("a load in flight when the caller is erased answers its reader and is not kept")
    func invalidatedLoadIsNotKept() async throws {
        let cache = VectorCache()
        let counted = CountedLoad()
        let user = self.user
        let first = Task { try await cache.entry(tenant: "t", user: user, embedder: "e", dimension: 2, version: "1", load: Self.vectors(counted)) }
        try await waitUntil("the load started") { counted.runs.load(ordering: .sequentiallyConsistent) == 1 }
        await cache.invalidate(tenant: "t", user: user)
        counted.gate.open()
        #expect(try await first.value.ids == ["m1", "m2"])
        _ = try await cache.entry(tenant: "t", user: user, embedder: "e", dimension: 2, version: "1", load: Self.vectors(counted))
        #expect(counted.runs.load(ordering: .sequentiallyConsistent) == 2)
    }

    final class Counter: Sendable {
        private let count = Atomic<Int>(0)
        func add() { count.add(1, ordering: .sequentiallyConsistent) }
        var value: Int { count.load(ordering: .sequentiallyConsistent) }
    }

    @Test("a failed load is not kept: the next reader loads again")
    func failedLoadIsRetried() async throws {
        struct Failed: Error {}
        let cache = VectorCache()
        let runs = Counter()
        let user = self.user
        let failing: @Sendable () async throws -> [MemoryHead] = {
            runs.add()
            throw Failed()
        }
        await #expect(throws: Failed.self) { try await cache.heads(tenant: "t", user: user, version: "1", load: failing) }
        await #expect(throws: Failed.self) { try await cache.heads(tenant: "t", user: user, version: "1", load: failing) }
        #expect(runs.value == 2)
    }
}

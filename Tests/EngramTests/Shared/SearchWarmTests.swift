import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramStore

/// The pre-call loads the caller's search caches without waiting for them, so the call's first
/// search does not pay for loading what a write made stale.
@Suite("A pre-call warms the caller's search caches", .timeLimit(.minutes(1)))
struct SearchWarmTests {
    @Test("warming loads the heads, vectors and keyword index at the caller's current version", arguments: Backend.available)
    func warmLoadsEverySearchCache(_ backend: Backend) async throws {
        let env = try await TestEnvironment.make(backend)
        let store = try await env.openStore()
        let writer = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder())
        let tenant = try #require(try await writer.tenant("default", create: true))
        let user = tenant.userKeys.key(for: .phone("+14155550127"))
        let batch = try await writer.prepareBulkInsert(
            tenant: "default", user: user, extraction: TermIndexTests.extraction((1...30).map { "Note \($0) about the cleaning" }),
            conversationID: nil, callAt: nil, idempotencyKey: "warm", eventID: "warm", eventType: "test")
        #expect(try await writer.store.apply(batch))

        // A gateway's vault that has never read this caller.
        let gateway = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder())
        let record = try #require(try await gateway.user(tenant: "default", user: user))
        let embedder = try await gateway.embedder(forTenant: "default").id
        let version = MemoryVault.cacheVersion(record)
        #expect(await !gateway.vectorCache.holds(tenant: "default", user: user, embedder: embedder, version: version))
        #expect(await !gateway.termIndexCache.contains(tenant: "default", user: user))

        await gateway.warmSearch(tenant: "default", user: user)
        #expect(await gateway.vectorCache.holds(tenant: "default", user: user, embedder: embedder, version: version))
        #expect(await gateway.termIndexCache.contains(tenant: "default", user: user))

        // An unknown caller or tenant warms nothing and fails nothing.
        await gateway.warmSearch(tenant: "default", user: tenant.userKeys.key(for: .phone("+14155550128")))
        await gateway.warmSearch(tenant: "no-such-tenant", user: user)
        await StoreFactory.close(store)
        await env.cleanUp()
    }
}

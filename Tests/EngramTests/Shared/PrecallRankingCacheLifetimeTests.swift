import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramStore

/// The pre-call order cache holds a caller's heads (ids, slots, saliences) for a minute, as
/// docs/privacy.md says: an order past its lifetime is dropped, not kept until 4,096 other callers
/// have called, and erasing a caller drops its orders at once in the process that erases.
@Suite("Pre-call orders are dropped past their lifetime and at erasure", .timeLimit(.minutes(1)))
struct PrecallRankingCacheLifetimeTests {
    @Test("an order past its lifetime is dropped by a later keep; a young one stays")
    func expiredAreSwept() {
        let cache = PrecallRankingCache()
        let at = Date(timeIntervalSince1970: 1_000_000)
        let ranking = PrecallRanking(heads: [PrecallRankingCacheTests.head("a", salience: 0.5)], includeSensitive: false, now: at)
        cache.keep(ranking, key: "old", version: "v1", rankedAt: at, now: at)
        cache.keep(ranking, key: "young", version: "v1", rankedAt: at.addingTimeInterval(30), now: at.addingTimeInterval(30))
        #expect(cache.count == 2)
        let later = at.addingTimeInterval(PrecallRankingCache.lifetime + 1)
        cache.keep(ranking, key: "new", version: "v1", rankedAt: later, now: later)
        #expect(cache.count == 2, "the order past its lifetime is gone, the younger one and the new one stay")
        #expect(cache.ranking(key: "young", version: "v1", now: later) != nil)
    }

    @Test("erasing a caller drops its pre-call orders from the vault's cache", arguments: Backend.available)
    func erasureDropsOrders(_ backend: Backend) async throws {
        let env = try await TestEnvironment.make(backend)
        let store = try await env.openStore()
        let vault = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder(), clock: .fixed(Date()))
        let tenant = try #require(try await vault.tenant("default", create: true))
        let user = tenant.userKeys.key(for: .phone("+14155550131"))
        let other = tenant.userKeys.key(for: .phone("+14155550132"))
        for (caller, name) in [(user, "erased"), (other, "kept")] {
            let batch = try await vault.prepareBulkInsert(
                tenant: "default", user: caller, extraction: TermIndexTests.extraction(["The caller asked about the \(name) parcel on Friday"]),
                conversationID: nil, callAt: nil, idempotencyKey: "precall-erase-\(name)", eventID: "precall-erase-\(name)", eventType: "test")
            #expect(try await vault.store.apply(batch))
        }
        let builder = PrecallContextBuilder(vault: vault, characterBudget: 2_000)
        _ = try await builder.variables(tenant: tenant, user: user, includeSensitive: false)
        _ = try await builder.variables(tenant: tenant, user: user, includeSensitive: true)
        _ = try await builder.variables(tenant: tenant, user: other, includeSensitive: false)
        #expect(vault.precallRankings.count == 3)

        try await vault.erase(tenant: "default", user: user)
        #expect(vault.precallRankings.count == 1, "only the other caller's order is left")
        await StoreFactory.close(store)
        await env.cleanUp()
    }
}

import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramStore

/// A pre-call's order is reused for a minute (a call's first LLM turn follows its pre-call), for
/// one version of the caller only: a write shows in the next pre-call at once.
@Suite("Pre-call order reused for a minute, never past a write", .timeLimit(.minutes(1)))
struct PrecallRankingCacheTests {
    static func head(_ id: String, salience: Double) -> MemoryHead {
        MemoryHead(
            id: id, sector: .semantic, slot: nil, importance: 0.5, salience0: salience, reinforcedAt: Date(timeIntervalSince1970: 0),
            validFrom: Date(timeIntervalSince1970: 0), sensitive: false, isSummary: false)
    }

    @Test("an order is reused for its version within the lifetime only, and never for a clock gone backwards")
    func lifetime() {
        let cache = PrecallRankingCache()
        let at = Date(timeIntervalSince1970: 1_000_000)
        let ranking = PrecallRanking(heads: [Self.head("a", salience: 0.9), Self.head("b", salience: 0.2)], includeSensitive: false, now: at)
        cache.keep(ranking, key: "k", version: "v1", rankedAt: at)
        #expect(cache.ranking(key: "k", version: "v1", now: at)?.rankedAt == at)
        #expect(cache.ranking(key: "k", version: "v1", now: at.addingTimeInterval(59))?.ranking.count == 2)
        #expect(cache.ranking(key: "k", version: "v1", now: at.addingTimeInterval(PrecallRankingCache.lifetime)) == nil)
        #expect(cache.ranking(key: "k", version: "v2", now: at) == nil, "another version of the caller")
        #expect(cache.ranking(key: "other", version: "v1", now: at) == nil)
        #expect(cache.ranking(key: "k", version: "v1", now: at.addingTimeInterval(-1)) == nil)
    }

    @Test("a second pre-call gives the same context; after a write the next one shows it at once", arguments: Backend.available)
    func writeShowsAtOnce(_ backend: Backend) async throws {
        let env = try await TestEnvironment.make(backend)
        let store = try await env.openStore()
        let vault = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder(), clock: .fixed(Date()))
        let tenant = try #require(try await vault.tenant("default", create: true))
        let user = tenant.userKeys.key(for: .phone("+14155550126"))
        let builder = PrecallContextBuilder(vault: vault, characterBudget: 2_000)
        let texts = (1...40).map { "Note \($0): the caller asked about order \($0 * 7)" }
        var batch = try await vault.prepareBulkInsert(
            tenant: "default", user: user, extraction: TermIndexTests.extraction(texts), conversationID: nil, callAt: nil,
            idempotencyKey: "precall-cache", eventID: "precall-cache", eventType: "test")
        #expect(try await vault.store.apply(batch))

        let first = try await builder.variables(tenant: tenant, user: user, includeSensitive: false)
        let second = try await builder.variables(tenant: tenant, user: user, includeSensitive: false)
        #expect(first.0.memoryContext == second.0.memoryContext)
        #expect(first.1.map(\.id) == second.1.map(\.id))
        #expect(!first.0.memoryContext.contains("Lisbon"))

        batch = try await vault.prepareWrite(
            tenant: "default", user: user, extraction: TermIndexTests.extraction(["The caller lives in Lisbon"], slot: "address.city"),
            conversationID: nil, callAt: nil, idempotencyKey: "precall-cache-city", eventID: "precall-cache-city", eventType: "test")
        #expect(try await vault.store.apply(batch))
        let third = try await builder.variables(tenant: tenant, user: user, includeSensitive: false)
        #expect(third.0.memoryContext.contains("Lisbon"), "a slot fact leads the context from the next pre-call on")
        #expect(third.0.memoryCount == first.0.memoryCount + 1)
        await StoreFactory.close(store)
        await env.cleanUp()
    }
}

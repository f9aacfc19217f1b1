import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramStore

/// Search scores its candidates from the cached memory heads and reads rows only for the first
/// hits and the answer (MemoryVault+Ranking). Nothing about the answer may change for that: each
/// hit carries the score its own row gives, in score order, the sensitive ones left out when asked,
/// and a memory that stops being current is never answered.
@Suite("Search ranks from heads and reads only what it answers", .timeLimit(.minutes(2)))
struct SearchRankingTests {
    /// Sixty memories no two of which are near-duplicates (collapse would give a hit its newer
    /// twin's row with the first one's score), sharing a few of the questions' words.
    static let texts: [String] = {
        let subjects = ["cleaning", "dog Bruno", "invoice", "violin teacher", "refund", "parking permit", "birthday cake", "car repair"]
        let places = ["downtown clinic", "north office", "garden centre", "music school", "bakery", "garage", "library", "harbour"]
        let days = ["Friday", "Tuesday", "Monday", "Sunday"]
        return (0..<60).map { n in
            "Note \(n): the caller asked about the \(subjects[n % 8]) at the \(places[(n / 8) % 8]) on \(days[n % 4]), reference \(1000 + n * 37)"
        }
    }()

    static func extraction(_ texts: [String], sensitiveEvery: Int) -> Extraction {
        Extraction(
            memories: texts.enumerated().map { n, text in
                ExtractedMemory(
                    content: text, sector: n % 3 == 0 ? .semantic : .episodic, slot: nil, importance: 0.3 + Double(n % 5) / 10,
                    validFrom: Date(timeIntervalSince1970: 1_750_000_000 + Double(n) * 86_400), sourceTurns: [], sensitive: n % sensitiveEvery == 0,
                    kind: "fact")
            },
            summary: nil, userName: nil, extractor: "test")
    }

    @Test("every hit carries the score its own row gives, best first, each memory once", arguments: Backend.available)
    func scoresFromHeadsAreScoresFromRows(_ backend: Backend) async throws {
        let env = try await TestEnvironment.make(backend)
        let store = try await env.openStore()
        let now = Date(timeIntervalSince1970: 1_760_000_000)
        let vault = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder(), clock: .fixed(now))
        let tenant = try #require(try await vault.tenant("default", create: true))
        let user = tenant.userKeys.key(for: .phone("+14155550123"))
        let batch = try await vault.prepareBulkInsert(
            tenant: "default", user: user, extraction: Self.extraction(Self.texts, sensitiveEvery: 7), conversationID: nil, callAt: nil,
            idempotencyKey: "ranking", eventID: "ranking", eventType: "test")
        #expect(try await vault.store.apply(batch))
        let weights = try await vault.embedder(forTenant: "default").scoringWeights

        for (query, limit) in [("When is my Friday cleaning?", 5), ("dog Bruno at the garage", 40), ("violin teacher Tuesday invoice", 100)] {
            for includeSensitive in [true, false] {
                let hits = try await vault.search(tenant: "default", user: user, query: query, limit: limit, includeSensitive: includeSensitive)
                #expect(!hits.isEmpty && hits.count <= limit, "\(query)")
                #expect(Set(hits.map(\.memory.id)).count == hits.count, "each memory once")
                #expect(zip(hits, hits.dropFirst()).allSatisfy { $0.breakdown.score >= $1.breakdown.score }, "best first")
                if !includeSensitive { #expect(hits.allSatisfy { !$0.memory.sensitive }) }
                for hit in hits {
                    // The parts a row decides (salience, recency) are the row's; the total is the formula's.
                    let fromRow = Scoring.score(
                        cosine: hit.breakdown.cosine, bm25: hit.breakdown.bm25, salience: Salience.of(hit.memory, at: now),
                        eventDate: hit.memory.validFrom, now: now, weights: weights)
                    #expect(abs(fromRow.salience - hit.breakdown.salience) <= 1e-12, "\(query)")
                    #expect(abs(fromRow.recency - hit.breakdown.recency) <= 1e-12, "\(query)")
                    #expect(abs(fromRow.score - hit.breakdown.score) <= 1e-12, "\(query)")
                    #expect(hit.memory.status == .active && hit.memory.validTo == nil)
                }
            }
        }
        await StoreFactory.close(store)
        await env.cleanUp()
    }

    @Test("a memory deleted after a search is not answered by the next one", arguments: Backend.available)
    func deletedIsNotAnswered(_ backend: Backend) async throws {
        let env = try await TestEnvironment.make(backend)
        let store = try await env.openStore()
        let vault = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder())
        let tenant = try #require(try await vault.tenant("default", create: true))
        let user = tenant.userKeys.key(for: .phone("+14155550124"))
        let batch = try await vault.prepareBulkInsert(
            tenant: "default", user: user, extraction: Self.extraction(Self.texts, sensitiveEvery: 1000), conversationID: nil, callAt: nil,
            idempotencyKey: "archive", eventID: "archive", eventType: "test")
        #expect(try await vault.store.apply(batch))
        let before = try await vault.search(tenant: "default", user: user, query: "dog Bruno at the garage", limit: 5)
        let gone = try #require(before.first?.memory)
        #expect(try await vault.deleteMemory(tenant: "default", id: gone.id))
        let after = try await vault.search(tenant: "default", user: user, query: "dog Bruno at the garage", limit: 5)
        #expect(!after.isEmpty)
        #expect(!after.contains { $0.memory.id == gone.id })
        await StoreFactory.close(store)
        await env.cleanUp()
    }
    @Test(
        "recall's reinforcement reaches this process's ranking once written (it does not change the caller's version)", arguments: Backend.available)
    func reinforcementReachesTheRanking(_ backend: Backend) async throws {
        let env = try await TestEnvironment.make(backend)
        let store = try await env.openStore()
        let now = Date(timeIntervalSince1970: 1_760_000_000)
        let vault = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder(), clock: .fixed(now))
        let tenant = try #require(try await vault.tenant("default", create: true))
        let user = tenant.userKeys.key(for: .phone("+14155550125"))
        let batch = try await vault.prepareBulkInsert(
            tenant: "default", user: user, extraction: Self.extraction(Self.texts, sensitiveEvery: 1000), conversationID: nil, callAt: nil,
            idempotencyKey: "reinforce", eventID: "reinforce", eventType: "test")
        #expect(try await vault.store.apply(batch))
        let version = try #require(try await vault.user(tenant: "default", user: user)).memoryVersion

        let before = try await vault.search(tenant: "default", user: user, query: "refund at the bakery", limit: 5)
        let buffer = vault.reinforcementBuffer()
        await buffer.reinforce(before.map(\.memory), at: now)
        try await buffer.flush()
        #expect(try #require(try await vault.user(tenant: "default", user: user)).memoryVersion == version, "the caches stay valid")

        let after = try await vault.search(tenant: "default", user: user, query: "refund at the bakery", limit: 5)
        let raised = after.filter { hit in before.contains { $0.memory.id == hit.memory.id && $0.breakdown.salience < hit.breakdown.salience } }
        #expect(!raised.isEmpty, "the reinforced memories rank with their new salience")
        for hit in after {
            #expect(abs(Salience.of(hit.memory, at: now) - hit.breakdown.salience) <= 1e-12, "ranked with the salience its row holds")
        }
        await StoreFactory.close(store)
        await env.cleanUp()
    }
}

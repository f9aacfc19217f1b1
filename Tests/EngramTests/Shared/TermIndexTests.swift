import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramStore

/// Issue 14 (read side): the keyword index kept in memory per user (`TermIndex`) answers exactly
/// what the store's postings answer, follows writes and erasures made by other processes through
/// the user's version, and stays within its bound.
@Suite("Keyword index in memory", .timeLimit(.minutes(3)))
struct TermIndexTests {
    static let texts = [
        "The caller's dog Biscuit needs a grooming appointment on Friday",
        "The caller prefers afternoon appointments after three",
        "Dana asked to move the cleaning appointment to Tuesday morning",
        "The caller is allergic to penicillin",
        "The caller's daughter plays violin in the school orchestra",
        "Booked a cleaning for Friday at 10:00 with Dr. Patel",
        "The caller dislikes being called before nine in the morning",
        "The caller's dog Biscuit is afraid of thunder",
        "The caller works night shifts at the hospital",
        "Dana's address moved to Oak Street in Portland",
        "The caller wants reminders by text message, not email",
        "appointment appointment appointment: the caller repeats the word appointment",
        "",
    ]
    static let queries = [
        "when is the dog's grooming appointment", "Biscuit", "cleaning appointment Friday", "penicillin allergy",
        "what does the daughter play", "Dana Portland address", "text or email reminders", "appointment",
        "nothing matches zzzz qqqq", "the caller", "morning", "DOG biscuit Thunder",
    ]

    static func extraction(_ texts: [String], slot: String? = nil) -> Extraction {
        Extraction(
            memories: texts.map {
                ExtractedMemory(
                    content: $0, sector: slot == nil ? .episodic : .semantic, slot: slot, importance: 0.6, validFrom: nil, sourceTurns: [],
                    sensitive: false, kind: "fact")
            },
            summary: nil, userName: nil, extractor: "test")
    }

    /// A user with current, superseded and archived memories written through the vault.
    static func seed(_ vault: MemoryVault, user: UserKey, prefix: String = "") async throws {
        var batch = try await vault.prepareBulkInsert(
            tenant: "default", user: user, extraction: extraction(texts.map { prefix + $0 }), conversationID: nil, callAt: nil,
            idempotencyKey: "seed-\(prefix)", eventID: "seed-\(prefix)", eventType: "test")
        #expect(try await vault.store.apply(batch))
        // A slot fact and its replacement: the first is closed (valid_to) and out of the index.
        for (n, city) in ["Lisbon", "Porto"].enumerated() {
            batch = try await vault.prepareWrite(
                tenant: "default", user: user,
                extraction: extraction(["\(prefix)The caller lives in \(city) near the dog park"], slot: "address.city"),
                conversationID: nil, callAt: nil, idempotencyKey: "city-\(prefix)\(n)", eventID: "city-\(prefix)\(n)", eventType: "test")
            #expect(try await vault.store.apply(batch))
        }
        // An archived memory is out of the index as well.
        let thunder = try #require(try await vault.memories(tenant: "default", user: user).first { $0.content.contains("thunder") })
        try await vault.store.archive(tenant: "default", ids: [thunder.id])
    }

    @Test("the index ranks every query exactly as the store's postings do", .timeLimit(.minutes(1)), arguments: Backend.available)
    func sameAsStore(_ backend: Backend) async throws {
        let env = try await TestEnvironment.make(backend)
        let store = try await env.openStore()
        // One instant for both, so salience and recency are the same in both answers.
        let clock = WallClock.fixed(Date())
        let vault = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder(), clock: clock)
        let withoutIndex = MemoryVault(
            store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder(), termIndexCache: TermIndexCache(maxBytes: 0),
            clock: clock)
        let tenant = try #require(try await vault.tenant("default", create: true))
        let user = tenant.userKeys.key(for: .phone("+14155550191"))
        try await Self.seed(vault, user: user)
        let record = try #require(try await store.user(tenant: "default", user: user))
        let key = try vault.dataKey(of: record)

        let index = try await vault.keywordIndex(record)
        let statistics = try await store.termStatistics(tenant: "default", user: user)
        #expect(index.statistics.documentCount == statistics.documentCount)
        #expect(abs(index.statistics.averageLength - statistics.averageLength) <= 1e-12 * max(1, statistics.averageLength))
        #expect(index.statistics.documentCount == Self.texts.count)  // 13 seeded + Porto - thunder (archived)

        var matched = 0
        for query in Self.queries {
            let terms = Array(MemoryVault.termHashes(query, key: key).keys)
            let fromStore = try await vault.storeKeywordCandidates(tenant: "default", user: user, terms: terms, limit: 1_000)
            let fromIndex = index.candidates(terms: terms, limit: 1_000)
            if !fromIndex.isEmpty { matched += 1 }
            // The same memories with the same scores (up to rounding: a sum of the same terms in
            // another order), in the same rank order.
            let storeScores = Dictionary(uniqueKeysWithValues: fromStore.map { ($0.id, $0.score) })
            #expect(Set(fromIndex.map(\.id)) == Set(storeScores.keys), "query: \(query)")
            for candidate in fromIndex {
                #expect(abs(candidate.score - (storeScores[candidate.id] ?? -1)) <= 1e-9, "query: \(query)")
            }
            #expect(
                fromIndex.count == fromStore.count && zip(fromIndex, fromStore).allSatisfy { abs($0.score - $1.score) <= 1e-9 }, "query: \(query)")
            // The top few, as search takes them.
            #expect(zip(index.candidates(terms: terms, limit: 3), fromStore.prefix(3)).allSatisfy { abs($0.score - $1.score) <= 1e-9 })

            let hits = try await vault.search(tenant: "default", user: user, query: query, limit: 40)
            let reference = try await withoutIndex.search(tenant: "default", user: user, query: query, limit: 40)
            #expect(Set(hits.map(\.memory.id)) == Set(reference.map(\.memory.id)), "query: \(query)")
            #expect(
                hits.count == reference.count && zip(hits, reference).allSatisfy { abs($0.breakdown.score - $1.breakdown.score) <= 1e-9 },
                "query: \(query)")
        }
        #expect(matched >= Self.queries.count - 2, "the queries find memories by keyword")
        let dog = try await vault.search(tenant: "default", user: user, query: "Biscuit", limit: 5)
        #expect(dog.first?.memory.content.contains("Biscuit") == true && (dog.first?.breakdown.bm25 ?? 0) > 0)
        #expect(
            !dog.contains { $0.memory.content.contains("thunder") || $0.memory.content.contains("Lisbon") },
            "archived and superseded memories are out")
        await StoreFactory.close(store)
        await env.cleanUp()
    }

    @Test(
        "a write and a deletion through another store connection reach the cached index through the user's version",
        .timeLimit(.minutes(1)), arguments: Backend.available)
    func followsOtherWriters(_ backend: Backend) async throws {
        let env = try await TestEnvironment.make(backend)
        let readerStore = try await env.openStore()
        let writerStore = try await env.openStore()  // its own pool and caches: another process's view
        let reader = MemoryVault(store: readerStore, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder())
        let writer = MemoryVault(store: writerStore, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder())
        let tenant = try #require(try await writer.tenant("default", create: true))
        let user = tenant.userKeys.key(for: .phone("+14155550192"))
        try await Self.seed(writer, user: user)
        #expect(
            try await reader.search(tenant: "default", user: user, query: "zanzibar parrot", limit: 5).allSatisfy {
                !$0.memory.content.contains("Zanzibar")
            })
        #expect(await reader.termIndexCache.contains(tenant: "default", user: user))

        let batch = try await writer.prepareWrite(
            tenant: "default", user: user, extraction: Self.extraction(["The caller's parrot is called Zanzibar"]), conversationID: nil, callAt: nil,
            idempotencyKey: "parrot", eventID: "parrot", eventType: "test")
        #expect(try await writerStore.apply(batch))
        let found = try await reader.search(tenant: "default", user: user, query: "zanzibar parrot", limit: 5)
        let parrot = try #require(found.first)
        #expect(parrot.memory.content.contains("Zanzibar") && parrot.breakdown.bm25 == 1)

        #expect(try await writerStore.deleteMemory(tenant: "default", id: parrot.memory.id))
        let record = try #require(try await readerStore.user(tenant: "default", user: user))
        let key = try reader.dataKey(of: record)
        let terms = Array(MemoryVault.termHashes("zanzibar parrot", key: key).keys)
        #expect(try await reader.keywordCandidates(record, terms: terms).isEmpty, "the deleted memory left the index")
        #expect(
            try await reader.search(tenant: "default", user: user, query: "zanzibar parrot", limit: 5).allSatisfy {
                !$0.memory.content.contains("Zanzibar")
            })
        await StoreFactory.close(readerStore)
        await StoreFactory.close(writerStore)
        await env.cleanUp()
    }

    @Test("erased memories never come back from the index, also when the caller comes back", .timeLimit(.minutes(1)), arguments: Backend.available)
    func erasure(_ backend: Backend) async throws {
        let env = try await TestEnvironment.make(backend)
        let readerStore = try await env.openStore()
        let writerStore = try await env.openStore()
        let reader = MemoryVault(store: readerStore, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder())
        let writer = MemoryVault(store: writerStore, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder())
        let tenant = try #require(try await writer.tenant("default", create: true))
        let user = tenant.userKeys.key(for: .phone("+14155550193"))
        try await Self.seed(writer, user: user)
        #expect(try await reader.search(tenant: "default", user: user, query: "Biscuit penicillin", limit: 10).count > 0)
        #expect(await reader.termIndexCache.contains(tenant: "default", user: user))

        // Erased by another process: this one's cache is not told.
        try await writerStore.erase(tenant: "default", user: user, at: Date())
        #expect(try await reader.search(tenant: "default", user: user, query: "Biscuit penicillin", limit: 10).isEmpty)

        // The caller comes back and consents again: a new user row, new memories, none of the old.
        _ = try await writer.userForWriting(tenant: "default", user: user)
        try await writerStore.setConsent(tenant: "default", user: user, granted: true, at: Date())
        var batch = try await writer.prepareBulkInsert(
            tenant: "default", user: user, extraction: Self.extraction(["The caller's cat is called Pepper"]), conversationID: nil, callAt: nil,
            idempotencyKey: "again", eventID: "again", eventType: "test")
        batch.erasedAt = try await writerStore.tombstone(tenant: "default", user: user)  // seen and lifted by the new consent
        #expect(try await writerStore.apply(batch))
        let again = try await reader.search(tenant: "default", user: user, query: "Biscuit penicillin cat Pepper", limit: 10)
        #expect(again.map(\.memory.content) == ["The caller's cat is called Pepper"])
        let record = try #require(try await readerStore.user(tenant: "default", user: user))
        let index = try await reader.keywordIndex(record)
        #expect(index.statistics.documentCount == 1)

        // In this process an erasure drops the index at once.
        await reader.forgetCached(tenant: "default", user: user)
        #expect(await !reader.termIndexCache.contains(tenant: "default", user: user))
        await StoreFactory.close(readerStore)
        await StoreFactory.close(writerStore)
        await env.cleanUp()
    }

    static func index(_ version: String, documents: Int) -> TermIndex {
        TermIndex(
            version: version, documents: (0..<documents).map { (id: "m\($0)", length: 4) },
            postings: (0..<documents).map { TermPosting(term: Data(repeating: UInt8($0 % 7), count: 16), memoryID: "m\($0)", frequency: 1) })
    }

    @Test("the cache keeps within its bound, dropping the least recently used caller first", .timeLimit(.minutes(1)))
    func bounded() async throws {
        let size = Self.index("v", documents: 100).estimatedBytes
        let cache = TermIndexCache(maxBytes: size * 2 + size / 2)
        let users = ["u_lruaaaaaaaaaaaaaaaaaaaaaa2", "u_lruaaaaaaaaaaaaaaaaaaaaaa3", "u_lruaaaaaaaaaaaaaaaaaaaaaa4"].compactMap(UserKey.init)
        try #require(users.count == 3)
        for user in users.prefix(2) { _ = try await cache.index(tenant: "t", user: user, version: "v") { Self.index("v", documents: 100) } }
        _ = try await cache.index(tenant: "t", user: users[0], version: "v") {
            Issue.record("a cached index was loaded again")
            return Self.index("v", documents: 100)
        }
        _ = try await cache.index(tenant: "t", user: users[2], version: "v") { Self.index("v", documents: 100) }
        #expect(await cache.contains(tenant: "t", user: users[0]), "recently used: kept")
        #expect(await !cache.contains(tenant: "t", user: users[1]), "least recently used: dropped")
        #expect(await cache.contains(tenant: "t", user: users[2]))
        let usage = await cache.usage
        #expect(usage.users == 2 && usage.bytes <= cache.maxBytes)

        // A new version replaces the old; an index larger than the bound answers and is not kept.
        let newer = try await cache.index(tenant: "t", user: users[0], version: "v2") { Self.index("v2", documents: 100) }
        #expect(newer.version == "v2")
        let huge = try await cache.index(tenant: "t", user: users[1], version: "v") { Self.index("v", documents: 1_000) }
        #expect(huge.statistics.documentCount == 1_000)
        #expect(await !cache.contains(tenant: "t", user: users[1]))
        #expect(await cache.usage.bytes <= cache.maxBytes)
    }

    @Test("the bound is read from ENGRAM_TERM_INDEX_MAX_MB; a bad value names the variable", .timeLimit(.minutes(1)))
    func configuration() throws {
        #expect(try EngramConfiguration.fromEnvironment([:]).termIndexMaxBytes == TermIndexCache.defaultMaxBytes)
        #expect(try EngramConfiguration.fromEnvironment(["ENGRAM_TERM_INDEX_MAX_MB": "0"]).termIndexMaxBytes == 0)
        #expect(try EngramConfiguration.fromEnvironment(["ENGRAM_TERM_INDEX_MAX_MB": "64"]).termIndexMaxBytes == 64 * 1024 * 1024)
        #expect(try EngramConfiguration.fromEnvironment(["ENGRAM_WORKER_NICE": "0"]).workerNice == 0)
        #expect(try EngramConfiguration.fromEnvironment([:]).workerNice == 10)
        for (name, value) in [
            ("ENGRAM_TERM_INDEX_MAX_MB", "-1"), ("ENGRAM_TERM_INDEX_MAX_MB", "lots"), ("ENGRAM_WORKER_NICE", "20"), ("ENGRAM_WORKER_NICE", "-5"),
        ] {
            #expect { try EngramConfiguration.fromEnvironment([name: value]) } throws: { ($0 as? ConfigurationError)?.variable == name }
        }
    }
}

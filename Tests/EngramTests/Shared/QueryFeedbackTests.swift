import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramStore

/// Issue 13: search's second step (pseudo-relevance feedback). The first hits' rare terms make a
/// second keyword query, so a memory that shares no word with the question but a rare one with
/// the best hit is found; the index and the store's postings rank it alike.
@Suite("Search's second step: feedback from the first hits", .timeLimit(.minutes(2)))
struct QueryFeedbackTests {
    @Test("expansion terms are the first hits' rare terms, best ranked hit first, never the question's own or numbers")
    func expansionTerms() {
        // Stemmed terms, as `TextNormalizer.terms` gives them ("moved" → "mov", "letters" → "letter").
        let frequencies = ["sweden": 1, "grandmother": 1, "letter": 1, "weather": 9, "mov": 2, "caroline": 3, "2023": 1, "cold": 1]
        let terms = QueryFeedback.terms(
            query: "Where has Caroline moved from?",
            hits: ["Caroline moved here from Sweden in 2023", "The weather is cold and grey", "Grandmother writes letters"], documentCount: 10,
            limit: 3,
            minimumIDF: 1.0
        ) { frequencies[$0] }
        // sweden 1/4 × idf, cold 1/3 × idf / 2, grandmother and letter 1/3 × idf / 3 (equal: term order);
        // "grey" and "writ" are unknown to the index.
        #expect(terms.map(\.term) == ["sweden", "cold", "grandmother"])
        #expect(terms.first?.weight == 1)
        #expect(!terms.contains { ["caroline", "mov", "2023"].contains($0.term) })
        #expect(!terms.contains { $0.term == "weather" }, "a term most memories hold is not rare")
        #expect(terms.allSatisfy { $0.weight > 0 && $0.weight <= 1 })
        #expect(zip(terms, terms.dropFirst()).allSatisfy { $0.weight >= $1.weight })
    }

    @Test("no hits, no memories, an unknown term or a zero limit give no expansion")
    func nothingToExpand() {
        #expect(QueryFeedback.terms(query: "x", hits: [], documentCount: 10) { _ in 1 }.isEmpty)
        #expect(QueryFeedback.terms(query: "x", hits: ["Sweden"], documentCount: 0) { _ in 1 }.isEmpty)
        #expect(QueryFeedback.terms(query: "x", hits: ["Sweden"], documentCount: 10) { _ in nil }.isEmpty)
        #expect(QueryFeedback.terms(query: "x", hits: ["Sweden"], documentCount: 10, limit: 0) { _ in 1 }.isEmpty)
        #expect(QueryFeedback.terms(query: "x", hits: ["", "   ", "?!"], documentCount: 10) { _ in 1 }.isEmpty)
    }

    @Test("a weighted keyword query with weight 1 ranks as the plain one, and weights scale the scores")
    func weightedIndexQuery() throws {
        let key = UserDataKey.generate()
        let texts = ["dog park on Friday", "dog grooming", "cleaning on Friday", "violin lessons", "dog dog dog"]
        var postings: [TermPosting] = []
        var documents: [(id: String, length: Int)] = []
        for (i, text) in texts.enumerated() {
            let hashes = MemoryVault.termHashes(text, key: key)
            documents.append(("m\(i)", hashes.values.reduce(0, +)))
            postings += hashes.map { TermPosting(term: $0.key, memoryID: "m\(i)", frequency: $0.value) }
        }
        let index = TermIndex(version: "v", documents: documents, postings: postings)
        let terms = Array(MemoryVault.termHashes("dog Friday", key: key).keys)
        let plain = index.candidates(terms: terms, limit: 10)
        let weighted = index.candidates(weighted: terms.map { ($0, 1.0) }, limit: 10)
        #expect(plain.map(\.id) == weighted.map(\.id))
        #expect(zip(plain, weighted).allSatisfy { abs($0.score - $1.score) <= 1e-9 })
        let doubled = index.candidates(weighted: terms.map { ($0, 2.0) }, limit: 10)
        #expect(zip(plain, doubled).allSatisfy { abs(2 * $0.score - $1.score) <= 1e-9 })
        #expect(index.candidates(weighted: terms.map { ($0, 0.0) }, limit: 10).isEmpty)
        #expect(index.candidates(weighted: terms.map { ($0, 1.0) }, limit: 0).isEmpty)
        #expect(index.documentFrequency(MemoryVault.termHash("dog", key: key)) == 3)

        // The second step: question / its best + λ · expansion / its best; no expansion match, no answer.
        let violin = [(term: MemoryVault.termHash("violin", key: key), weight: 1.0)]
        let fused = index.feedbackCandidates(question: terms.map { ($0, 1.0) }, expansion: violin, expansionWeight: 0.5, limit: 10)
        let best = try #require(plain.first?.score)
        #expect(fused.first?.id == plain.first?.id && abs((fused.first?.score ?? 0) - 1) <= 1e-9)
        #expect(fused.contains { $0.id == "m3" && abs($0.score - 0.5) <= 1e-9 }, "the violin memory has only the expansion's part")
        for candidate in plain {
            #expect(fused.contains { $0.id == candidate.id && abs($0.score - candidate.score / best) <= 1e-9 })
        }
        let nothing = [(term: MemoryVault.termHash("zzzz", key: key), weight: 1.0)]
        #expect(index.feedbackCandidates(question: terms.map { ($0, 1.0) }, expansion: nothing, expansionWeight: 0.5, limit: 10).isEmpty)
        #expect(MemoryVault.termHash("dog", key: key) == MemoryVault.termHashes("dog", key: key).keys.first)
    }

    /// Memories that share only common words (and numbers): they give the feedback no rare term.
    static let fillers = (1...28).map { "Filler note number \($0) about the weather and the garden" }

    @Test(
        "a memory sharing no word with the question but a rare one with the best hit is found, alike with and without the index",
        .timeLimit(.minutes(1)), arguments: Backend.available)
    func secondStepFindsTheOtherHalf(_ backend: Backend) async throws {
        let env = try await TestEnvironment.make(backend)
        let store = try await env.openStore()
        let clock = WallClock.fixed(Date())
        let vault = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder(), clock: clock)
        let withoutIndex = MemoryVault(
            store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder(), termIndexCache: TermIndexCache(maxBytes: 0),
            clock: clock)
        let tenant = try #require(try await vault.tenant("default", create: true))
        let user = tenant.userKeys.key(for: .phone("+14155550177"))
        let texts = ["Caroline moved here from Sweden four years ago", "Her grandmother in Sweden sends handwritten letters"] + Self.fillers
        let batch = try await vault.prepareBulkInsert(
            tenant: "default", user: user, extraction: TermIndexTests.extraction(texts), conversationID: nil, callAt: nil,
            idempotencyKey: "feedback", eventID: "feedback", eventType: "test")
        #expect(try await vault.store.apply(batch))

        let hits = try await vault.search(tenant: "default", user: user, query: "Where has Caroline moved from?", limit: 5)
        #expect(hits.first?.memory.content == texts[0])
        let grandmother = try #require(hits.first { $0.memory.content == texts[1] }, "the other half is among the hits")
        #expect(grandmother.breakdown.bm25 > 0, "found by the second keyword query: it shares no word with the question")
        #expect(hits.firstIndex { $0.memory.content == texts[1] } == 1)

        let reference = try await withoutIndex.search(tenant: "default", user: user, query: "Where has Caroline moved from?", limit: 5)
        #expect(hits.map(\.memory.id) == reference.map(\.memory.id))
        #expect(zip(hits, reference).allSatisfy { abs($0.breakdown.score - $1.breakdown.score) <= 1e-9 })

        // A question nothing matches by keyword gives the first step's answer (no feedback to give).
        let none = try await vault.search(tenant: "default", user: user, query: "zzzz qqqq", limit: 5)
        #expect(none.allSatisfy { $0.breakdown.bm25 == 0 })
        await StoreFactory.close(store)
        await env.cleanUp()
    }
}

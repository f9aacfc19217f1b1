@preconcurrency import Crypto
import EngramCore
import EngramProviders
import EngramStore
import Foundation

/// Search's second step (issue 13): pseudo-relevance feedback. The rare terms of the first hits
/// (`QueryFeedback`) make a second keyword query; its normalised BM25 is added, weighted by
/// `MemoryModelConstants.feedbackWeight`, to the question's own, and the candidates are scored
/// again. Evidence that shares few words with the question but many with the first hits (the
/// other half of a multi-hop question, a place or a name the question does not give) moves up.
/// The vector candidates and every row already read are reused: only the new keyword candidates
/// are read from the store.
extension MemoryVault {
    /// What the first step found, as `search` holds it.
    struct FirstStep {
        var query: String
        /// The question's keyed term hashes (`termHashes`), as the first step searched them.
        var queryTermHashes: [Data]
        var record: UserRecord
        var key: UserDataKey
        /// Every candidate scored from its head, best first, before near-duplicates collapse.
        var ranked: [Ranked]
        /// The texts of the first hits after near-duplicates collapse (at most `feedbackHits`).
        var leadingTexts: [String]
        /// Raw cosine of the vector candidates.
        var cosine: [String: Double]
        /// The question's best raw BM25 (what normalised the first step's keyword scores).
        var bestBM25: Double
        var heads: HeadIndex
        var includeSensitive: Bool
        var now: Date
        var weights: ScoringWeights
    }

    /// The candidates scored again with the feedback query, best first; nil when there is no
    /// feedback to give (no hits, no keyword match, no rare term in the first hits).
    func feedback(_ first: FirstStep) async throws -> [Ranked]? {
        guard MemoryModelConstants.feedbackWeight > 0, first.bestBM25 > 0, !first.leadingTexts.isEmpty else { return nil }
        let hitTerms = first.leadingTexts.map(TextNormalizer.terms)
        let queryTerms = Set(TextNormalizer.terms(first.query))
        let hasher = TermHasher(key: first.key)
        var hashes: [String: Data] = [:]
        let expansion: [QueryFeedback.Term]
        if termIndexCache.isEnabled {
            // Only the terms that can be chosen are hashed (a keyed hash each), as they are met.
            let index = try await keywordIndex(first.record)
            expansion = QueryFeedback.terms(queryTerms: queryTerms, hitTerms: hitTerms, documentCount: index.statistics.documentCount) { term in
                let hash = hashes[term] ?? hasher.hash(term)
                hashes[term] = hash
                return index.documentFrequency(hash)
            }
        } else {
            for terms in hitTerms {
                for term in terms where hashes[term] == nil { hashes[term] = hasher.hash(term) }
            }
            let store = self.store
            let wanted = Array(Set(hashes.values))
            async let postingsRead = store.postings(tenant: first.record.tenant, user: first.record.user, terms: wanted)
            async let statisticsRead = store.termStatistics(tenant: first.record.tenant, user: first.record.user)
            var frequencies: [Data: Int] = [:]
            for posting in try await postingsRead { frequencies[posting.term, default: 0] += 1 }
            let documentCount = try await statisticsRead.documentCount
            expansion = QueryFeedback.terms(queryTerms: queryTerms, hitTerms: hitTerms, documentCount: documentCount) { term in
                hashes[term].map { frequencies[$0] ?? 0 }
            }
        }
        guard !expansion.isEmpty else { return nil }

        // question / best + λ · expansion / best, over every memory.
        let expansionTerms = expansion.compactMap { term in hashes[term.term].map { (term: $0, weight: term.weight) } }
        let questionTerms = first.queryTermHashes.map { (term: $0, weight: 1.0) }
        let combined = try await feedbackCandidates(first.record, question: questionTerms, expansion: expansionTerms)
        guard let best = combined.first?.score, best > 0 else { return nil }
        var bm25: [String: Double] = [:]
        for (id, score) in combined { bm25[id] = score / best }

        // Every first-step candidate that is a vector candidate or among the new keyword ones,
        // and the new ones, scored again from their heads (no row is read here).
        let ids = (first.ranked.map(\.id) + combined.map(\.id)).filter { first.cosine[$0] != nil || bm25[$0] != nil }
        return Self.rank(
            ids, heads: first.heads, cosine: first.cosine, bm25: bm25, includeSensitive: first.includeSensitive, now: first.now,
            weights: first.weights)
    }

    /// The keyed hash of one already normalised term, as `termHashes` makes them (the term is
    /// not normalised again: stemming twice would change it).
    static func termHash(_ term: String, key: UserDataKey) -> Data { TermHasher(key: key).hash(term) }

    /// Hashes many terms under one user's term key: the key is derived and the keyed state
    /// computed once, then copied per term.
    struct TermHasher {
        private let base: HMAC<SHA256>

        init(key: UserDataKey) { base = HMAC<SHA256>(key: key.termKey) }

        func hash(_ term: String) -> Data {
            var mac = base
            mac.update(data: Data(term.utf8))
            return Data(Data(mac.finalize()).prefix(16))
        }
    }

    /// The second step's keyword candidates (`TermIndex.feedbackCandidates`), from the index or
    /// (index off) from the store's postings, ranked alike.
    func feedbackCandidates(_ record: UserRecord, question: [(term: Data, weight: Double)], expansion: [(term: Data, weight: Double)])
        async throws -> [(id: String, score: Double)]
    {
        let lambda = MemoryModelConstants.feedbackWeight
        let limit = MemoryModelConstants.keywordCandidates
        if termIndexCache.isEnabled {
            return try await keywordIndex(record).feedbackCandidates(question: question, expansion: expansion, expansionWeight: lambda, limit: limit)
        }
        let store = self.store
        let wanted = Array(Set(question.map(\.term) + expansion.map(\.term)))
        async let postingsRead = store.postings(tenant: record.tenant, user: record.user, terms: wanted)
        async let statisticsRead = store.termStatistics(tenant: record.tenant, user: record.user)
        let postings = try await postingsRead
        let stats = try await statisticsRead
        var byTerm: [Data: [TermPosting]] = [:]
        for posting in postings { byTerm[posting.term, default: []].append(posting) }
        func scores(_ terms: [(term: Data, weight: Double)]) -> [String: Double] {
            var scores: [String: Double] = [:]
            var seen = Set<Data>()
            for (term, weight) in terms.sorted(by: { $0.term.lexicographicallyPrecedes($1.term) }) where weight > 0 {
                guard seen.insert(term).inserted, let list = byTerm[term], !list.isEmpty else { continue }
                for posting in list {
                    scores[posting.memoryID, default: 0] +=
                        weight
                        * Scoring.bm25Term(
                            tf: posting.frequency, df: list.count, documentLength: posting.documentLength, averageLength: stats.averageLength,
                            documentCount: stats.documentCount)
                }
            }
            return scores
        }
        let q = scores(question)
        let e = scores(expansion)
        guard let questionBest = q.values.max(), let expansionBest = e.values.max(), questionBest > 0, expansionBest > 0 else { return [] }
        var combined: [String: Double] = [:]
        for id in Set(q.keys).union(e.keys) { combined[id] = (q[id] ?? 0) / questionBest + lambda / expansionBest * (e[id] ?? 0) }
        let ranked = combined.filter { $0.value > 0 }.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key > $1.key) }
        return ranked.prefix(limit).map { ($0.key, $0.value) }
    }
}

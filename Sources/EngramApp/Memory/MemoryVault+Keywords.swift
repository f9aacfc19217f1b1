import EngramCore
import EngramStore
import Foundation

/// Keyword (BM25) candidates for hybrid search: from the user's in-memory index (`TermIndex`),
/// or, with the index turned off, from the store's postings as before it existed. Both give
/// `Scoring.bm25` the same inputs, so they rank alike.
extension MemoryVault {
    /// The best `MemoryModelConstants.keywordCandidates` memories for the query's keyed terms,
    /// best first (equal scores: highest id first).
    func keywordCandidates(_ record: UserRecord, terms: [Data]) async throws -> [(id: String, score: Double)] {
        guard !terms.isEmpty else { return [] }
        let limit = MemoryModelConstants.keywordCandidates
        guard termIndexCache.isEnabled else {
            return try await storeKeywordCandidates(tenant: record.tenant, user: record.user, terms: terms, limit: limit)
        }
        return try await keywordIndex(record).candidates(terms: terms, limit: limit)
    }

    /// The user's keyword index at the record's version: cached, or built from one store read.
    func keywordIndex(_ record: UserRecord) async throws -> TermIndex {
        let store = self.store
        let version = Self.cacheVersion(record)
        let tenant = record.tenant
        let user = record.user
        return try await termIndexCache.index(tenant: tenant, user: user, version: version) {
            let rows = try await store.termIndexRows(tenant: tenant, user: user)
            return TermIndex(version: version, documents: rows.documents, postings: rows.postings)
        }
    }

    /// BM25 from the store: the query terms' postings and the user's statistics, read per query.
    func storeKeywordCandidates(tenant: String, user: UserKey, terms: [Data], limit: Int) async throws -> [(id: String, score: Double)] {
        guard !terms.isEmpty else { return [] }
        let store = self.store
        async let postingsRead = store.postings(tenant: tenant, user: user, terms: terms)
        async let statisticsRead = store.termStatistics(tenant: tenant, user: user)
        let postings = try await postingsRead
        let stats = try await statisticsRead
        guard !postings.isEmpty else { return [] }
        var documentFrequency: [Data: Int] = [:]
        var perMemory: [String: [(Data, Int)]] = [:]
        var lengths: [String: Int] = [:]
        for posting in postings {
            documentFrequency[posting.term, default: 0] += 1
            perMemory[posting.memoryID, default: []].append((posting.term, posting.frequency))
            lengths[posting.memoryID] = posting.documentLength
        }
        var raw: [(id: String, score: Double)] = perMemory.map { id, terms in
            let tfs = terms.map { (tf: $0.1, df: documentFrequency[$0.0] ?? 1) }
            return (
                id,
                Scoring.bm25(
                    termFrequencies: tfs, documentLength: lengths[id] ?? 1, averageLength: stats.averageLength, documentCount: stats.documentCount)
            )
        }
        raw.sort { $0.score > $1.score || ($0.score == $1.score && $0.id > $1.id) }
        return Array(raw.prefix(limit))
    }

    /// Drops what this process caches of a user (vectors, heads, keyword index, conflict index, pre-call order). Other processes
    /// notice a change through the user's version; this is for changes that do not bump it
    /// (erasure deletes the user row) and to free the memory at once.
    public func forgetCached(tenant: String, user: UserKey) async {
        await vectorCache.invalidate(tenant: tenant, user: user)
        await termIndexCache.invalidate(tenant: tenant, user: user)
        await conflictIndexes.invalidate(tenant: tenant, user: user)
        precallRankings.forget(tenant: tenant, user: user)
    }
}

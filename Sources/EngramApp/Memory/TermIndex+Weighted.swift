import EngramCore
import Foundation

/// Weighted keyword queries over the index, for search's second step (`MemoryVault+Feedback`).
extension TermIndex {
    /// How many of the user's current memories hold the keyed term.
    public func documentFrequency(_ term: Data) -> Int { postings[Term(term)]?.count ?? 0 }

    /// The best `limit` memories by weighted BM25: Σ weight × (the term's BM25 part,
    /// `Scoring.bm25Term`), terms summed in byte order; best first, equal scores highest id first.
    /// A term given twice counts once (its first weight); weights of zero or less are left out.
    public func candidates(weighted terms: [(term: Data, weight: Double)], limit: Int) -> [(id: String, score: Double)] {
        guard limit > 0, !ids.isEmpty else { return [] }
        var scores: [Int32: Double] = [:]
        var seen = Set<Term>()
        for (term, weight) in terms.sorted(by: { $0.term.lexicographicallyPrecedes($1.term) }) where weight > 0 {
            let key = Term(term)
            guard seen.insert(key).inserted, let list = postings[key], !list.isEmpty else { continue }
            for posting in list {
                let part = Scoring.bm25Term(
                    tf: Int(posting.frequency), df: list.count, documentLength: lengths[Int(posting.document)],
                    averageLength: statistics.averageLength, documentCount: statistics.documentCount)
                scores[posting.document, default: 0] += weight * part
            }
        }
        let ranked = scores.sorted { $0.value > $1.value || ($0.value == $1.value && ids[Int($0.key)] > ids[Int($1.key)]) }
        return ranked.prefix(limit).map { (ids[Int($0.key)], $0.value) }
    }
}

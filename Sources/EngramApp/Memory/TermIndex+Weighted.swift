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
        let part = weightedScores(terms)
        return best(part.touched, limit: limit) { part.scores[$0] }
    }

    /// Search's second step in one walk of the postings: `question / best question + λ ·
    /// expansion / best expansion`, each part a weighted BM25 as `candidates(weighted:)` and each
    /// best taken over every memory. Empty when either part matches nothing (no feedback to give).
    public func feedbackCandidates(
        question: [(term: Data, weight: Double)], expansion: [(term: Data, weight: Double)], expansionWeight: Double, limit: Int
    ) -> [(id: String, score: Double)] {
        let q = weightedScores(question)
        let e = weightedScores(expansion)
        let questionBest = q.touched.reduce(0) { max($0, q.scores[$1]) }
        let expansionBest = e.touched.reduce(0) { max($0, e.scores[$1]) }
        guard questionBest > 0, expansionBest > 0 else { return [] }
        // A document the question already touched has a question score; the expansion's others follow.
        var touched = q.touched
        for document in e.touched where !q.isTouched[document] { touched.append(document) }
        let lambda = expansionWeight / expansionBest
        return best(touched, limit: limit) { q.scores[$0] / questionBest + lambda * e.scores[$0] }
    }

    /// Each memory's weighted BM25 (indexed by document) and the documents that hold a term, in
    /// the order first touched.
    private func weightedScores(_ terms: [(term: Data, weight: Double)]) -> (scores: [Double], touched: [Int], isTouched: [Bool]) {
        guard !terms.isEmpty, !ids.isEmpty else { return ([], [], []) }
        var scores = [Double](repeating: 0, count: ids.count)
        var isTouched = [Bool](repeating: false, count: ids.count)
        var touched: [Int] = []
        var seen = Set<Term>()
        for (term, weight) in terms.sorted(by: { $0.term.lexicographicallyPrecedes($1.term) }) where weight > 0 {
            let key = Term(term)
            guard seen.insert(key).inserted, let list = postings[key], !list.isEmpty else { continue }
            let idf = Scoring.idf(df: list.count, documentCount: statistics.documentCount)
            for posting in list {
                let document = Int(posting.document)
                guard document < ids.count else { continue }
                if !isTouched[document] {
                    isTouched[document] = true
                    touched.append(document)
                }
                scores[document] +=
                    weight
                    * Scoring.bm25Term(
                        tf: Int(posting.frequency), idf: idf, documentLength: lengths[document], averageLength: statistics.averageLength)
            }
        }
        return (scores, touched, isTouched)
    }

    /// The best `limit` of `documents` by `score` (positive scores only), best first, equal scores
    /// highest id first: a small sorted buffer, O(n log k).
    private func best(_ documents: [Int], limit: Int, score: (Int) -> Double) -> [(id: String, score: Double)] {
        guard limit > 0 else { return [] }
        var top: [(document: Int, score: Double)] = []
        top.reserveCapacity(limit + 1)
        func before(_ a: (document: Int, score: Double), _ b: (document: Int, score: Double)) -> Bool {
            a.score > b.score || (a.score == b.score && ids[a.document] > ids[b.document])
        }
        for document in documents {
            let entry = (document: document, score: score(document))
            guard entry.score > 0 else { continue }
            if top.count == limit, let last = top.last, !before(entry, last) { continue }
            let at = top.firstIndex { before(entry, $0) } ?? top.count
            top.insert(entry, at: at)
            if top.count > limit { top.removeLast() }
        }
        return top.map { (ids[$0.document], $0.score) }
    }
}

import Foundation

/// Pseudo-relevance feedback (RM3-like) for search's second step: the terms that the first hits
/// share and the caller's memories rarely hold, weighted by how high the hits rank. Pure: the
/// caller gives each term's document frequency among the user's current memories.
public enum QueryFeedback {
    /// One expansion term (a normalised, stemmed word: `TextNormalizer.terms`) and its weight in 0...1
    /// (the best term weighs 1).
    public struct Term: Equatable, Sendable {
        public var term: String
        public var weight: Double
    }

    /// Up to `limit` expansion terms from `hits` (memory texts, best first): each term of a hit
    /// adds `frequency / hit length × idf / rank` (rank from 1), summed over the hits. Terms of
    /// the query, numbers and terms whose idf is below `minimumIDF` are left out. Best first;
    /// equal weights in term order. `documentFrequency` nil means the term is unknown (left out).
    public static func terms(
        query: String, hits: [String], documentCount: Int, limit: Int = MemoryModelConstants.feedbackTerms,
        minimumIDF: Double = MemoryModelConstants.feedbackMinimumIDF, documentFrequency: (String) -> Int?
    ) -> [Term] {
        terms(
            queryTerms: Set(TextNormalizer.terms(query)), hitTerms: hits.map(TextNormalizer.terms), documentCount: documentCount, limit: limit,
            minimumIDF: minimumIDF, documentFrequency: documentFrequency)
    }

    /// The same from terms already normalised (`TextNormalizer.terms`): the question's, and each
    /// hit's in order. `documentFrequency` is asked once per term that can be chosen (not a
    /// question term, not a number), in the order met.
    public static func terms(
        queryTerms: Set<String>, hitTerms: [[String]], documentCount: Int, limit: Int = MemoryModelConstants.feedbackTerms,
        minimumIDF: Double = MemoryModelConstants.feedbackMinimumIDF, documentFrequency: (String) -> Int?
    ) -> [Term] {
        guard limit > 0, documentCount > 0 else { return [] }
        var idfs: [String: Double?] = [:]
        var weights: [String: Double] = [:]
        for (rank, terms) in hitTerms.enumerated() {
            var counts: [String: Int] = [:]
            for term in terms { counts[term, default: 0] += 1 }
            guard !terms.isEmpty else { continue }
            let length = Double(terms.count)
            for (term, frequency) in counts where !queryTerms.contains(term) && !term.allSatisfy(\.isNumber) {
                let termIDF: Double?
                if let known = idfs[term] {
                    termIDF = known
                } else {
                    termIDF = documentFrequency(term).map { Self.idf(documentFrequency: $0, documentCount: documentCount) }
                    idfs[term] = termIDF
                }
                guard let termIDF, termIDF >= minimumIDF else { continue }
                weights[term, default: 0] += Double(frequency) / length * termIDF / Double(rank + 1)
            }
        }
        let best = weights.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }.prefix(limit)
        guard let top = best.first?.value, top > 0 else { return [] }
        return best.map { Term(term: $0.key, weight: $0.value / top) }
    }

    /// BM25's inverse document frequency (`Scoring.bm25`).
    public static func idf(documentFrequency df: Int, documentCount: Int) -> Double {
        log(1 + (Double(documentCount) - Double(df) + 0.5) / (Double(df) + 0.5))
    }
}

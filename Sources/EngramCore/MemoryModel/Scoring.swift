import Foundation

/// The parts of one memory's search score, kept so every answer can explain itself.
public struct ScoreBreakdown: Codable, Sendable, Equatable {
    public var cosine: Double
    public var bm25: Double
    public var salience: Double
    public var recency: Double
    public var score: Double
}

/// Hybrid scoring: `0.55 cosine_norm + 0.25 bm25_norm + 0.12 salience + 0.08 recency`.
/// How much each part counts. The documented default suits a semantic embedder; an embedder
/// whose cosine is a weak signal (the local hashed one) carries its own, measured weights.
public struct ScoringWeights: Sendable, Equatable {
    public var cosine: Double
    public var bm25: Double
    public var salience: Double
    public var recency: Double

    public init(cosine: Double, bm25: Double, salience: Double, recency: Double) {
        self.cosine = cosine
        self.bm25 = bm25
        self.salience = salience
        self.recency = recency
    }

    public static let standard = ScoringWeights(
        cosine: MemoryModelConstants.weightCosine, bm25: MemoryModelConstants.weightBM25,
        salience: MemoryModelConstants.weightSalience, recency: MemoryModelConstants.weightRecency)
}

public enum Scoring {
    /// `cosine` is the raw similarity (clamped at 0); `bm25` is already normalised to 0...1.
    public static func score(cosine: Double, bm25: Double, salience: Double, eventDate: Date, now: Date, weights: ScoringWeights = .standard)
        -> ScoreBreakdown
    {
        let c = min(1, max(0, cosine))
        let recency = exp(-Salience.days(from: eventDate, to: now) / MemoryModelConstants.recencyDays)
        let total = weights.cosine * c + weights.bm25 * bm25 + weights.salience * salience + weights.recency * recency
        return ScoreBreakdown(cosine: c, bm25: bm25, salience: salience, recency: recency, score: total)
    }

    /// Inverse document frequency of a term held by `df` of `documentCount` documents (BM25's, never negative for df ≤ count).
    public static func idf(df: Int, documentCount: Int) -> Double {
        log(1 + (Double(documentCount) - Double(df) + 0.5) / (Double(df) + 0.5))
    }

    /// One query term's Okapi BM25 part in one document: idf × saturated term frequency.
    public static func bm25Term(tf: Int, df: Int, documentLength: Int, averageLength: Double, documentCount: Int) -> Double {
        bm25Term(tf: tf, idf: idf(df: df, documentCount: documentCount), documentLength: documentLength, averageLength: averageLength)
    }

    /// The same, with the term's idf computed once for a whole posting list.
    public static func bm25Term(tf: Int, idf: Double, documentLength: Int, averageLength: Double) -> Double {
        guard tf > 0 else { return 0 }
        let k1 = MemoryModelConstants.bm25K1
        let b = MemoryModelConstants.bm25B
        return idf * Double(tf) * (k1 + 1) / (Double(tf) + k1 * (1 - b + b * Double(documentLength) / max(averageLength, 1)))
    }

    /// Okapi BM25 for one document, given per-term document frequencies.
    public static func bm25(termFrequencies: [(tf: Int, df: Int)], documentLength: Int, averageLength: Double, documentCount: Int) -> Double {
        bm25(
            termIDFs: termFrequencies.map { (tf: $0.tf, idf: idf(df: $0.df, documentCount: documentCount)) }, documentLength: documentLength,
            averageLength: averageLength)
    }

    /// The same, with each term's idf computed once for a whole posting list; summed in the order given.
    public static func bm25(termIDFs: [(tf: Int, idf: Double)], documentLength: Int, averageLength: Double) -> Double {
        let k1 = MemoryModelConstants.bm25K1
        let b = MemoryModelConstants.bm25B
        var total = 0.0
        for (tf, idf) in termIDFs where tf > 0 {
            let norm = Double(tf) * (k1 + 1) / (Double(tf) + k1 * (1 - b + b * Double(documentLength) / max(averageLength, 1)))
            total += idf * norm
        }
        return total
    }
}

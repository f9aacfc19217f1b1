/// Every tunable constant of the memory model, in one place (MEMORY-MODEL.md).
public enum MemoryModelConstants {
    /// Decay rate per day, by sector.
    public static func lambda(_ sector: Sector) -> Double {
        switch sector {
        case .episodic: return 0.015
        case .semantic: return 0.005
        case .procedural: return 0.008
        case .emotional: return 0.020
        case .reflective: return 0.001
        }
    }
    public static let salienceFloor = 0.05
    public static let reinforcementGain = 0.18
    public static let archiveBelowSalience = 0.08
    public static let archiveIdleDays = 180.0

    public static let vectorCandidates = 50
    public static let keywordCandidates = 50
    public static let weightCosine = 0.55
    public static let weightBM25 = 0.25
    public static let weightSalience = 0.12
    public static let weightRecency = 0.08
    public static let recencyDays = 30.0
    /// The local hashed embedder's cosine is a weak lexical signal: measured on the LoCoMo dev
    /// split, BM25-led fusion recalls far more (BENCHMARKS.md). Within a character budget
    /// (issue 13) every point of weight moved from BM25 to cosine, salience or recency cost
    /// recall on conversations 0-2; salience and recency keep a tie-breaking share.
    public static let localEmbedderWeights = ScoringWeights(cosine: 0.05, bm25: 0.91, salience: 0.02, recency: 0.02)
    /// Search's second step (pseudo-relevance feedback, `QueryFeedback`): the rare terms of the
    /// first `feedbackHits` hits, at most `feedbackTerms` of them, each of inverse document
    /// frequency at least `feedbackMinimumIDF`, make a second keyword query whose normalised
    /// BM25 counts `feedbackWeight` beside the question's own. Tuned on LoCoMo conversations 0-2
    /// within 2,000 characters (BENCHMARKS.md, "second retrieval step").
    public static let feedbackHits = 10
    public static let feedbackTerms = 10
    public static let feedbackMinimumIDF = 2.0
    public static let feedbackWeight = 0.2
    public static let bm25K1 = 1.2
    public static let bm25B = 0.75

    public static func initialSalience(importance: Double) -> Double { 0.3 + 0.6 * min(1, max(0, importance)) }
}

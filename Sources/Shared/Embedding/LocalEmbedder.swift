/// Deterministic offline embedder: hashed word unigrams, bigrams and character trigrams into 384
/// signed buckets, L2-normalised. No network, no model files.
public struct LocalEmbedder: Embedder {
    public let id = "local-hash-384-v1"
    public let dimension = 384
    public let duplicateThreshold: Float = 0.92
    public let collapseThreshold: Float = 0.95
    public var scoringWeights: ScoringWeights { MemoryModelConstants.localEmbedderWeights }

    public init() {}

    public func embed(_ texts: [String]) async throws -> [[Float]] { texts.map(vector) }

    public func vector(_ text: String) -> [Float] {
        var v = [Float](repeating: 0, count: dimension)
        let terms = TextNormalizer.terms(text)
        func add(_ feature: String, _ weight: Float) {
            let h = stableHash(feature)
            let index = Int(h % UInt64(dimension))
            v[index] += (h >> 63) == 0 ? weight : -weight
        }
        for term in terms {
            add("w:" + term, 1.0)
            let padded = Array("<" + term + ">")
            if padded.count > 4 {
                for i in 0...(padded.count - 3) { add("c:" + String(padded[i..<(i + 3)]), 0.25) }
            }
        }
        if terms.count > 1 {
            for i in 0..<(terms.count - 1) { add("b:" + terms[i] + " " + terms[i + 1], 0.5) }
        }
        return VectorMath.normalized(v)
    }
}

import EngramCore

/// Turns texts into unit vectors. Vectors of different embedders are never compared: each
/// embedder has its own id, dimension and measured thresholds.
public protocol Embedder: Sendable {
    /// Stable id stored with every vector, e.g. `local-hash-384-v1`.
    var id: String { get }
    var dimension: Int { get }
    /// Cosine above which two memories of one sector count as the same fact (before the specifics check).
    var duplicateThreshold: Float { get }
    /// Cosine above which two search results collapse into the newest.
    var collapseThreshold: Float { get }
    /// The weights of the hybrid score with this embedder's cosine.
    var scoringWeights: ScoringWeights { get }
    func embed(_ texts: [String]) async throws -> [[Float]]
}

extension Embedder {
    public var scoringWeights: ScoringWeights { .standard }
}

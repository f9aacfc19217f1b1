@preconcurrency import Crypto
import EngramCore
import Foundation

/// Deterministic offline embedder: hashed word unigrams, bigrams and character trigrams into 384
/// signed buckets, L2-normalised. No network, no model files.
///
/// Keyed (`init(key:)`, what `MemoryVault` uses: one key per tenant), each feature's bucket and
/// sign come from HMAC-SHA256 under the key, so a stored vector cannot be mapped back to words
/// without the key, and equal texts of two tenants give unrelated vectors. Unkeyed, the old
/// public FNV hash (`local-hash-384-v1`) is kept for vectors stored before keying.
public struct LocalEmbedder: Embedder {
    public static let unkeyedID = "local-hash-384-v1"
    public static let keyedID = "local-keyed-384-v2"

    public let id: String
    public let dimension = 384
    public let duplicateThreshold: Float = 0.92
    public let collapseThreshold: Float = 0.95
    public var scoringWeights: ScoringWeights { MemoryModelConstants.localEmbedderWeights }
    let hasher: KeyedFeatureHasher?
    package var isKeyed: Bool { hasher != nil }

    public init() {
        id = Self.unkeyedID
        hasher = nil
    }

    /// The keyed embedder of one tenant.
    public init(key: SymmetricKey) {
        id = Self.keyedID
        hasher = KeyedFeatureHasher(key: key)
    }

    /// The tenant's embedding key: HKDF of the tenant's pseudonym secret (random per tenant,
    /// wrapped by the master key), so it survives a master-key rotation unchanged.
    public static func tenantKey(tenantSecret: Data) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: tenantSecret), info: Data("engram-local-embedder-v2".utf8), outputByteCount: 32)
    }

    public func embed(_ texts: [String]) async throws -> [[Float]] { texts.map(vector) }

    public func vector(_ text: String) -> [Float] {
        var v = [Float](repeating: 0, count: dimension)
        let terms = TextNormalizer.terms(text)
        let hasher = self.hasher
        func add(_ feature: String, _ weight: Float) {
            let h = hasher?.hash(feature) ?? stableHash(feature)
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

/// HMAC-SHA256 of a feature under a key, first 8 bytes big-endian. The keyed state is computed
/// once; each feature hashes a copy of it (swift-crypto's digests are copy-on-write), which
/// costs about half a fresh `HMAC(key:)`. Immutable after init, so safe to share.
final class KeyedFeatureHasher: @unchecked Sendable {
    private let base: HMAC<SHA256>

    init(key: SymmetricKey) { base = HMAC<SHA256>(key: key) }

    func hash(_ feature: String) -> UInt64 {
        var mac = base
        var feature = feature
        feature.withUTF8 { mac.update(data: UnsafeRawBufferPointer($0)) }
        return mac.finalize().withUnsafeBytes { raw in raw.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) } }
    }
}

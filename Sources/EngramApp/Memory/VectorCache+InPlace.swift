import EngramCore
import EngramStore
import Foundation

/// The write path's use of a cached entry: changed in place after a write instead of reloaded,
/// and searched for near-duplicates of a new vector without copying any vector out.
extension VectorCache.Entry {
    /// Adds `inserting` (ids not already present) and removes `removing`, as a reload after the
    /// write would find them; the order of `ids` may differ from a reload's (a removal moves the
    /// last row into the gap), the set of (id, vector) is the same. False, with the entry in an
    /// unspecified state, if a vector does not have the entry's dimension.
    mutating func apply(inserting: [(id: String, vector: [Float])], removing: [String]) -> Bool {
        // Rows read from a store are not trusted to be well formed: a ragged entry is reloaded.
        guard dimension > 0, flat.count == ids.count * dimension else { return false }
        for id in removing {
            guard let at = positions.removeValue(forKey: id) else { continue }
            let last = ids.count - 1
            if at != last {
                let moved = ids[last]
                ids[at] = moved
                positions[moved] = at
                flat.withUnsafeMutableBufferPointer { buffer in
                    guard let base = buffer.baseAddress else { return }
                    (base + at * dimension).update(from: base + last * dimension, count: dimension)
                }
            }
            ids.removeLast()
            flat.removeLast(dimension)
        }
        for (id, vector) in inserting where positions[id] == nil {
            guard vector.count == dimension else { return false }
            positions[id] = ids.count
            ids.append(id)
            flat.append(contentsOf: vector)
        }
        return true
    }

    /// Ids whose vector's dot product with `query` is at least `threshold`, in entry order.
    /// Empty if the query does not have the entry's dimension.
    public func ids(similarTo query: [Float], atLeast threshold: Float) -> [String] {
        guard query.count == dimension, dimension > 0, flat.count >= ids.count * dimension else { return [] }
        var found: [String] = []
        flat.withUnsafeBufferPointer { base in
            query.withUnsafeBufferPointer { q in
                guard let start = base.baseAddress, let q = q.baseAddress else { return }
                for i in 0..<ids.count where VectorMath.dot(start + i * dimension, q, count: dimension) >= threshold {
                    found.append(ids[i])
                }
            }
        }
        return found
    }
}

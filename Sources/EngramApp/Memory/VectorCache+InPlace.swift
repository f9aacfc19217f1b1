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
        guard isWellFormed else { return false }
        let width = Self.blockWidth
        let dimension = self.dimension
        /// Where row `row`, dimension 0, is; its dimension `j` is `width * j` further.
        func origin(_ row: Int) -> Int { (row / width) * dimension * width + row % width }
        for id in removing {
            guard let at = positions.removeValue(forKey: id) else { continue }
            let last = ids.count - 1
            let from = origin(last)
            if at != last {
                let moved = ids[last]
                ids[at] = moved
                positions[moved] = at
                let to = origin(at)
                for j in 0..<dimension { blocks[to + j * width] = blocks[from + j * width] }
            }
            for j in 0..<dimension { blocks[from + j * width] = 0 }
            ids.removeLast()
            if ids.count % width == 0 { blocks.removeLast(dimension * width) }
        }
        for (id, vector) in inserting where positions[id] == nil {
            guard vector.count == dimension else { return false }
            let row = ids.count
            if row % width == 0 { blocks.append(contentsOf: repeatElement(0, count: dimension * width)) }
            positions[id] = row
            ids.append(id)
            let to = origin(row)
            for j in 0..<dimension { blocks[to + j * width] = vector[j] }
        }
        return true
    }

    /// Ids whose vector's dot product with `query` is at least `threshold`, in entry order.
    /// Empty if the query does not have the entry's dimension.
    public func ids(similarTo query: [Float], atLeast threshold: Float) -> [String] {
        scores(query).enumerated().compactMap { $0.element >= threshold ? ids[$0.offset] : nil }
    }
}

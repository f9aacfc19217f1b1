import Testing

@testable import EngramApp
@testable import EngramCore

/// The blocked layout of `VectorCache.Entry` must score exactly what a row-by-row dot product
/// scores, for sparse and dense queries, at sizes around the block width, and after rows are
/// added and removed in place.
@Suite("Vector cache entry", .timeLimit(.minutes(1)))
struct VectorCacheEntryTests {
    /// Deterministic vectors: about a third of the dimensions are zero, like the local embedder's.
    static func vectors(count: Int, dimension: Int, seed: UInt64) -> [[Float]] {
        var random = SplitMix64(seed: seed)
        return (0..<count).map { _ in
            VectorMath.normalized(
                (0..<dimension).map { _ in
                    random.next() % 3 == 0 ? 0 : Float(Int(random.next() % 2001) - 1000) / 1000
                })
        }
    }

    /// The reference: every row's dot product, best first, equal scores in row order.
    static func naiveNearest(_ rows: [(id: String, vector: [Float])], _ query: [Float], k: Int) -> [String] {
        let scored = rows.enumerated().map { (offset: $0.offset, id: $0.element.id, score: VectorMath.dot($0.element.vector, query)) }
        return scored.sorted { $0.score > $1.score || ($0.score == $1.score && $0.offset < $1.offset) }.prefix(k).map(\.id)
    }

    @Test("nearest and every vector match a row-by-row scan, for 0 to 97 rows", arguments: [0, 1, 15, 16, 17, 32, 97])
    func matchesRowScan(count: Int) {
        let dimension = 24
        let vectors = Self.vectors(count: count, dimension: dimension, seed: UInt64(count) + 7)
        let ids = (0..<count).map { "m\($0)" }
        let entry = VectorCache.Entry(version: "1", ids: ids, flat: vectors.flatMap { $0 }, dimension: dimension)
        #expect(entry.flat == vectors.flatMap { $0 })
        for (id, vector) in zip(ids, vectors) { #expect(entry.vector(for: id) == vector) }
        let rows = Array(zip(ids, vectors)).map { (id: $0.0, vector: $0.1) }
        for query in Self.vectors(count: 4, dimension: dimension, seed: 99) + [[Float](repeating: 0, count: dimension)] {
            let found = entry.nearest(query, k: 10)
            #expect(found.map(\.id).count == min(10, count))
            // Scores agree within rounding (the sums are taken in another order); the order agrees
            // except where two rows' scores are within that rounding.
            let reference = Self.naiveNearest(rows, query, k: 10)
            for (hit, expected) in zip(found, reference) where hit.id != expected {
                let a = VectorMath.dot(entry.vector(for: hit.id) ?? [], query)
                let b = VectorMath.dot(entry.vector(for: expected) ?? [], query)
                #expect(abs(a - b) < 1e-5, "\(hit.id) vs \(expected)")
            }
            for hit in found { #expect(abs(hit.similarity - VectorMath.dot(entry.vector(for: hit.id) ?? [], query)) < 1e-5) }
        }
    }

    @Test("rows added and removed in place give what a fresh entry of the same rows gives")
    func applyMatchesRebuild() {
        let dimension = 16
        let vectors = Self.vectors(count: 80, dimension: dimension, seed: 3)
        var entry = VectorCache.Entry(
            version: "1", ids: (0..<40).map { "m\($0)" }, flat: vectors[0..<40].flatMap { $0 }, dimension: dimension)
        // Remove across block boundaries (the last row, a first row, a middle one), then add past 64.
        let removed = ["m39", "m0", "m17", "m32", "nope"]
        let added = (40..<80).map { (id: "m\($0)", vector: vectors[$0]) }
        let applied = entry.apply(inserting: added, removing: removed)
        #expect(applied)
        let expected = Dictionary(
            uniqueKeysWithValues: (0..<80).filter { !removed.contains("m\($0)") }.map { ("m\($0)", vectors[$0]) })
        #expect(entry.ids.count == expected.count)
        #expect(entry.positions.count == expected.count && entry.ids.enumerated().allSatisfy { entry.positions[$0.element] == $0.offset })
        for (id, vector) in expected { #expect(entry.vector(for: id) == vector) }
        // Removing everything leaves an empty entry that still answers (nothing) and takes rows.
        let emptied = entry.apply(inserting: [], removing: entry.ids)
        #expect(emptied)
        #expect(entry.ids.isEmpty && entry.storedFloats == 0 && entry.nearest(vectors[0], k: 5).isEmpty)
        let refilled = entry.apply(inserting: [(id: "x", vector: vectors[1])], removing: [])
        #expect(refilled)
        #expect(entry.nearest(vectors[1], k: 5).map(\.id) == ["x"])
    }

    @Test("a query of another dimension, a non-positive k and a ragged entry answer nothing")
    func refusals() {
        let entry = VectorCache.Entry(version: "1", ids: ["a", "b"], flat: [1, 0, 0, 1], dimension: 2)
        #expect(entry.nearest([1, 0, 0], k: 2).isEmpty)
        #expect(entry.nearest([1, 0], k: 0).isEmpty)
        #expect(entry.nearest([1, 0], k: 5).map(\.id) == ["a", "b"])
        let ragged = VectorCache.Entry(version: "1", ids: ["a", "b"], flat: [1, 0, 0], dimension: 2)
        #expect(ragged.nearest([1, 0], k: 2).isEmpty && ragged.ids(similarTo: [1, 0], atLeast: -1).isEmpty && ragged.vector(for: "a") == nil)
    }
}

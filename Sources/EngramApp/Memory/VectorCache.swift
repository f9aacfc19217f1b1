import EngramCore
import EngramStore

/// Per-user vectors in memory, contiguous Float32, for exact SIMD search. An entry is valid for
/// one `memory_version` of its user, which every process bumps when it changes the searchable
/// set, so a cache in one process never serves another process's stale rows.
public actor VectorCache {
    public struct Entry: Sendable {
        public internal(set) var version: String
        public internal(set) var ids: [String]
        public internal(set) var flat: [Float]
        public let dimension: Int
        public internal(set) var positions: [String: Int]

        init(version: String, ids: [String], flat: [Float], dimension: Int) {
            self.version = version
            self.ids = ids
            self.flat = flat
            self.dimension = dimension
            var positions: [String: Int] = [:]
            positions.reserveCapacity(ids.count)
            for (i, id) in ids.enumerated() { positions[id] = i }
            self.positions = positions
        }

        public func vector(for id: String) -> [Float]? {
            guard let i = positions[id] else { return nil }
            return Array(flat[(i * dimension)..<((i + 1) * dimension)])
        }

        /// Top `k` ids by dot product with a unit query.
        public func nearest(_ query: [Float], k: Int) -> [(id: String, similarity: Float)] {
            guard query.count == dimension, !ids.isEmpty else { return [] }
            var scores = [Float](repeating: 0, count: ids.count)
            flat.withUnsafeBufferPointer { base in
                query.withUnsafeBufferPointer { q in
                    guard let start = base.baseAddress, let q = q.baseAddress, base.count >= ids.count * dimension else { return }
                    for i in 0..<ids.count {
                        scores[i] = VectorMath.dot(start + i * dimension, q, count: dimension)
                    }
                }
            }
            // Keep a small sorted buffer of the best k: O(n log k), not a sort of every score.
            var best: [(index: Int, score: Float)] = []
            best.reserveCapacity(k + 1)
            for (i, score) in scores.enumerated() where best.count < k || score > best[best.count - 1].score {
                let at = best.firstIndex { $0.score < score } ?? best.count
                best.insert((i, score), at: at)
                if best.count > k { best.removeLast() }
            }
            return best.map { (ids[$0.index], $0.score) }
        }
    }

    private var heads: [String: (version: String, heads: [MemoryHead])] = [:]

    /// A user's content-free memory heads, valid for one version of the user (like the vectors).
    public func heads(tenant: String, user: UserKey, version: String, load: @Sendable () async throws -> [MemoryHead]) async throws -> [MemoryHead] {
        let key = "\(tenant)|\(user.rawValue)"
        if let cached = heads[key], cached.version == version { return cached.heads }
        let loaded = try await load()
        if heads.count > 10_000 { heads.removeAll(keepingCapacity: true) }
        heads[key] = (version, loaded)
        return loaded
    }

    private var entries: [String: Entry] = [:]
    private var useOrder: [String] = []
    private let maxFloats: Int
    private var floats = 0

    public init(maxFloats: Int = 64 * 1024 * 1024) { self.maxFloats = maxFloats }

    public func entry(
        tenant: String, user: UserKey, embedder: String, dimension: Int, version: String,
        load: @Sendable () async throws -> (ids: [String], flat: [Float])
    ) async throws -> Entry {
        let key = "\(tenant)|\(user.rawValue)|\(embedder)"
        if let entry = entries[key], entry.version == version {
            touch(key)
            return entry
        }
        let loaded = try await load()
        let entry = Entry(version: version, ids: loaded.ids, flat: loaded.flat, dimension: dimension)
        if let old = entries[key] { floats -= old.flat.count }
        entries[key] = entry
        floats += entry.flat.count
        touch(key)
        while floats > maxFloats, let oldest = useOrder.first, oldest != key {
            useOrder.removeFirst()
            if let evicted = entries.removeValue(forKey: oldest) { floats -= evicted.flat.count }
        }
        return entry
    }

    /// Moves a user's entry from version `from` to `to` in place after a write made exactly that
    /// step (`MemoryVault.didApply`): its new current vectors added, the memories it closed
    /// removed. An entry at any other version is left alone (the next read reloads it); one that
    /// cannot take the change (a vector of another dimension) is dropped. True if advanced.
    @discardableResult
    public func advance(
        tenant: String, user: UserKey, embedder: String, from: String, to: String, inserting: [(id: String, vector: [Float])], removing: [String]
    ) -> Bool {
        let key = "\(tenant)|\(user.rawValue)|\(embedder)"
        // Taken out of the dictionary so that, unless a reader holds a copy, the arrays are
        // uniquely referenced and change in place (no copy of a large caller's vectors).
        guard entries[key]?.version == from, var entry = entries.removeValue(forKey: key) else { return false }
        floats -= entry.flat.count
        guard entry.apply(inserting: inserting, removing: removing) else {
            useOrder.removeAll { $0 == key }
            return false
        }
        entry.version = to
        floats += entry.flat.count
        entries[key] = entry
        return true
    }

    public func invalidate(tenant: String, user: UserKey) {
        heads.removeValue(forKey: "\(tenant)|\(user.rawValue)")
        let prefix = "\(tenant)|\(user.rawValue)|"
        for key in entries.keys where key.hasPrefix(prefix) {
            if let evicted = entries.removeValue(forKey: key) { floats -= evicted.flat.count }
            useOrder.removeAll { $0 == key }
        }
    }

    private func touch(_ key: String) {
        if let i = useOrder.lastIndex(of: key) { useOrder.remove(at: i) }
        useOrder.append(key)
    }
}

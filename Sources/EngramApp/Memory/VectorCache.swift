import EngramCore
import EngramStore
import Foundation

/// Per-user vectors in memory, Float32 in blocks (`Entry`), for exact SIMD search. An entry is valid for
/// one `memory_version` of its user, which every process bumps when it changes the searchable
/// set, so a cache in one process never serves another process's stale rows.
public actor VectorCache {
    /// One user's vectors for one embedder at one version.
    ///
    /// Stored in blocks of `blockWidth` rows, each block dimension-major: the value of row `r` at
    /// dimension `j` is at `((r / blockWidth) * dimension + j) * blockWidth + r % blockWidth`. A
    /// query then costs one contiguous multiply-add of `blockWidth` floats per block for each of
    /// its non-zero dimensions: the local embedder's short queries touch a tenth of the vectors'
    /// bytes, and a dense query (OpenAI) costs what a row-by-row scan costs.
    public struct Entry: Sendable {
        /// Rows per block: one `SIMD16<Float>` (the scoring loop below is written for 16). Wider
        /// blocks scored no faster here and pad a small caller's vectors more (up to width - 1 rows).
        public static let blockWidth = 16
        public internal(set) var version: String
        public internal(set) var ids: [String]
        public let dimension: Int
        public internal(set) var positions: [String: Int]
        /// The blocks; the rows past `ids.count` in the last one are zero.
        var blocks: [Float]
        /// False when the store gave a number of floats that is not rows × dimension: such an
        /// entry answers no query and takes no change (the next read reloads it).
        let isWellFormed: Bool

        init(version: String, ids: [String], flat: [Float], dimension: Int) {
            self.version = version
            self.ids = ids
            self.dimension = dimension
            var positions: [String: Int] = [:]
            positions.reserveCapacity(ids.count)
            for (i, id) in ids.enumerated() { positions[id] = i }
            self.positions = positions
            isWellFormed = dimension > 0 && flat.count == ids.count * dimension
            guard isWellFormed else {
                blocks = []
                return
            }
            let width = Self.blockWidth
            let blockCount = (ids.count + width - 1) / width
            var blocks = [Float](repeating: 0, count: blockCount * dimension * width)
            for row in 0..<ids.count {
                let base = (row / width) * dimension * width + row % width
                for j in 0..<dimension { blocks[base + j * width] = flat[row * dimension + j] }
            }
            self.blocks = blocks
        }

        /// The floats held (for the cache's memory bound).
        var storedFloats: Int { blocks.count }

        /// Row-major copy of every vector, in `ids` order (tests and diagnostics).
        public var flat: [Float] { (0..<ids.count).flatMap { row(at: $0) } }

        public func vector(for id: String) -> [Float]? {
            guard isWellFormed, let i = positions[id] else { return nil }
            return row(at: i)
        }

        func row(at row: Int) -> [Float] {
            guard isWellFormed, row >= 0, row < ids.count else { return [] }
            let width = Self.blockWidth
            let base = (row / width) * dimension * width + row % width
            return (0..<dimension).map { blocks[base + $0 * width] }
        }

        /// The dot product of `query` with every row, in `ids` order; empty if the query does not
        /// have the entry's dimension.
        func scores(_ query: [Float]) -> [Float] {
            guard isWellFormed, query.count == dimension, !ids.isEmpty else { return [] }
            let width = Self.blockWidth
            // The query's non-zero dimensions, as (offset of the dimension's column in a block, weight).
            let terms = query.indices.compactMap { query[$0] == 0 ? nil : (offset: $0 * width, weight: query[$0]) }
            let blockCount = (ids.count + width - 1) / width
            guard blocks.count >= blockCount * dimension * width else { return [] }
            let count = ids.count
            let dimension = self.dimension
            return [Float](unsafeUninitializedCapacity: blockCount * width) { out, initialized in
                blocks.withUnsafeBufferPointer { buffer in
                    guard let start = buffer.baseAddress else { return }
                    for block in 0..<blockCount {
                        let base = start + block * dimension * width
                        var sum = SIMD16<Float>()
                        for term in terms {
                            sum += term.weight * UnsafeRawPointer(base + term.offset).loadUnaligned(as: SIMD16<Float>.self)
                        }
                        for k in 0..<16 { out[block * width + k] = sum[k] }
                    }
                }
                initialized = min(count, blockCount * width)
            }
        }

        /// Top `k` ids by dot product with a unit query (equal scores: the earlier row first).
        public func nearest(_ query: [Float], k: Int) -> [(id: String, similarity: Float)] {
            let scores = scores(query)
            guard k > 0, !scores.isEmpty else { return [] }
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

    private var heads: [String: HeadIndex] = [:]

    /// A user's content-free memory heads, valid for one version of the user (like the vectors).
    public func heads(tenant: String, user: UserKey, version: String, load: @escaping @Sendable () async throws -> [MemoryHead]) async throws
        -> [MemoryHead]
    {
        try await headIndex(tenant: tenant, user: user, version: version, load: load).heads
    }

    /// The same heads by id (search scores its candidates from them).
    func headIndex(tenant: String, user: UserKey, version: String, load: @escaping @Sendable () async throws -> [MemoryHead]) async throws
        -> HeadIndex
    {
        let key = "\(tenant)|\(user.rawValue)"
        if let cached = heads[key], cached.version == version { return cached }
        let pending = headLoads.join(key: key, version: version) { HeadIndex(version: version, heads: try await load()) }
        let loaded: HeadIndex
        do {
            loaded = try await pending.task.value
        } catch {
            headLoads.fail(key: key, pending)
            throw error
        }
        guard headLoads.finish(key: key, pending) else { return loaded }
        if heads.count > 10_000 { heads.removeAll(keepingCapacity: true) }
        heads[key] = loaded
        return loaded
    }

    /// Recall's reinforcement, once written to the store, for this process's searches (`HeadIndex`):
    /// it does not change the user's version (a search would otherwise reload every cache of a
    /// caller it answered), so search would rank with the salience read until the next write. The
    /// pre-call order reads the heads as loaded, and lags as it always has.
    public func reinforce(tenant: String, user: UserKey, _ updates: [(id: String, salience0: Double, at: Date)]) {
        heads["\(tenant)|\(user.rawValue)"]?.reinforce(updates)
    }

    private var entries: [String: Entry] = [:]
    private var entryLoads = SharedLoads<Entry>()
    private var headLoads = SharedLoads<HeadIndex>()
    private var useOrder: [String] = []
    private let maxFloats: Int
    private var floats = 0

    public init(maxFloats: Int = 64 * 1024 * 1024) { self.maxFloats = maxFloats }

    public func entry(
        tenant: String, user: UserKey, embedder: String, dimension: Int, version: String,
        load: @escaping @Sendable () async throws -> (ids: [String], flat: [Float])
    ) async throws -> Entry {
        let key = "\(tenant)|\(user.rawValue)|\(embedder)"
        if let entry = entries[key], entry.version == version {
            touch(key)
            return entry
        }
        let pending = entryLoads.join(key: key, version: version) {
            let loaded = try await load()
            return Entry(version: version, ids: loaded.ids, flat: loaded.flat, dimension: dimension)
        }
        let entry: Entry
        do {
            entry = try await pending.task.value
        } catch {
            entryLoads.fail(key: key, pending)
            throw error
        }
        guard entryLoads.finish(key: key, pending) else { return entry }
        if let old = entries[key] { floats -= old.storedFloats }
        entries[key] = entry
        floats += entry.storedFloats
        touch(key)
        while floats > maxFloats, let oldest = useOrder.first, oldest != key {
            useOrder.removeFirst()
            if let evicted = entries.removeValue(forKey: oldest) { floats -= evicted.storedFloats }
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
        floats -= entry.storedFloats
        guard entry.apply(inserting: inserting, removing: removing) else {
            useOrder.removeAll { $0 == key }
            return false
        }
        entry.version = to
        floats += entry.storedFloats
        entries[key] = entry
        return true
    }

    /// Whether the caller's heads and vectors for `embedder` are held at `version`.
    func holds(tenant: String, user: UserKey, embedder: String, version: String) -> Bool {
        heads["\(tenant)|\(user.rawValue)"]?.version == version && entries["\(tenant)|\(user.rawValue)|\(embedder)"]?.version == version
    }

    public func invalidate(tenant: String, user: UserKey) {
        heads.removeValue(forKey: "\(tenant)|\(user.rawValue)")
        headLoads.forget("\(tenant)|\(user.rawValue)")
        let prefix = "\(tenant)|\(user.rawValue)|"
        entryLoads.forget(where: { $0.hasPrefix(prefix) })
        for key in entries.keys where key.hasPrefix(prefix) {
            if let evicted = entries.removeValue(forKey: key) { floats -= evicted.storedFloats }
            useOrder.removeAll { $0 == key }
        }
    }

    private func touch(_ key: String) {
        if let i = useOrder.lastIndex(of: key) { useOrder.remove(at: i) }
        useOrder.append(key)
    }
}

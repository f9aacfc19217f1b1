import EngramCore
import EngramStore
import Foundation

/// A user's current memory heads by id, at one cache version: what search scores its candidates
/// with, so that only the memories it answers with are read from the store and decrypted.
struct HeadIndex: Sendable {
    let version: String
    let heads: [MemoryHead]
    private let positions: [String: Int]
    /// Recall's reinforcement since the heads were read, by position: kept apart so that a patch
    /// copies this small table, not the caller's 20,000 heads (which a search or a pre-call order
    /// in flight may share).
    private var reinforced: [Int: (salience0: Double, at: Date)] = [:]

    init(version: String, heads: [MemoryHead]) {
        self.version = version
        self.heads = heads
        var positions: [String: Int] = [:]
        positions.reserveCapacity(heads.count)
        for (position, head) in heads.enumerated() { positions[head.id] = position }
        self.positions = positions
    }

    /// The head of a current memory; nil for an id that is not one (archived, superseded, gone).
    func head(_ id: String) -> MemoryHead? {
        guard let position = positions[id] else { return nil }
        var head = heads[position]
        if let update = reinforced[position] {
            head.salience0 = update.salience0
            head.reinforcedAt = update.at
        }
        return head
    }

    /// Recall's reinforcement of some of these memories (ids it does not hold are passed over).
    mutating func reinforce(_ updates: [(id: String, salience0: Double, at: Date)]) {
        for update in updates {
            guard let position = positions[update.id] else { continue }
            reinforced[position] = (update.salience0, update.at)
        }
    }
}

/// Search ranks from heads, reads rows last: a candidate's score needs its cosine, its BM25 and
/// the salience and date its head carries, never its text. Rows are read for the first hits (the
/// second step reads their words) and for the answer, not for every candidate: at a caller with
/// 20,000 memories a search read about 85 rows, and now reads its answer and the first ten.
extension MemoryVault {
    /// One candidate, scored from its head.
    struct Ranked: Sendable {
        var id: String
        var validFrom: Date
        var breakdown: ScoreBreakdown
    }

    /// The heads of a user's current memories by id, cached per version like the vectors.
    func headIndex(_ record: UserRecord) async throws -> HeadIndex {
        let store = self.store
        return try await vectorCache.headIndex(tenant: record.tenant, user: record.user, version: Self.cacheVersion(record)) {
            try await store.memoryHeads(tenant: record.tenant, user: record.user)
        }
    }

    /// `ids` scored as search scores them, the current and visible ones only, best first (equal
    /// scores: the highest id first). An id may be given twice; it is scored once.
    static func rank(
        _ ids: some Sequence<String>, heads: HeadIndex, cosine: [String: Double], bm25: [String: Double], includeSensitive: Bool, now: Date,
        weights: ScoringWeights
    ) -> [Ranked] {
        var seen = Set<String>()
        var ranked: [Ranked] = []
        for id in ids where seen.insert(id).inserted {
            guard let head = heads.head(id), includeSensitive || !head.sensitive else { continue }
            let breakdown = Scoring.score(
                cosine: cosine[id] ?? 0, bm25: bm25[id] ?? 0,
                salience: Salience.at(now, salience0: head.salience0, reinforcedAt: head.reinforcedAt, sector: head.sector),
                eventDate: head.validFrom, now: now, weights: weights)
            ranked.append(Ranked(id: id, validFrom: head.validFrom, breakdown: breakdown))
        }
        ranked.sort { $0.breakdown.score > $1.breakdown.score || ($0.breakdown.score == $1.breakdown.score && $0.id > $1.id) }
        return ranked
    }

    /// Near-duplicates (cosine above the embedder's threshold) collapse to the newest, which takes
    /// the place and the score of the best ranked one; at most `limit` are kept.
    func collapse(_ ranked: [Ranked], entry: VectorCache.Entry, limit: Int) -> [Ranked] {
        var kept: [Ranked] = []
        var keptVectors: [[Float]?] = []
        for candidate in ranked {
            if kept.count >= limit { break }
            let vector = entry.vector(for: candidate.id)
            if let vector,
                let index = keptVectors.firstIndex(where: { other in
                    other.map { VectorMath.dot($0, vector) > embedder.collapseThreshold } ?? false
                })
            {
                if candidate.validFrom > kept[index].validFrom {
                    kept[index] = Ranked(id: candidate.id, validFrom: candidate.validFrom, breakdown: kept[index].breakdown)
                }
                continue
            }
            kept.append(candidate)
            keptVectors.append(vector)
        }
        return kept
    }

    /// Reads and decrypts the memories of `ids` not in `memories` yet; a row that is no longer
    /// current or visible (changed since the heads were read) is left out.
    func read(_ ids: [String], into memories: inout [String: Memory], record: UserRecord, key: UserDataKey, includeSensitive: Bool) async throws {
        let missing = ids.filter { memories[$0] == nil }
        guard !missing.isEmpty else { return }
        for row in try await store.memories(tenant: record.tenant, user: record.user, ids: missing)
        where row.status == .active && row.validTo == nil && (includeSensitive || !row.sensitive) {
            memories[row.id] = try decrypt(row, key: key)
        }
    }
}

extension MemoryVault {
    /// Loads what a search of this caller reads from memory (vectors, keyword index, heads) when a
    /// write has made it stale since. The pre-call calls it without waiting: the call's first search
    /// or custom-LLM turn then finds it ready instead of loading it (about 1 s at 20,000 memories).
    /// Failures are left to that search, which reads the same and reports them.
    public func warmSearch(tenant: String, user: UserKey) async {
        guard let record = (try? await store.user(tenant: tenant, user: user)) ?? nil,
            let embedder = try? await embedder(forTenant: tenant)
        else { return }
        async let vectors = try? vectorEntry(record, embedder: embedder)
        async let keywords = termIndexCache.isEnabled ? try? keywordIndex(record) : nil
        async let heads = try? headIndex(record)
        _ = await (vectors, keywords, heads)
    }
}

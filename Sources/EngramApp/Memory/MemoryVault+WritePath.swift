import EngramCore
import EngramProviders
import EngramStore
import Foundation

/// The memories a write's conflict rules run against, decrypted, in the store's order of the
/// user's current memories (`valid_from`, then id).
struct WriteCandidates {
    var candidates: [ResolutionCandidate]
    var existing: [String: Memory]
}

extension MemoryVault {
    /// The user's `ConflictIndex` at the record's version.
    func conflictIndex(_ record: UserRecord) async throws -> ConflictIndex {
        let store = self.store
        return try await conflictIndexes.index(tenant: record.tenant, user: record.user, version: Self.cacheVersion(record)) {
            try await store.memoryHeads(tenant: record.tenant, user: record.user)
        }
    }

    /// Every current memory could be picked by the rules: read and decrypt them all (the path
    /// of `engram reextract`, and the fallback when the caches cannot decide).
    func allCandidates(_ record: UserRecord, key: UserDataKey, entry: VectorCache.Entry, replacing: Set<String>) async throws -> WriteCandidates {
        let rows =
            replacing.isEmpty
            ? try await store.memories(tenant: record.tenant, user: record.user, includeHistory: false)
            : Self.currentRows(removing: replacing, from: try await store.memories(tenant: record.tenant, user: record.user, includeHistory: true))
        return try candidates(rows, key: key, entry: entry)
    }

    /// Only the current memories that `ConflictResolution.resolve` could pick for any of the new
    /// memories, so the rules give the same answer as against all of them while the work grows
    /// with the event, not with the caller's history:
    /// - a memory with the slot of a new memory (the slot rule takes the first of them);
    /// - a memory whose vector's similarity to a new memory's vector reaches the duplicate
    ///   threshold (a small margin below it: the rules compute the exact figure again);
    /// - a memory with no vector of this embedder (the rules then compare its text).
    /// Every other memory has a vector scoring below the threshold, so it can never be chosen.
    /// Nil when the vectors cannot decide (a new vector of another dimension than the cache's).
    func conflictCandidates(
        _ record: UserRecord, key: UserDataKey, entry: VectorCache.Entry, extraction: Extraction, vectors: [[Float]], duplicateThreshold: Float
    ) async throws -> WriteCandidates? {
        guard vectors.count == extraction.memories.count, vectors.allSatisfy({ $0.count == entry.dimension }) else { return nil }
        let index = try await conflictIndex(record)
        var wanted = Set<String>()
        for slot in Set(extraction.memories.compactMap(\.slot)) { wanted.formUnion(index.ids(slot: slot)) }
        let threshold = duplicateThreshold - Self.similarityMargin
        for vector in vectors { wanted.formUnion(entry.ids(similarTo: vector, atLeast: threshold)) }
        // Current memories are a superset of those with a cached vector: equal counts, equal sets.
        if index.ids.count != entry.ids.count {
            for id in index.ids where entry.positions[id] == nil { wanted.insert(id) }
        }
        guard !wanted.isEmpty else { return WriteCandidates(candidates: [], existing: [:]) }
        let rows = try await store.memories(tenant: record.tenant, user: record.user, ids: Array(wanted))
            .filter { $0.status == .active && $0.validTo == nil }
            .sorted { $0.validFrom != $1.validFrom ? $0.validFrom < $1.validFrom : $0.id < $1.id }
        return try candidates(rows, key: key, entry: entry)
    }

    /// Candidates are chosen by the exact dot product later; the prefilter keeps a little more.
    static let similarityMargin: Float = 1e-3

    private func candidates(_ rows: [MemoryRow], key: UserDataKey, entry: VectorCache.Entry) throws -> WriteCandidates {
        var found = WriteCandidates(candidates: [], existing: [:])
        found.candidates.reserveCapacity(rows.count)
        for row in rows {
            let memory = try decrypt(row, key: key)
            found.existing[row.id] = memory
            found.candidates.append(
                ResolutionCandidate(id: row.id, sector: row.sector, slot: row.slot, content: memory.content, vector: entry.vector(for: row.id)))
        }
        return found
    }

    /// After `batch` was applied: if the user's version moved by exactly one step from the one
    /// the batch was prepared against, that step was this write, so the vector cache and the
    /// conflict index of that version are moved forward in place (its current inserts added, the
    /// memories it closed removed) instead of being reloaded on the next write or search. Any
    /// other version (another writer came between) leaves them to reload. Failures to read the
    /// user only cost a reload. True if both caches held the prepared version and moved on.
    @discardableResult
    public func didApply(_ batch: WriteBatch) async -> Bool {
        guard let before = batch.preparedAgainst,
            let after = try? await store.user(tenant: batch.tenant, user: batch.user),
            after.createdAt == before.createdAt, after.memoryVersion == before.memoryVersion &+ 1,
            let embedderID = try? await embedder(forTenant: batch.tenant).id
        else { return false }
        let from = Self.cacheVersion(before)
        let to = Self.cacheVersion(after)
        let current = batch.inserts.filter { $0.status == .active && $0.validTo == nil }
        let currentIDs = Set(current.map(\.id))
        let removed = batch.supersessions.map(\.id)
        let vectors = batch.vectors.filter { $0.embedder == embedderID && currentIDs.contains($0.memoryID) }.map {
            (id: $0.memoryID, vector: $0.vector)
        }
        let vectorsMoved = await vectorCache.advance(
            tenant: batch.tenant, user: batch.user, embedder: embedderID, from: from, to: to, inserting: vectors, removing: removed)
        let indexMoved = await conflictIndexes.advance(
            tenant: batch.tenant, user: batch.user, from: from, to: to, inserting: current.map { (id: $0.id, slot: $0.slot) }, removing: removed)
        return vectorsMoved && indexMoved
    }
}

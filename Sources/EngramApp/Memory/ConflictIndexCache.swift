import EngramCore
import EngramStore
import Foundation

/// What conflict resolution needs to know about a user's current memories without reading or
/// decrypting them: their ids and slots. Cached per user version like the vectors
/// (`VectorCache`), and moved forward in place by the writer that made the next version, so
/// a write costs work in proportion to the event, not to the caller's history.
public struct ConflictIndex: Sendable, Equatable {
    public internal(set) var version: String
    /// Current memory ids.
    public internal(set) var ids: Set<String>
    /// Slot → current memory ids holding it (usually one).
    public internal(set) var bySlot: [String: Set<String>]

    public init(version: String, heads: [MemoryHead]) {
        self.version = version
        ids = Set(heads.map(\.id))
        bySlot = [:]
        for head in heads { if let slot = head.slot { bySlot[slot, default: []].insert(head.id) } }
    }

    public func ids(slot: String) -> Set<String> { bySlot[slot] ?? [] }

    /// The write's effect: its current inserts added, the memories it closed removed.
    mutating func apply(inserting: [(id: String, slot: String?)], removing: [String]) {
        for id in removing where ids.remove(id) != nil {
            for (slot, holders) in bySlot where holders.contains(id) {
                var rest = holders
                rest.remove(id)
                bySlot[slot] = rest.isEmpty ? nil : rest
            }
        }
        for (id, slot) in inserting {
            ids.insert(id)
            if let slot { bySlot[slot, default: []].insert(id) }
        }
    }
}

/// Per-user `ConflictIndex`es of the write path, bounded by the number of ids held.
public actor ConflictIndexCache {
    private var entries: [String: ConflictIndex] = [:]
    private var held = 0
    private let maxIDs: Int

    public init(maxIDs: Int = 2_000_000) { self.maxIDs = maxIDs }

    public func index(tenant: String, user: UserKey, version: String, load: @Sendable () async throws -> [MemoryHead]) async throws -> ConflictIndex {
        let key = "\(tenant)|\(user.rawValue)"
        if let cached = entries[key], cached.version == version { return cached }
        let loaded = ConflictIndex(version: version, heads: try await load())
        if let old = entries.removeValue(forKey: key) { held -= old.ids.count }
        // Simple bound: a full cache starts again (the next write of each user reloads it).
        if held + loaded.ids.count > maxIDs {
            entries.removeAll(keepingCapacity: true)
            held = 0
        }
        entries[key] = loaded
        held += loaded.ids.count
        return loaded
    }

    /// Moves the user's index from `from` to `to` in place (see `VectorCache.advance`).
    @discardableResult
    public func advance(tenant: String, user: UserKey, from: String, to: String, inserting: [(id: String, slot: String?)], removing: [String]) -> Bool
    {
        let key = "\(tenant)|\(user.rawValue)"
        guard entries[key]?.version == from, var index = entries.removeValue(forKey: key) else { return false }
        held -= index.ids.count
        index.apply(inserting: inserting, removing: removing)
        index.version = to
        held += index.ids.count
        entries[key] = index
        return true
    }

    public func invalidate(tenant: String, user: UserKey) {
        if let old = entries.removeValue(forKey: "\(tenant)|\(user.rawValue)") { held -= old.ids.count }
    }
}

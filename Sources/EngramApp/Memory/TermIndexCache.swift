import EngramCore
import EngramStore
import Foundation

/// Per-user keyword indexes (`TermIndex`) in memory, each valid for one version of its user like
/// the vector cache: every process bumps `memory_version` when it changes a user's searchable
/// set, so an index built by one process is never used for another process's newer rows.
/// Bounded by an estimate of the bytes held (`ENGRAM_TERM_INDEX_MAX_MB`); the least recently used
/// users are dropped first. Concurrent searches of one user share one load.
public actor TermIndexCache {
    /// The bound in estimated bytes; 0 turns the cache off (keyword search reads the store).
    public nonisolated let maxBytes: Int
    private var entries: [String: (index: TermIndex, lastUse: UInt64)] = [:]
    private var loads = SharedLoads<TermIndex>()
    private var bytes = 0
    private var clock: UInt64 = 0

    public static let defaultMaxBytes = 256 * 1024 * 1024

    public init(maxBytes: Int = TermIndexCache.defaultMaxBytes) { self.maxBytes = max(0, maxBytes) }

    public nonisolated var isEnabled: Bool { maxBytes > 0 }

    /// The user's index at `version`, loaded with `load` when the cached one is of another version.
    public func index(
        tenant: String, user: UserKey, version: String, load: @escaping @Sendable () async throws -> TermIndex
    ) async throws -> TermIndex {
        let key = Self.key(tenant, user)
        clock &+= 1
        if let cached = entries[key], cached.index.version == version {
            entries[key]?.lastUse = clock
            return cached.index
        }
        let pending = loads.join(key: key, version: version, load: load)
        let index: TermIndex
        do {
            index = try await pending.task.value
        } catch {
            loads.fail(key: key, pending)
            throw error
        }
        // Invalidated (erasure) or superseded by a newer load while this one ran: answer this
        // search, keep nothing.
        guard loads.finish(key: key, pending) else { return index }
        store(index, key: key)
        return index
    }

    /// Drops the user's index (erasure, re-embedding, an operator's change in this process).
    public func invalidate(tenant: String, user: UserKey) {
        let key = Self.key(tenant, user)
        if let old = entries.removeValue(forKey: key) { bytes -= old.index.estimatedBytes }
        loads.forget(key)
    }

    /// Users held and their estimated bytes (metrics, tests).
    public var usage: (users: Int, bytes: Int) { (entries.count, bytes) }

    func contains(tenant: String, user: UserKey) -> Bool { entries[Self.key(tenant, user)] != nil }

    private func store(_ index: TermIndex, key: String) {
        if let old = entries.removeValue(forKey: key) { bytes -= old.index.estimatedBytes }
        // An index larger than the whole bound serves its search and is not kept.
        guard index.estimatedBytes <= maxBytes else { return }
        while bytes + index.estimatedBytes > maxBytes, let oldest = entries.min(by: { $0.value.lastUse < $1.value.lastUse }) {
            entries.removeValue(forKey: oldest.key)
            bytes -= oldest.value.index.estimatedBytes
        }
        clock &+= 1
        entries[key] = (index, clock)
        bytes += index.estimatedBytes
    }

    private static func key(_ tenant: String, _ user: UserKey) -> String { "\(tenant)|\(user.rawValue)" }
}

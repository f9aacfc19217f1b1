import Foundation

/// Loads in flight by cache key, so that concurrent readers of one cold entry share one load. A
/// heavy caller's vectors take about a second to read; when every custom-LLM turn or search that
/// found them cold started its own read, the reads slowed each other down and the turns kept
/// missing their deadline long after the first read would have finished.
///
/// Kept by an actor (the cache), which calls `join`, awaits the task, then calls `finish` or
/// `fail`. A load runs in an unstructured task: a reader that stops waiting (a deadline) does not
/// cancel it, so the next reader finds the entry loaded.
struct SharedLoads<Value: Sendable> {
    /// One reader's part in a load.
    struct Pending {
        let task: Task<Value, any Error>
        let generation: UInt64
        /// This reader started the load (and caches its value, unless `finish` says otherwise).
        let started: Bool
    }

    private var loads: [String: (version: String, generation: UInt64, task: Task<Value, any Error>)] = [:]
    private var generation: UInt64 = 0

    /// The load in flight for `key` at `version`, or a new one running `load`.
    mutating func join(key: String, version: String, load: @escaping @Sendable () async throws -> Value) -> Pending {
        if let pending = loads[key], pending.version == version {
            return Pending(task: pending.task, generation: pending.generation, started: false)
        }
        generation &+= 1
        let task = Task { try await load() }
        loads[key] = (version, generation, task)
        return Pending(task: task, generation: generation, started: true)
    }

    /// The load answered: true when this reader is to cache its value (it started the load, and
    /// the load was neither forgotten by an erasure nor superseded by a newer version's).
    mutating func finish(key: String, _ pending: Pending) -> Bool {
        guard pending.started, loads[key]?.generation == pending.generation else { return false }
        loads[key] = nil
        return true
    }

    /// The load failed: the next reader starts another.
    mutating func fail(key: String, _ pending: Pending) {
        if loads[key]?.generation == pending.generation { loads[key] = nil }
    }

    /// Forgets the load of `key`: its value, when it comes, is not cached.
    mutating func forget(_ key: String) { loads[key] = nil }

    /// Forgets the loads of every key `matching`.
    mutating func forget(where matching: (String) -> Bool) {
        for key in loads.keys where matching(key) { loads[key] = nil }
    }
}

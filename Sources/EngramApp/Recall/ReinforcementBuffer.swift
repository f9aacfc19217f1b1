import EngramCore
import EngramStore
import Foundation
import Logging
import ServiceLifecycle

/// Collects recall reinforcements off the request path and writes them in batches.
public actor ReinforcementBuffer {
    private struct Update {
        var user: UserKey
        var salience0: Double
        var at: Date
    }
    private var pending: [String: [String: Update]] = [:]  // tenant → memory → update
    private let store: any MemoryWriteStore
    /// The cached heads of this process, which search ranks by: written once the store has it.
    private let cache: VectorCache?

    init(store: any MemoryWriteStore, cache: VectorCache? = nil) {
        self.store = store
        self.cache = cache
    }

    /// `salience0 = s + 0.18 (1 - s)`, `reinforced_at = now`, for each memory returned to an agent.
    public func reinforce(_ memories: [Memory], at now: Date) {
        for memory in memories {
            var current = memory
            if let earlier = pending[memory.tenant]?[memory.id] {
                current.salience0 = earlier.salience0
                current.reinforcedAt = earlier.at
            }
            pending[memory.tenant, default: [:]][memory.id] = Update(user: memory.user, salience0: Salience.reinforced(current, at: now), at: now)
        }
    }

    public func flush() async throws {
        let batch = pending
        pending = [:]
        for (tenant, updates) in batch {
            try await store.reinforce(tenant: tenant, updates.map { ($0.key, $0.value.salience0, $0.value.at) })
            guard let cache else { continue }
            for (user, memories) in Dictionary(grouping: updates, by: { $0.value.user }) {
                await cache.reinforce(tenant: tenant, user: user, memories.map { ($0.key, $0.value.salience0, $0.value.at) })
            }
        }
    }
}

/// Flushes a `ReinforcementBuffer` on an interval, and once more at shutdown.
public struct ReinforcementFlusher: Service {
    let buffer: ReinforcementBuffer
    let interval: Duration
    let logger: Logger

    public init(buffer: ReinforcementBuffer, interval: Duration, logger: Logger) {
        self.buffer = buffer
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
            do { try await buffer.flush() } catch { logger.error("reinforcement flush failed", metadata: ["error_class": "\(type(of: error))"]) }
        }
        try? await buffer.flush()
    }
}

extension MemoryVault {
    /// The buffer that writes recall's reinforcement to this vault's store in batches.
    public func reinforcementBuffer() -> ReinforcementBuffer { ReinforcementBuffer(store: store, cache: vectorCache) }
}

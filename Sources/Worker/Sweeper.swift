import EngramCore
import EngramStore
import Foundation
import Logging

/// The periodic sweep: archives memories that have faded and were neither recalled nor
/// ingested for the idle period. It never rewrites salience (that would compound decay).
enum Sweeper {
    static func job(store: any MemoryStore, clock: WallClock, interval: Duration, logger: Logger) -> PeriodicJob {
        PeriodicJob(name: "sweeper", interval: interval, logger: logger) {
            let archived = try await sweep(store: store, now: clock.now())
            if archived > 0 { logger.info("archived faded memories", metadata: ["count": "\(archived)"]) }
        }
    }

    static func sweep(store: any MemoryStore, now: Date) async throws -> Int {
        var archived = 0
        for tenant in try await store.tenants() {
            if let days = tenant.retentionDays {
                let deleted = try await store.deleteMemories(tenant: tenant.id, olderThan: now.addingTimeInterval(-Double(days) * 86_400))
                archived += deleted
            }
            var after: String?
            while true {
                let page = try await store.sweepCandidates(tenant: tenant.id, limit: 1000, after: after)
                guard let last = page.last else { break }
                after = last.id
                let faded = page.filter { row in
                    let memory = Memory(
                        id: row.id, tenant: row.tenant, user: row.user, sector: row.sector, content: "", importance: row.importance,
                        salience0: row.salience0, reinforcedAt: row.reinforcedAt, validFrom: row.validFrom, status: row.status,
                        sources: [], createdAt: row.createdAt, lastRecalledAt: row.lastRecalledAt)
                    return Salience.shouldArchive(memory, at: now)
                }
                try await store.archive(tenant: tenant.id, ids: faded.map(\.id))
                archived += faded.count
            }
        }
        return archived
    }
}

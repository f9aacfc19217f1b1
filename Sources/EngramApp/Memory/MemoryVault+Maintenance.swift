import EngramCore
import EngramStore
import Foundation

/// The worker's periodic work on the data, through the vault: the sweep, the memory counts
/// for metrics, and the SQLite backup.
extension MemoryVault {
    /// Deletes memories past each tenant's retention, then archives memories that have faded and
    /// were neither recalled nor ingested for the idle period. It never rewrites salience (that
    /// would compound decay). Returns how many memories it deleted or archived.
    public func sweep(now: Date) async throws -> Int {
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

    /// Memories per status, across tenants (the `engram_memories` gauge).
    public func memoryCountsByStatus() async throws -> [String: Int] {
        try await store.memoryCountsByStatus()
    }

    /// Writes and verifies a backup of the SQLite database into `directory`, keeping the newest
    /// `keep`; nil on PostgreSQL, where Engram takes no backups.
    public func backup(to directory: String, keep: Int) throws -> URL? {
        guard let sqlite = store as? SQLiteMemoryStore else { return nil }
        return try SQLiteBackup.create(from: sqlite.database, to: directory, keep: keep)
    }
}

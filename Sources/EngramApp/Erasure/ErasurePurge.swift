import EngramCore
import EngramQueue
import EngramStore
import Foundation
import Logging

/// Carries erasures past the live database, to every other place Engram keeps a caller's data:
/// the queue (pending, in flight, retry, dead letters), Redis' own files (AOF rewrite and RDB
/// snapshot), the retained SQLite backups, and the gateway's spool. The worker runs `run` every
/// `ENGRAM_ERASURE_PURGE_INTERVAL_MS`; the gateway runs `purgeSpool` and, right after an erasure,
/// `propagate`. Every step is idempotent: a failed run is simply repeated by the next one.
public struct ErasurePurge: Sendable {
    public let vault: MemoryVault
    public let queue: RedisEventQueue
    /// The SQLite backup directory, nil on PostgreSQL (Engram takes no backups there).
    public let backupDirectory: String?
    /// Dead letters older than this are deleted, whoever they belong to.
    public let deadLetterRetention: TimeInterval
    /// How far back each run looks again, past the last completed one: an erasure stamped just
    /// before a run but committed after it is still seen.
    public var overlap: TimeInterval = 15 * 60

    public init(vault: MemoryVault, queue: RedisEventQueue, backupDirectory: String?, deadLetterRetention: TimeInterval) {
        self.vault = vault
        self.queue = queue
        self.backupDirectory = backupDirectory
        self.deadLetterRetention = deadLetterRetention
    }

    /// How long an erased caller's tag stays in Redis' erased set: as long as any of their events
    /// could still be queued (dead letters live `deadLetterRetention`).
    public var erasedTagRetention: TimeInterval { max(30 * 86_400, 2 * deadLetterRetention) }

    /// What one run did.
    public struct Report: Sendable, Equatable {
        public var tombstones = 0
        public var queue = QueuePurgeCounts()
        public var untaggedRemoved = 0
        public var backups = SQLiteBackup.ScrubReport()
        public var deadLettersExpired = 0
        /// Set when the run asked Redis to rewrite its files.
        public var persistence: PersistenceRewrite?
        /// Redis reported its last AOF rewrite or snapshot as failed (asked again this run).
        public var lastRewriteFailed = false
        /// The erasure time up to which everything is done, after the run.
        public var purgedThrough: Date?
        public init() {}
    }

    /// One pass: expire dead letters, then for erasures since the last completed pass (with
    /// `overlap`) purge the queue, scrub the backups and have Redis rewrite its files. The
    /// watermark advances only once all of it is done.
    public func run(now: Date = Date()) async throws -> Report {
        var report = Report()
        report.deadLettersExpired = try await queue.expireDeadLetters(failedBefore: now.addingTimeInterval(-deadLetterRetention))
        let through = try await queue.erasurePurgedThrough()
        report.purgedThrough = through
        let recent = try await vault.store.tombstones(erasedAfter: (through ?? .distantPast).addingTimeInterval(-overlap))
        report.tombstones = recent.count
        // A rewrite asked for by an earlier run that then failed leaves the old files in place.
        let lastRewriteFailed = (try? await queue.lastPersistenceRewriteFailed()) ?? false
        report.lastRewriteFailed = lastRewriteFailed
        guard let newest = recent.map(\.erasedAt).max() else {
            if report.deadLettersExpired > 0 || lastRewriteFailed { report.persistence = try await queue.rewritePersistence() }
            return report
        }
        try await markErased(recent, now: now)
        report.queue = try await queue.purgeErased()
        report.untaggedRemoved = try await purgeUntagged(recent)
        if let backupDirectory {
            let all = try await vault.store.tombstones(erasedAfter: .distantPast)
            report.backups = try SQLiteBackup.scrub(directory: backupDirectory, tombstones: all)
        }
        if through.map({ newest > $0 }) ?? true || report.queue.total + report.untaggedRemoved + report.deadLettersExpired > 0 || lastRewriteFailed {
            let rewrite = try await queue.rewritePersistence()
            report.persistence = rewrite
            // A rewrite already running may predate the purge: the next run asks again.
            guard rewrite.complete else { return report }
        }
        if through.map({ newest > $0 }) ?? true {
            try await queue.setErasurePurgedThrough(newest)
            report.purgedThrough = newest
        }
        return report
    }

    /// Right after an erasure (the gateway): tag the caller as erased and drop their queued
    /// events now, without waiting for the worker's next run (which still rewrites Redis' files
    /// and scrubs backups).
    public func propagate(_ tombstone: Tombstone, now: Date = Date()) async throws -> QueuePurgeCounts {
        try await markErased([tombstone], now: now)
        var counts = try await queue.purgeErased()
        counts.pending += try await purgeUntagged([tombstone])
        return counts
    }

    func markErased(_ tombstones: [Tombstone], now: Date) async throws {
        let tags = tombstones.flatMap { tombstone in
            vault.keyRing.userTags(tenant: tombstone.tenant, user: tombstone.user).map { (tag: $0, erasedAt: tombstone.erasedAt) }
        }
        try await queue.markErased(tags, keepSeconds: erasedTagRetention, now: now)
    }

    /// Envelopes queued before tags existed: decrypted to find whose they are. Only those received
    /// by the newest erasure are read.
    func purgeUntagged(_ tombstones: [Tombstone]) async throws -> Int {
        guard let newest = tombstones.map(\.erasedAt).max() else { return 0 }
        let untagged = try await queue.untaggedEvents(receivedBy: newest)
        guard !untagged.isEmpty else { return 0 }
        let erased = Self.erasureTimes(tombstones)
        var tenants: [String: TenantContext?] = [:]
        var removed = 0
        for event in untagged {
            let envelope = event.envelope
            if tenants[envelope.tenant] == nil { tenants[envelope.tenant] = .some(try? await vault.tenant(envelope.tenant)) }
            guard let tenant = tenants[envelope.tenant] ?? nil, let owners = owners(of: envelope, tenant: tenant) else { continue }
            let received = Date(timeIntervalSince1970: envelope.receivedAt)
            if owners.contains(where: { erased["\(tenant.id)\u{0}\($0.rawValue)"].map { $0 >= received } ?? false }) {
                if try await queue.remove(event) { removed += 1 }
            }
        }
        return removed
    }

    /// The callers an envelope names, read from its decrypted body (nil if it cannot be opened).
    func owners(of envelope: Envelope, tenant: TenantContext) -> [UserKey]? {
        guard let body = vault.keyRing.envelopeCiphers.lazy.compactMap({ try? envelope.openBody(cipher: $0) }).first else { return nil }
        return EventOwner.users(body: body, type: envelope.type, tenant: tenant)
    }

    static func erasureTimes(_ tombstones: [Tombstone]) -> [String: Date] {
        Dictionary(tombstones.map { ("\($0.tenant)\u{0}\($0.user.rawValue)", $0.erasedAt) }, uniquingKeysWith: { max($0, $1) })
    }

    /// The gateway's spool: removes every record, pending or already drained, of a caller erased
    /// after the record was received (tagged records by tag, older ones by decrypting them).
    public func purgeSpool(_ spool: Spool) async throws -> Int {
        let records = try spool.allRecords()
        guard let oldest = records.map(\.envelope.receivedAt).min() else { return 0 }
        let tombstones = try await vault.store.tombstones(erasedAfter: Date(timeIntervalSince1970: oldest - 1))
        guard !tombstones.isEmpty else { return 0 }
        var erasedByTag: [String: Date] = [:]
        for tombstone in tombstones {
            for tag in vault.keyRing.userTags(tenant: tombstone.tenant, user: tombstone.user) {
                erasedByTag[tag] = max(erasedByTag[tag] ?? .distantPast, tombstone.erasedAt)
            }
        }
        let erased = Self.erasureTimes(tombstones)
        var tenants: [String: TenantContext?] = [:]
        var doomed = Set<String>()
        for record in records {
            let envelope = record.envelope
            let received = Date(timeIntervalSince1970: envelope.receivedAt)
            if let tags = envelope.userTags {
                if tags.contains(where: { erasedByTag[$0].map { $0 >= received } ?? false }) { doomed.insert(envelope.id) }
                continue
            }
            if tenants[envelope.tenant] == nil { tenants[envelope.tenant] = .some(try? await vault.tenant(envelope.tenant)) }
            guard let tenant = tenants[envelope.tenant] ?? nil, let owners = owners(of: envelope, tenant: tenant) else { continue }
            if owners.contains(where: { erased["\(tenant.id)\u{0}\($0.rawValue)"].map { $0 >= received } ?? false }) { doomed.insert(envelope.id) }
        }
        guard !doomed.isEmpty else { return 0 }
        return try spool.purge { doomed.contains($0.envelope.id) }
    }
}

import Foundation
import GRDB

#if canImport(Glibc)
    import Glibc
#endif

/// Online backups of the SQLite store: a consistent copy taken while services run, checked
/// with `PRAGMA integrity_check`, the last N kept. Erasures reach backups too: a new backup gets
/// every tombstone the live database holds before it is published, `scrub` applies later ones
/// to the retained backups (rows deleted with `secure_delete`, then the file rewritten by
/// `VACUUM INTO`, so no freed page keeps them), and a restore re-applies every tombstone it can
/// find, so an erased caller never comes back from an older backup.
public enum SQLiteBackup {
    public struct BackupError: Error, CustomStringConvertible {
        public let description: String
    }

    /// What `scrub` did.
    public struct ScrubReport: Sendable, Equatable {
        /// Backup files checked.
        public var backups = 0
        /// Backup files rewritten because they lacked a tombstone.
        public var scrubbed = 0
        /// Erasures applied across them.
        public var erasures = 0
        public init() {}
    }

    static let stampFormatter: DateFormatter = {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return f
    }()

    /// Copies the live database to `directory/engram-<time>.sqlite`, verifies it, prunes old copies.
    /// The copy is published only once it holds every tombstone the live database holds after
    /// the copy (an erasure that committed while it was taken is applied to it).
    public static func create(from database: AppDatabase, to directory: String, keep: Int, now: Date = Date()) throws -> URL {
        let dir = URL(fileURLWithPath: directory)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return try withDirectoryLock(dir) {
            let name = "engram-\(stampFormatter.string(from: now))-\(UUID().uuidString.prefix(4)).sqlite"
            let url = dir.appendingPathComponent(name)
            let partial = dir.appendingPathComponent(".partial-" + name)
            defer { removeDatabaseFiles(partial) }
            let copy = try DatabaseQueue(path: partial.path)
            try database.pool.backup(to: copy)
            try copy.close()
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: partial.path)
            let live = try database.pool.read { db in try SQLiteMemoryStore.tombstones(db) }
            _ = try applyMissing(live, toBackup: partial, rewrite: false)
            try verify(partial.path)
            guard rename(partial.path, url.path) == 0 else { throw BackupError(description: "cannot publish the backup") }
            let backups = try backupFiles(dir)
            for old in backups.dropLast(max(1, keep)) { removeDatabaseFiles(old) }
            return url
        }
    }

    /// Applies every tombstone in `tombstones` that a retained backup in `directory` lacks (or
    /// holds with an older time): the caller's rows are deleted with `secure_delete` and the file
    /// is rewritten with `VACUUM INTO`, so the backup keeps no copy of them, only the tombstone.
    public static func scrub(directory: String, tombstones: [Tombstone]) throws -> ScrubReport {
        let dir = URL(fileURLWithPath: directory)
        var report = ScrubReport()
        guard FileManager.default.fileExists(atPath: dir.path) else { return report }
        return try withDirectoryLock(dir) {
            for file in try backupFiles(dir) {
                report.backups += 1
                let applied = try applyMissing(tombstones, toBackup: file, rewrite: true)
                if applied > 0 {
                    report.scrubbed += 1
                    report.erasures += applied
                }
            }
            return report
        }
    }

    /// The tombstones of every retained backup in `directory` (a restore re-applies them too).
    public static func tombstones(inDirectory directory: String) throws -> [Tombstone] {
        let dir = URL(fileURLWithPath: directory)
        guard FileManager.default.fileExists(atPath: dir.path) else { return [] }
        return try backupFiles(dir).flatMap { (try? fileTombstones($0.path)) ?? [] }
    }

    static func fileTombstones(_ path: String) throws -> [Tombstone] {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)  // a scrub may be writing it
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        defer { try? queue.close() }
        return try queue.read { db in try SQLiteMemoryStore.tombstones(db) }
    }

    /// Erases, in one backup file, each caller of `tombstones` it has no tombstone for (or an
    /// older one). Returns how many it applied; with `rewrite`, a changed file is replaced by a
    /// `VACUUM INTO` copy.
    static func applyMissing(_ tombstones: [Tombstone], toBackup url: URL, rewrite: Bool) throws -> Int {
        let present = Dictionary(
            (try fileTombstones(url.path)).map { ("\($0.tenant)\u{0}\($0.user.rawValue)", $0.erasedAt) },
            uniquingKeysWith: { max($0, $1) })
        let missing = newest(tombstones).filter { tombstone in
            present["\(tombstone.tenant)\u{0}\(tombstone.user.rawValue)"].map { $0 < tombstone.erasedAt } ?? true
        }
        guard !missing.isEmpty else { return 0 }
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA secure_delete = ON") }
        let queue = try DatabaseQueue(path: url.path, configuration: configuration)
        try queue.inDatabase { db in
            // A backup is a plain copy (rollback journal): the journal goes when the write ends.
            try db.inTransaction {
                for tombstone in missing { try eraseRows(db, tombstone) }
                return .commit
            }
        }
        if rewrite {
            let vacuumed = url.deletingLastPathComponent().appendingPathComponent(".scrub-" + url.lastPathComponent)
            removeDatabaseFiles(vacuumed)
            defer { removeDatabaseFiles(vacuumed) }
            try queue.inDatabase { db in try db.execute(sql: "VACUUM INTO ?", arguments: [vacuumed.path]) }
            try queue.close()
            // The old file's side files must not meet the new one.
            for suffix in ["-journal", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: url.path + suffix) }
            try syncFile(vacuumed)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: vacuumed.path)
            guard rename(vacuumed.path, url.path) == 0 else { throw BackupError(description: "cannot replace a scrubbed backup") }
        } else {
            try queue.close()
        }
        return missing.count
    }

    /// The live store's erasure, on a connection to any Engram database: the data key first,
    /// then every row of the user, and the tombstone.
    static func eraseRows(_ db: Database, _ tombstone: Tombstone) throws {
        let arguments: StatementArguments = [tombstone.tenant, tombstone.user.rawValue]
        try db.execute(
            sql: "UPDATE users SET data_key_wrapped = zeroblob(length(data_key_wrapped)) WHERE tenant_id = ? AND user_key = ?", arguments: arguments)
        try db.execute(sql: "DELETE FROM memory_terms WHERE tenant_id = ? AND user_key = ?", arguments: arguments)
        try db.execute(sql: "DELETE FROM memory_vectors WHERE tenant_id = ? AND user_key = ?", arguments: arguments)
        try db.execute(sql: "DELETE FROM memories WHERE tenant_id = ? AND user_key = ?", arguments: arguments)
        try db.execute(sql: "DELETE FROM users WHERE tenant_id = ? AND user_key = ?", arguments: arguments)
        try db.execute(
            sql: "INSERT INTO tombstones (tenant_id, user_key, erased_at) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET erased_at = excluded.erased_at",
            arguments: [tombstone.tenant, tombstone.user.rawValue, tombstone.erasedAt.timeIntervalSince1970])
    }

    /// One tombstone per caller, the latest.
    static func newest(_ tombstones: [Tombstone]) -> [Tombstone] {
        var latest: [String: Tombstone] = [:]
        for tombstone in tombstones {
            let key = "\(tombstone.tenant)\u{0}\(tombstone.user.rawValue)"
            if let seen = latest[key], seen.erasedAt >= tombstone.erasedAt { continue }
            latest[key] = tombstone
        }
        return latest.values.sorted { ($0.erasedAt, $0.tenant, $0.user.rawValue) < ($1.erasedAt, $1.tenant, $1.user.rawValue) }
    }

    static func backupFiles(_ dir: URL) throws -> [URL] {
        try FileManager.default.contentsOfDirectory(atPath: dir.path)
            .filter { $0.hasPrefix("engram-") && $0.hasSuffix(".sqlite") }.sorted()
            .map { dir.appendingPathComponent($0) }
    }

    static func removeDatabaseFiles(_ url: URL) {
        for suffix in ["", "-journal", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: url.path + suffix) }
    }

    static func syncFile(_ url: URL) throws {
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw BackupError(description: "cannot open a scrubbed backup") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw BackupError(description: "cannot sync a scrubbed backup") }
    }

    /// `flock` on `.lock` in the backup directory: a backup being taken and a scrub never interleave,
    /// so a backup published after an erasure's scrub began is scrubbed by it or holds the tombstone.
    static func withDirectoryLock<T>(_ dir: URL, _ body: () throws -> T) throws -> T {
        let fd = open(dir.appendingPathComponent(".lock").path, O_CREAT | O_RDWR, 0o600)
        guard fd >= 0 else { throw BackupError(description: "cannot open the backup directory's lock") }
        defer { close(fd) }
        guard flock(fd, LOCK_EX) == 0 else { throw BackupError(description: "cannot lock the backup directory") }
        defer { flock(fd, LOCK_UN) }
        return try body()
    }

    /// `PRAGMA integrity_check` and the schema version of a backup file.
    public static func verify(_ path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else { throw BackupError(description: "no such file") }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)  // a scrub may be writing it
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        defer { try? queue.close() }
        try queue.read { db in
            let result = try String.fetchOne(db, sql: "PRAGMA integrity_check") ?? "no answer"
            guard result == "ok" else { throw BackupError(description: "integrity check failed: \(result)") }
            guard try db.tableExists("memories"), try db.tableExists("tombstones") else { throw BackupError(description: "not an Engram database") }
        }
    }

    /// Replaces the live database's content with the backup's, then re-applies every erasure it
    /// can find that the backup lacks (or holds with an older time): the live database's
    /// tombstones, and those of the backups in `backupDirectory` (they hold every erasure up to
    /// their last scrub, which matters when the live database is lost). A caller who came back
    /// by consenting again after an erasure the backup already holds keeps what they said since.
    public static func restore(_ path: String, into database: AppDatabase, backupDirectory: String? = nil) async throws -> (
        restored: Int, tombstonesReapplied: Int
    ) {
        try verify(path)
        var known = try await database.pool.read { db in try SQLiteMemoryStore.tombstones(db) }
        if let backupDirectory { known += try tombstones(inDirectory: backupDirectory) }
        let source = try DatabaseQueue(path: path)
        try source.backup(to: database.pool)
        try source.close()
        try AppDatabase.migrator.migrate(database.pool)  // a backup from an older version catches up
        let restoredTombstones = try await database.pool.read { db in try SQLiteMemoryStore.tombstones(db) }
        let present = Dictionary(restoredTombstones.map { ("\($0.tenant)\u{0}\($0.user.rawValue)", $0.erasedAt) }, uniquingKeysWith: { max($0, $1) })
        let missing = newest(known).filter { tombstone in
            present["\(tombstone.tenant)\u{0}\(tombstone.user.rawValue)"].map { $0 < tombstone.erasedAt } ?? true
        }
        let store = SQLiteMemoryStore(database: database)
        for tombstone in missing {
            try await store.erase(tenant: tombstone.tenant, user: tombstone.user, at: tombstone.erasedAt)
        }
        let restored = try await database.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM memories") ?? 0 }
        return (restored, missing.count)
    }
}

import Foundation
import GRDB

/// Online backups of the SQLite store: a consistent copy taken while services run, checked
/// with `PRAGMA integrity_check`, the last N kept. Restoring re-applies every tombstone the live
/// database holds, so an erased caller never comes back from an older backup.
public enum SQLiteBackup {
    public struct BackupError: Error, CustomStringConvertible {
        public let description: String
    }

    static let stampFormatter: DateFormatter = {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return f
    }()

    /// Copies the live database to `directory/engram-<time>.sqlite`, verifies it, prunes old copies.
    public static func create(from database: AppDatabase, to directory: String, keep: Int, now: Date = Date()) throws -> URL {
        let dir = URL(fileURLWithPath: directory)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let url = dir.appendingPathComponent("engram-\(stampFormatter.string(from: now))-\(UUID().uuidString.prefix(4)).sqlite")
        let copy = try DatabaseQueue(path: url.path)
        try database.pool.backup(to: copy)
        try copy.close()
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: url.path)
        try verify(url.path)
        let backups = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            .filter { $0.hasPrefix("engram-") && $0.hasSuffix(".sqlite") }.sorted()
        for old in backups.dropLast(max(1, keep)) { try? FileManager.default.removeItem(at: dir.appendingPathComponent(old)) }
        return url
    }

    /// `PRAGMA integrity_check` and the schema version of a backup file.
    public static func verify(_ path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else { throw BackupError(description: "no such file") }
        var configuration = Configuration()
        configuration.readonly = true
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        defer { try? queue.close() }
        try queue.read { db in
            let result = try String.fetchOne(db, sql: "PRAGMA integrity_check") ?? "no answer"
            guard result == "ok" else { throw BackupError(description: "integrity check failed: \(result)") }
            guard try db.tableExists("memories"), try db.tableExists("tombstones") else { throw BackupError(description: "not an Engram database") }
        }
    }

    /// Replaces the live database's content with the backup's, then re-applies the live tombstones.
    public static func restore(_ path: String, into database: AppDatabase) async throws -> (restored: Int, tombstonesReapplied: Int) {
        try verify(path)
        let store = SQLiteMemoryStore(database: database)
        let tombstones = try await database.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT tenant_id, user_key, erased_at FROM tombstones").map { ($0["tenant_id"] as String, $0["user_key"] as String, $0["erased_at"] as Double) }
        }
        let source = try DatabaseQueue(path: path)
        try source.backup(to: database.pool)
        try source.close()
        try AppDatabase.migrator.migrate(database.pool)  // a backup from an older version catches up
        var reapplied = 0
        for (tenant, user, erasedAt) in tombstones {
            try await store.erase(tenant: tenant, user: UserKey(unchecked: user), at: Date(timeIntervalSince1970: erasedAt))
            reapplied += 1
        }
        let restored = try await database.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM memories") ?? 0 }
        return (restored, reapplied)
    }
}

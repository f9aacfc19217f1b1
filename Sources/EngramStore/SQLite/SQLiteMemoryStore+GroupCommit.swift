import Foundation
import GRDB
import GRDBSQLite

/// Group commit on SQLite (`GroupCommit`): a write under a group commits with
/// `synchronous = NORMAL` (in WAL mode: appended to the write-ahead log, not flushed), and
/// `syncGroup` flushes the log once, through SQLite's own file (`SQLITE_FCNTL_JOURNAL_POINTER`,
/// then the VFS's `xSync`, as a `synchronous = FULL` commit would). The log is append-only and
/// each frame's checksum covers the frames before it, so the flush makes every earlier commit
/// durable; a checkpoint in between has flushed the log and the database file itself.
extension SQLiteMemoryStore: GroupCommitStore {
    public func syncGroup(_ group: GroupCommit) async throws {
        guard group.hasUnsyncedWrites else { return }
        // On the writer's queue: the file handle is the writer connection's, used by nothing else meanwhile.
        try await syncWriteAheadLog()
        group.noteSynced()
    }

    /// One write transaction under `group`: committed without a flush, the connection's level restored after.
    static func commitDeferred<T>(_ db: Database, group: GroupCommit, _ body: (Database) throws -> T) throws -> T {
        let level = try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? 2
        try db.execute(sql: "PRAGMA synchronous = NORMAL")
        // A pragma without I/O: it does not fail once the connection is open. Were it to, the
        // group's flush still covers this commit.
        defer { try? db.execute(sql: "PRAGMA synchronous = \(level)") }
        // Noted before: a commit that fails half-way costs at most a spare flush.
        group.noteUnsyncedWrite()
        var result: T?
        try db.inTransaction {
            result = try body(db)
            return .commit
        }
        guard let result else { throw StoreError.corrupt("write transaction returned no result") }
        return result
    }

    /// Flushes the write-ahead log to disk.
    static func syncWriteAheadLog(_ db: Database) throws {
        guard let connection = db.sqliteConnection else { throw StoreError.unavailable("SQLite: connection closed") }
        var file: UnsafeMutablePointer<sqlite3_file>?
        let found = withUnsafeMutablePointer(to: &file) { sqlite3_file_control(connection, "main", SQLITE_FCNTL_JOURNAL_POINTER, $0) }
        guard found == SQLITE_OK, let file, let sync = file.pointee.pMethods?.pointee.xSync else {
            // No open log (never the case after a write on a WAL connection): a checkpoint flushes
            // the log before it copies it into the database file.
            _ = try Row.fetchAll(db, sql: "PRAGMA wal_checkpoint(FULL)")
            return
        }
        let code = sync(file, SQLITE_SYNC_NORMAL)
        guard code == SQLITE_OK else { throw StoreError.unavailable("SQLite: flushing the write-ahead log failed (code \(code))") }
    }
}

import Foundation
import GRDB

#if canImport(Glibc)
    import Glibc
#endif

/// Owns the SQLite `DatabasePool` (WAL, foreign keys, busy timeout, secure_delete) and runs the
/// migrator under an exclusive file lock, so gateway and worker can start together on a new file.
public struct AppDatabase: Sendable {
    public let pool: DatabasePool
    public let path: String
    /// Read-only connections for point reads made on the calling thread
    /// (`SQLiteMemoryStore.pointReading`), apart from `pool`: a thread blocked on one of them
    /// waits only for other such reads (microseconds), never for an async read that needs a
    /// Swift concurrency thread to finish (sharing `pool`'s readers deadlocked the gateway under
    /// load). They never wait for a lock: busy, a read fails at once. Closed, a read throws.
    let pointReader: DatabasePool

    /// Bytes of the file SQLite reads through a memory map (`ENGRAM_SQLITE_MMAP_MB`): a page
    /// read is then a memory access, not a `pread` copying the page out of the kernel's cache.
    public static let defaultMapBytes = 256 * 1024 * 1024

    public init(path: String, mapBytes: Int = AppDatabase.defaultMapBytes) throws {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        self.path = path
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.foreignKeysEnabled = true
        configuration.prepareDatabase { db in
            // Freed pages are zeroed: an erased user's wrapped key does not linger in the file.
            try db.execute(sql: "PRAGMA secure_delete = ON")
            try db.execute(sql: "PRAGMA mmap_size = \(max(0, mapBytes))")
        }
        pool = try AppDatabase.withMigrationLock(path: path) {
            let pool = try DatabasePool(path: path, configuration: configuration)
            try AppDatabase.migrator.migrate(pool)
            return pool
        }
        var readOnly = configuration
        readOnly.readonly = true
        readOnly.busyMode = .immediateError
        // GRDB gives a pool's readers a 10 s busy timeout whatever `busyMode` says (its
        // `readonlyBusyMode`, not settable): a busy database would then hold a Swift concurrency
        // thread for up to 10 s, outside the call deadline. Set after GRDB's own setup, this turns
        // the handler off, so busy fails at once and the read goes the ordinary way.
        readOnly.prepareDatabase { db in try db.execute(sql: "PRAGMA busy_timeout = 0") }
        readOnly.maximumReaderCount = 4
        pointReader = try DatabasePool(path: path, configuration: readOnly)
    }

    /// `flock` on a side file: one process migrates, the others wait for it.
    static func withMigrationLock<T>(path: String, _ body: () throws -> T) throws -> T {
        let fd = open(path + ".migrate.lock", O_CREAT | O_RDWR, 0o600)
        guard fd >= 0 else { throw StoreError.unsupported("cannot open migration lock next to the database") }
        defer { close(fd) }
        guard flock(fd, LOCK_EX) == 0 else { throw StoreError.unsupported("cannot take the migration lock") }
        defer { flock(fd, LOCK_UN) }
        return try body()
    }

    /// Migrations are never edited once shipped: add v2, v3...
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE tenants (
                        id TEXT PRIMARY KEY,
                        name TEXT NOT NULL,
                        pseudonym_secret_wrapped BLOB NOT NULL,
                        key_id TEXT NOT NULL,
                        consent_mode TEXT NOT NULL DEFAULT 'implicit',
                        allow_sensitive_precall INTEGER NOT NULL DEFAULT 0,
                        created_at REAL NOT NULL
                    );
                    CREATE TABLE users (
                        tenant_id TEXT NOT NULL REFERENCES tenants(id),
                        user_key TEXT NOT NULL,
                        data_key_wrapped BLOB NOT NULL,
                        key_id TEXT NOT NULL,
                        consent INTEGER,
                        consent_at REAL,
                        created_at REAL NOT NULL,
                        last_call_at REAL,
                        memory_version INTEGER NOT NULL DEFAULT 0,
                        PRIMARY KEY (tenant_id, user_key)
                    );
                    CREATE TABLE processed_events (
                        tenant_id TEXT NOT NULL,
                        idempotency_key TEXT NOT NULL,
                        event_id TEXT NOT NULL,
                        event_type TEXT NOT NULL,
                        user_key TEXT,
                        processed_at REAL NOT NULL,
                        PRIMARY KEY (tenant_id, idempotency_key)
                    );
                    CREATE TABLE memories (
                        id TEXT PRIMARY KEY,
                        tenant_id TEXT NOT NULL,
                        user_key TEXT NOT NULL,
                        sector TEXT NOT NULL,
                        content BLOB NOT NULL,
                        slot TEXT,
                        importance REAL NOT NULL,
                        salience0 REAL NOT NULL,
                        reinforced_at REAL NOT NULL,
                        sensitive INTEGER NOT NULL DEFAULT 0,
                        valid_from REAL NOT NULL,
                        valid_to REAL,
                        superseded_by TEXT,
                        status TEXT NOT NULL DEFAULT 'active',
                        sources TEXT NOT NULL,
                        created_at REAL NOT NULL,
                        last_recalled_at REAL,
                        needs_reextraction INTEGER NOT NULL DEFAULT 0,
                        term_count INTEGER NOT NULL DEFAULT 0,
                        FOREIGN KEY (tenant_id, user_key) REFERENCES users(tenant_id, user_key) ON DELETE CASCADE
                    );
                    CREATE INDEX memories_by_user ON memories(tenant_id, user_key, status);
                    CREATE TABLE memory_vectors (
                        memory_id TEXT NOT NULL REFERENCES memories(id) ON DELETE CASCADE,
                        embedder TEXT NOT NULL,
                        tenant_id TEXT NOT NULL,
                        user_key TEXT NOT NULL,
                        vector BLOB NOT NULL,
                        PRIMARY KEY (memory_id, embedder)
                    );
                    CREATE INDEX memory_vectors_by_user ON memory_vectors(tenant_id, user_key, embedder);
                    CREATE TABLE memory_terms (
                        tenant_id TEXT NOT NULL,
                        user_key TEXT NOT NULL,
                        term BLOB NOT NULL,
                        memory_id TEXT NOT NULL REFERENCES memories(id) ON DELETE CASCADE,
                        frequency INTEGER NOT NULL,
                        PRIMARY KEY (tenant_id, user_key, term, memory_id)
                    ) WITHOUT ROWID;
                    CREATE INDEX memory_terms_by_memory ON memory_terms(memory_id);
                    CREATE TABLE tombstones (
                        tenant_id TEXT NOT NULL,
                        user_key TEXT NOT NULL,
                        erased_at REAL NOT NULL,
                        PRIMARY KEY (tenant_id, user_key)
                    );
                    """)
        }
        migrator.registerMigration("v2") { db in
            try db.execute(
                sql: """
                    ALTER TABLE tenants ADD COLUMN webhook_secret_wrapped BLOB;
                    ALTER TABLE tenants ADD COLUMN webhook_secret_previous_wrapped BLOB;
                    CREATE TABLE api_keys (
                        id TEXT PRIMARY KEY,
                        tenant_id TEXT NOT NULL REFERENCES tenants(id),
                        scope TEXT NOT NULL,
                        key_hash BLOB NOT NULL UNIQUE,
                        created_at REAL NOT NULL,
                        revoked_at REAL
                    );
                    CREATE TABLE audit_log (
                        id TEXT PRIMARY KEY,
                        tenant_id TEXT NOT NULL,
                        actor TEXT NOT NULL,
                        action TEXT NOT NULL,
                        user_key TEXT,
                        memory_id TEXT,
                        at REAL NOT NULL
                    );
                    CREATE INDEX audit_log_by_tenant ON audit_log(tenant_id, at);
                    """)
        }
        migrator.registerMigration("v3") { db in
            try db.execute(sql: "ALTER TABLE tenants ADD COLUMN retention_days INTEGER")
        }
        migrator.registerMigration("v4") { db in
            try db.execute(sql: "ALTER TABLE tenants ADD COLUMN trust_client_user_ids INTEGER NOT NULL DEFAULT 0")
        }
        return migrator
    }
}

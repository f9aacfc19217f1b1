import EngramCore
import Foundation
import GRDB
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// `engram migrate --from sqlite://... --to postgres://...`: copies every table of an SQLite
/// store into an empty PostgreSQL store in one transaction. Bytes are copied as they are: content
/// stays sealed and keys stay wrapped by the same master key, so nothing is decrypted on the way.
public enum StoreCopy {
    public struct Report: Sendable, Equatable {
        /// Rows per table, in copy order, as counted in the target after the copy.
        public var tables: [(name: String, rows: Int)]
        public static func == (a: Report, b: Report) -> Bool {
            a.tables.map(\.name) == b.tables.map(\.name) && a.tables.map(\.rows) == b.tables.map(\.rows)
        }
    }

    /// How far a copy is, reported after each page of rows (about `chunk`), at each table's end,
    /// and once before the vector indexes are built (`indexing`, the last and longest quiet step).
    public struct Progress: Sendable, Equatable {
        public enum Phase: String, Sendable { case copying, indexing }
        public var phase: Phase
        /// The table being copied, and its rows copied so far of its rows in the source.
        public var table: String
        public var tableRows: Int
        public var tableTotal: Int
        /// Rows copied so far of the source's rows, all tables together.
        public var copied: Int
        public var total: Int
    }

    /// Counts the rows copied per table and hands each step to the caller's `report`.
    final class Tracker: Sendable {
        private let report: @Sendable (Progress) -> Void
        private let totals: [String: Int]
        private let total: Int
        private let state = Mutex<(copied: Int, byTable: [String: Int])>((0, [:]))

        init(totals: [String: Int], report: @escaping @Sendable (Progress) -> Void) {
            self.totals = totals
            self.total = totals.values.reduce(0, +)
            self.report = report
        }

        func add(_ table: String, rows: Int) {
            let (copied, tableRows) = state.withLock { state in
                state.copied += rows
                state.byTable[table, default: 0] += rows
                return (state.copied, state.byTable[table] ?? 0)
            }
            report(Progress(phase: .copying, table: table, tableRows: tableRows, tableTotal: totals[table] ?? 0, copied: copied, total: total))
        }

        func indexing() {
            let copied = state.withLock { $0.copied }
            report(Progress(phase: .indexing, table: "memory_vectors", tableRows: 0, tableTotal: 0, copied: copied, total: total))
        }
    }

    static let tables = ["tenants", "users", "processed_events", "memories", "memory_vectors", "memory_terms", "tombstones", "api_keys", "audit_log"]
    static let chunk = 2_000

    /// `progress` is called after each page of rows and once before the indexes are built.
    public static func copy(
        from source: SQLiteMemoryStore, to target: PostgresMemoryStore, logger: Logger, progress: @escaping @Sendable (Progress) -> Void = { _ in }
    ) async throws -> Report {
        let pool = source.database.pool
        let sourceCounts = try await pool.read { db in
            try tables.map { try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \($0)") ?? 0 }
        }
        let tracker = Tracker(totals: Dictionary(uniqueKeysWithValues: zip(tables, sourceCounts)), report: progress)
        try await target.transactionWithoutDeadline { pg in
            for table in tables {
                let rows = try await pg.rows(PostgresQuery(unsafeSQL: "SELECT count(*) AS n FROM \(table)"), logger: logger)
                if try rows.first?["n"].decode(Int.self) ?? 0 > 0 {
                    throw StoreError.unsupported("the target already has rows in \(table); copy into an empty database")
                }
            }
            // One index build at the end is far cheaper than maintaining HNSW graphs row by row.
            var hnsw: [String] = []
            for row in try await pg.rows(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'memory_vectors' AND indexname LIKE 'memory_vectors_hnsw_%'",
                logger: logger)
            {
                hnsw.append(try row["indexdef"].decode(String.self))
                try await pg.query(PostgresQuery(unsafeSQL: "DROP INDEX \(try row["indexname"].decode(String.self))"), logger: logger)
            }
            try await copyTenants(pool, pg, logger, tracker)
            try await copyUsers(pool, pg, logger, tracker)
            try await copyEvents(pool, pg, logger, tracker)
            try await copyMemories(pool, pg, logger, tracker)
            try await copyVectors(pool, pg, logger, tracker)
            try await copyTerms(pool, pg, logger, tracker)
            try await copySmallTables(pool, pg, logger, tracker)
            tracker.indexing()
            try await pg.query("SET LOCAL maintenance_work_mem = '1GB'", logger: logger)
            for definition in hnsw { try await pg.query(PostgresQuery(unsafeSQL: definition), logger: logger) }
        }
        var report = Report(tables: [])
        for table in tables {
            let rows = try await target.client.withConnection { pg in
                try await pg.rows(PostgresQuery(unsafeSQL: "SELECT count(*) AS n FROM \(table)"), logger: logger)
            }
            report.tables.append((table, try rows.first?["n"].decode(Int.self) ?? 0))
        }
        for (index, table) in report.tables.enumerated() where table.rows != sourceCounts[index] {
            throw StoreError.corrupt("\(table.name): \(sourceCounts[index]) rows in the source, \(table.rows) in the target")
        }
        return report
    }

    static func date(_ value: Double?) -> Date? { value.map(Date.init(timeIntervalSince1970:)) }

    /// Reads a table in pages of `chunk` rows by rowid (keyset, not OFFSET: each page is an index
    /// seek, so a table of millions of rows costs linear time), handing each page to `body`.
    static func pages(_ pool: DatabasePool, table: String, _ tracker: Tracker, _ body: ([Row]) async throws -> Void) async throws {
        var last: Int64 = .min
        while true {
            let page = try await pool.read { db in
                try Row.fetchAll(
                    db, sql: "SELECT rowid AS copy_rowid, * FROM \(table) WHERE rowid > ? ORDER BY rowid LIMIT \(chunk)", arguments: [last])
            }
            guard let end = page.last?["copy_rowid"] as Int64? else { return }
            try await body(page)
            tracker.add(table, rows: page.count)
            last = end
        }
    }

    static func copyTenants(_ pool: DatabasePool, _ pg: PostgresConnection, _ logger: Logger, _ tracker: Tracker) async throws {
        let rows = try await pool.read { db in try Row.fetchAll(db, sql: "SELECT * FROM tenants") }
        for row in rows {
            let retention: Int? = row["retention_days"]
            let current: Data? = row["webhook_secret_wrapped"]
            let previous: Data? = row["webhook_secret_previous_wrapped"]
            let trustClientUserIDs: Bool = (row["trust_client_user_ids"] as Bool?) ?? false
            try await pg.query(
                """
                INSERT INTO tenants (id, name, pseudonym_secret_wrapped, key_id, consent_mode, allow_sensitive_precall, created_at,
                    webhook_secret_wrapped, webhook_secret_previous_wrapped, retention_days, trust_client_user_ids)
                VALUES (\(row["id"] as String), \(row["name"] as String), \(row["pseudonym_secret_wrapped"] as Data), \(row["key_id"] as String),
                    \(row["consent_mode"] as String), \(row["allow_sensitive_precall"] as Bool), \(date(row["created_at"])!), \(current), \(previous),
                    \(retention), \(trustClientUserIDs))
                """, logger: logger)
        }
        tracker.add("tenants", rows: rows.count)
    }

    static func copyUsers(_ pool: DatabasePool, _ pg: PostgresConnection, _ logger: Logger, _ tracker: Tracker) async throws {
        try await pages(pool, table: "users", tracker) { rows in
            for row in rows {
                let consent: Bool? = row["consent"]
                try await pg.query(
                    """
                    INSERT INTO users (tenant_id, user_key, data_key_wrapped, key_id, consent, consent_at, created_at, last_call_at, memory_version)
                    VALUES (\(row["tenant_id"] as String), \(row["user_key"] as String), \(row["data_key_wrapped"] as Data), \(row["key_id"] as String),
                        \(consent), \(date(row["consent_at"])), \(date(row["created_at"])!), \(date(row["last_call_at"])), \(row["memory_version"] as Int64))
                    """, logger: logger)
            }
        }
    }

    static func copyEvents(_ pool: DatabasePool, _ pg: PostgresConnection, _ logger: Logger, _ tracker: Tracker) async throws {
        try await pages(pool, table: "processed_events", tracker) { rows in
            let tenants: [String] = rows.map { $0["tenant_id"] }
            let keys: [String] = rows.map { $0["idempotency_key"] }
            let ids: [String] = rows.map { $0["event_id"] }
            let types: [String] = rows.map { $0["event_type"] }
            let users: [String] = rows.map { ($0["user_key"] as String?) ?? "" }
            let times: [Date] = rows.map { date($0["processed_at"])! }
            try await pg.query(
                """
                INSERT INTO processed_events (tenant_id, idempotency_key, event_id, event_type, user_key, processed_at)
                SELECT t, k, e, ty, NULLIF(u, ''), at
                FROM unnest(\(tenants)::text[], \(keys)::text[], \(ids)::text[], \(types)::text[], \(users)::text[], \(times)::timestamptz[])
                    AS x(t, k, e, ty, u, at)
                """, logger: logger)
        }
    }

    static func copyMemories(_ pool: DatabasePool, _ pg: PostgresConnection, _ logger: Logger, _ tracker: Tracker) async throws {
        try await pages(pool, table: "memories", tracker) { rows in
            if let json = try PostgresMemoryStore.memoriesJSON(rows.map(SQLiteMemoryStore.memory)) {
                try await PostgresMemoryStore.insertMemories(json, on: pg, logger: logger)
            }
        }
    }

    static func copyVectors(_ pool: DatabasePool, _ pg: PostgresConnection, _ logger: Logger, _ tracker: Tracker) async throws {
        try await pages(pool, table: "memory_vectors", tracker) { rows in
            let decoded = rows.map { row -> (id: String, embedder: String, tenant: String, user: String, vector: [Float]) in
                let blob: Data = row["vector"]
                return (row["memory_id"], row["embedder"], row["tenant_id"], row["user_key"], VectorMath.fromBytes([UInt8](blob)))
            }
            for (dims, group) in Dictionary(grouping: decoded, by: \.vector.count) where dims > 0 {
                try await pg.query(
                    """
                    INSERT INTO memory_vectors (memory_id, embedder, tenant_id, user_key, dims, embedding)
                    SELECT x.id, x.embedder, x.tenant, x.user_key, \(dims), ((\(group.flatMap(\.vector))::real[])[(x.i - 1) * \(dims) + 1 : x.i * \(dims)])::vector
                    FROM unnest(\(group.map(\.id))::text[], \(group.map(\.embedder))::text[], \(group.map(\.tenant))::text[], \(group.map(\.user))::text[])
                        WITH ORDINALITY AS x(id, embedder, tenant, user_key, i)
                    """, logger: logger)
            }
        }
    }

    static func copyTerms(_ pool: DatabasePool, _ pg: PostgresConnection, _ logger: Logger, _ tracker: Tracker) async throws {
        // memory_terms has no rowid: keyset over its primary key.
        var last: (String, String, Data, String)? = nil
        while true {
            let rows = try await pool.read { [last] db in
                if let last {
                    return try Row.fetchAll(
                        db,
                        sql: """
                            SELECT * FROM memory_terms WHERE (tenant_id, user_key, term, memory_id) > (?, ?, ?, ?)
                            ORDER BY tenant_id, user_key, term, memory_id LIMIT \(chunk)
                            """, arguments: [last.0, last.1, last.2, last.3])
                }
                return try Row.fetchAll(db, sql: "SELECT * FROM memory_terms ORDER BY tenant_id, user_key, term, memory_id LIMIT \(chunk)")
            }
            guard let end = rows.last else { return }
            last = (end["tenant_id"], end["user_key"], end["term"], end["memory_id"])
            let tenants: [String] = rows.map { $0["tenant_id"] }
            let users: [String] = rows.map { $0["user_key"] }
            let terms: [ByteBuffer] = rows.map { ByteBuffer(data: $0["term"] as Data) }
            let ids: [String] = rows.map { $0["memory_id"] }
            let frequencies: [Int] = rows.map { $0["frequency"] }
            try await pg.query(
                """
                INSERT INTO memory_terms (tenant_id, user_key, term, memory_id, frequency)
                SELECT * FROM unnest(\(tenants)::text[], \(users)::text[], \(terms)::bytea[], \(ids)::text[], \(frequencies)::int8[])
                """, logger: logger)
            tracker.add("memory_terms", rows: rows.count)
        }
    }

    static func copySmallTables(_ pool: DatabasePool, _ pg: PostgresConnection, _ logger: Logger, _ tracker: Tracker) async throws {
        let tombstones = try await pool.read { db in try Row.fetchAll(db, sql: "SELECT * FROM tombstones") }
        for row in tombstones {
            try await pg.query(
                "INSERT INTO tombstones (tenant_id, user_key, erased_at) VALUES (\(row["tenant_id"] as String), \(row["user_key"] as String), \(date(row["erased_at"])!))",
                logger: logger)
        }
        tracker.add("tombstones", rows: tombstones.count)
        let keys = try await pool.read { db in try Row.fetchAll(db, sql: "SELECT * FROM api_keys") }
        for row in keys {
            try await pg.query(
                """
                INSERT INTO api_keys (id, tenant_id, scope, key_hash, created_at, revoked_at)
                VALUES (\(row["id"] as String), \(row["tenant_id"] as String), \(row["scope"] as String), \(row["key_hash"] as Data),
                    \(date(row["created_at"])!), \(date(row["revoked_at"])))
                """, logger: logger)
        }
        tracker.add("api_keys", rows: keys.count)
        try await pages(pool, table: "audit_log", tracker) { rows in
            for row in rows {
                try await pg.query(
                    """
                    INSERT INTO audit_log (id, tenant_id, actor, action, user_key, memory_id, at)
                    VALUES (\(row["id"] as String), \(row["tenant_id"] as String), \(row["actor"] as String), \(row["action"] as String),
                        \(row["user_key"] as String?), \(row["memory_id"] as String?), \(date(row["at"])!))
                    """, logger: logger)
            }
        }
    }
}

import EngramCore
import EngramObservability
import Foundation
import GRDB
import Logging

/// The embedded default backend: one SQLite file in WAL mode.
///
/// Every call has a deadline (`callTimeout`, as on PostgreSQL): one still waiting for the writer
/// or the disk past it fails with `StoreError.unavailable` and a log line naming the operation.
public struct SQLiteMemoryStore: MemoryStore {
    public let database: AppDatabase
    public let callTimeout: Duration
    private let logger: Logger
    /// A point reader that keeps failing is logged once, then at most every 30 s.
    private let pointReadFailures = RepeatingFailureLog("SQLite point read failed; read the ordinary way")
    private var pool: DatabasePool { database.pool }

    public init(database: AppDatabase, callTimeout: Duration = StoreDeadline.defaultTimeout, logger: Logger = Logger(label: "engram-store")) {
        self.database = database
        self.callTimeout = callTimeout
        self.logger = logger
    }

    public init(
        path: String, mapBytes: Int = AppDatabase.defaultMapBytes, callTimeout: Duration = StoreDeadline.defaultTimeout,
        logger: Logger = Logger(label: "engram-store")
    ) throws {
        self.init(database: try AppDatabase(path: path, mapBytes: mapBytes), callTimeout: callTimeout, logger: logger)
    }

    // MARK: plumbing

    /// One store call under the deadline; a failure is logged with SQLite's result code (never
    /// the statement or its arguments).
    private func bounded<T: Sendable>(_ operation: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        do {
            return try await withTimeout(callTimeout, body)
        } catch is TimeoutError {
            logger.error("store call timed out", metadata: ["backend": "sqlite", "operation": "\(operation)", "timeout": "\(callTimeout)"])
            throw StoreError.unavailable("SQLite: \(operation) did not finish within \(callTimeout)")
        } catch let error as StoreError {
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            var metadata: Logger.Metadata = ["backend": "sqlite", "operation": "\(operation)", "error_class": "\(type(of: error))"]
            if let error = error as? DatabaseError { metadata["sqlite_code"] = "\(error.extendedResultCode.rawValue)" }
            logger.error("store call failed", metadata: metadata)
            throw error
        }
    }

    private func reading<T: Sendable>(operation: String = #function, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await bounded(operation) { [pool] in try await pool.read(body) }
    }

    /// A point read (rows by primary key, a bounded number of them) made on the calling thread
    /// through the read-only `AppDatabase.pointReader`, so it costs the microseconds of the
    /// read, not a hop to GRDB's queue and back: on a loaded machine that hop was 0.35 ms of a
    /// 0.4 ms user read, and a custom-LLM proxy turn makes four or five such reads in a row. The
    /// connection takes no lock in WAL mode and fails at once when the database is busy; then,
    /// and on any other failure, the read goes the ordinary way, under the call deadline. Each
    /// such fallback is counted (`engram_store_point_read_fallbacks_total`), and a failure other
    /// than busy is logged: a point reader that always failed would otherwise show only as slowness.
    private func pointReading<T: Sendable>(operation: String = #function, _ body: @escaping @Sendable (Database) throws -> T) async throws
        -> T
    {
        do {
            return try readHere(body)
        } catch {
            let reason = Self.pointReadFallbackReason(error)
            EngramMetrics.pointReadFallback(reason: reason)
            if reason != "busy" {
                var metadata: Logger.Metadata = ["backend": "sqlite", "operation": "\(operation)"]
                if let error = error as? DatabaseError { metadata["sqlite_code"] = "\(error.extendedResultCode.rawValue)" }
                pointReadFailures.failed(error, logger: logger, metadata: metadata)
            }
        }
        return try await reading(operation: operation, body)
    }

    /// How `engram_store_point_read_fallbacks_total` names a point reader's failure: `busy` when
    /// SQLite found the file locked (`SQLITE_BUSY`, `SQLITE_LOCKED`), `error` for anything else.
    static func pointReadFallbackReason(_ error: any Error) -> String {
        guard let error = error as? DatabaseError else { return "error" }
        return error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED ? "busy" : "error"
    }

    private func readHere<T>(_ body: (Database) throws -> T) throws -> T {
        try database.pointReader.read(body)
    }

    private func writing<T: Sendable>(operation: String = #function, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        if let group = GroupCommit.current {
            // Group commit: durable at the group's `syncGroup` (SQLiteMemoryStore+GroupCommit).
            return try await bounded(operation) { [pool] in
                try await pool.writeWithoutTransaction { db in try Self.commitDeferred(db, group: group, body) }
            }
        }
        return try await bounded(operation) { [pool] in try await pool.write(body) }
    }

    func syncWriteAheadLog() async throws {
        try await writingWithoutTransaction { db in try Self.syncWriteAheadLog(db) }
    }

    private func writingWithoutTransaction<T: Sendable>(operation: String = #function, _ body: @escaping @Sendable (Database) throws -> T)
        async throws -> T
    {
        try await bounded(operation) { [pool] in try await pool.writeWithoutTransaction(body) }
    }

    /// Closes the point reader and the pool's connections (the WAL is checkpointed by SQLite as the last one closes).
    /// A statement still running makes GRDB refuse; that is logged, and the process's exit closes them.
    public func close() async {
        for close in [database.pointReader.close, pool.close] {
            do {
                try close()
            } catch {
                logger.warning("SQLite store not closed cleanly", metadata: ["error_class": "\(type(of: error))"])
            }
        }
    }

    public func ping() async throws {
        _ = try await reading { db in try Int.fetchOne(db, sql: "SELECT 1") }
    }

    // MARK: tenants

    public func ensureTenant(_ tenant: TenantRecord) async throws -> TenantRecord {
        try await writing { db in
            try db.execute(
                sql: """
                    INSERT INTO tenants (id, name, pseudonym_secret_wrapped, key_id, consent_mode, allow_sensitive_precall, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING
                    """,
                arguments: [
                    tenant.id, tenant.name, tenant.pseudonymSecretWrapped, tenant.keyID, tenant.consentMode.rawValue, tenant.allowSensitivePrecall,
                    tenant.createdAt.timeIntervalSince1970,
                ])
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM tenants WHERE id = ?", arguments: [tenant.id]) else {
                throw StoreError.notFound("tenant")
            }
            return Self.tenant(row)
        }
    }

    public func tenant(id: String) async throws -> TenantRecord? {
        try await reading { db in
            try Row.fetchOne(db, sql: "SELECT * FROM tenants WHERE id = ?", arguments: [id]).map(Self.tenant)
        }
    }

    public func tenants() async throws -> [TenantRecord] {
        try await reading { db in try Row.fetchAll(db, sql: "SELECT * FROM tenants ORDER BY id").map(Self.tenant) }
    }

    static func tenant(_ row: Row) -> TenantRecord {
        TenantRecord(
            id: row["id"], name: row["name"], pseudonymSecretWrapped: row["pseudonym_secret_wrapped"], keyID: row["key_id"],
            consentMode: ConsentMode(rawValue: row["consent_mode"]) ?? .implicit,
            allowSensitivePrecall: row["allow_sensitive_precall"],
            createdAt: Date(timeIntervalSince1970: row["created_at"]), retentionDays: row["retention_days"],
            trustClientUserIDs: (row["trust_client_user_ids"] as Bool?) ?? false)
    }

    // MARK: users

    public func ensureUser(_ user: UserRecord) async throws -> UserRecord {
        try await writing { db in
            try db.execute(
                sql: """
                    INSERT INTO users (tenant_id, user_key, data_key_wrapped, key_id, consent, consent_at, created_at, last_call_at, memory_version)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0) ON CONFLICT(tenant_id, user_key) DO NOTHING
                    """,
                arguments: [
                    user.tenant, user.user.rawValue, user.dataKeyWrapped, user.keyID, user.consent, user.consentAt?.timeIntervalSince1970,
                    user.createdAt.timeIntervalSince1970, user.lastCallAt?.timeIntervalSince1970,
                ])
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT * FROM users WHERE tenant_id = ? AND user_key = ?", arguments: [user.tenant, user.user.rawValue])
            else {
                throw StoreError.notFound("user")
            }
            return Self.user(row)
        }
    }

    public func user(tenant: String, user: UserKey) async throws -> UserRecord? {
        try await pointReading { db in
            try Row.fetchOne(db, sql: "SELECT * FROM users WHERE tenant_id = ? AND user_key = ?", arguments: [tenant, user.rawValue]).map(Self.user)
        }
    }

    public func setConsent(tenant: String, user: UserKey, granted: Bool, at: Date) async throws {
        try await writing { db in
            try db.execute(
                sql: "UPDATE users SET consent = ?, consent_at = ? WHERE tenant_id = ? AND user_key = ?",
                arguments: [granted, at.timeIntervalSince1970, tenant, user.rawValue])
        }
    }

    static func user(_ row: Row) -> UserRecord {
        UserRecord(
            tenant: row["tenant_id"], user: UserKey(unchecked: row["user_key"]), dataKeyWrapped: row["data_key_wrapped"],
            keyID: row["key_id"], consent: row["consent"],
            consentAt: (row["consent_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
            createdAt: Date(timeIntervalSince1970: row["created_at"]),
            lastCallAt: (row["last_call_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
            memoryVersion: row["memory_version"])
    }

    // MARK: events

    public func isProcessed(tenant: String, idempotencyKey: String) async throws -> Bool {
        try await reading { db in
            try Bool.fetchOne(
                db, sql: "SELECT 1 FROM processed_events WHERE tenant_id = ? AND idempotency_key = ?", arguments: [tenant, idempotencyKey]) ?? false
        }
    }

    public func recordEvent(tenant: String, idempotencyKey: String, eventID: String, eventType: String, user: UserKey?, at: Date) async throws -> Bool
    {
        try await writing { db in
            try db.execute(
                sql: """
                    INSERT INTO processed_events (tenant_id, idempotency_key, event_id, event_type, user_key, processed_at)
                    VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING
                    """,
                arguments: [tenant, idempotencyKey, eventID, eventType, user?.rawValue, at.timeIntervalSince1970])
            return db.changesCount > 0
        }
    }

    public func apply(_ batch: WriteBatch) async throws -> Bool {
        try await writing { db in try Self.write(batch, in: db) }
    }

    public func memoriesNeedingReextraction(tenant: String, user: UserKey?) async throws -> [MemoryRow] {
        try await reading { db in
            let userFilter = user == nil ? "" : "AND user_key = ?"
            var arguments: [any DatabaseValueConvertible] = [tenant]
            if let user { arguments.append(user.rawValue) }
            return try Row.fetchAll(
                db,
                sql:
                    "SELECT \(Self.memoryColumns) FROM memories WHERE tenant_id = ? \(userFilter) AND needs_reextraction = 1 ORDER BY user_key, valid_from, id",
                arguments: StatementArguments(arguments)
            ).map(Self.memory)
        }
    }

    public func replaceExtraction(_ batch: WriteBatch, replacing ids: [String]) async throws -> Bool {
        try await writing { db in
            let done =
                try Bool.fetchOne(
                    db, sql: "SELECT 1 FROM processed_events WHERE tenant_id = ? AND idempotency_key = ?",
                    arguments: [batch.tenant, batch.idempotencyKey]) ?? false
            if done { return false }
            for id in ids {
                guard
                    let replaced = try Row.fetchOne(
                        db,
                        sql:
                            "SELECT valid_to, superseded_by FROM memories WHERE id = ? AND tenant_id = ? AND user_key = ? AND needs_reextraction = 1",
                        arguments: [id, batch.tenant, batch.user.rawValue])
                else { continue }
                // What the replaced memory closed takes over its closing (or is current again).
                try db.execute(
                    sql: "UPDATE memories SET valid_to = ?, superseded_by = ? WHERE tenant_id = ? AND user_key = ? AND superseded_by = ?",
                    arguments: [replaced["valid_to"] as Double?, replaced["superseded_by"] as String?, batch.tenant, batch.user.rawValue, id])
                // Its vectors and term postings go with it (ON DELETE CASCADE).
                try db.execute(
                    sql: "DELETE FROM memories WHERE id = ? AND tenant_id = ? AND user_key = ?", arguments: [id, batch.tenant, batch.user.rawValue])
            }
            return try Self.write(batch, in: db)
        }
    }

    /// The writes of one batch inside an open transaction; false if its idempotency key was already there.
    static func write(_ batch: WriteBatch, in db: Database) throws -> Bool {
        try db.execute(
            sql: """
                INSERT INTO processed_events (tenant_id, idempotency_key, event_id, event_type, user_key, processed_at)
                VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING
                """,
            arguments: [
                batch.tenant, batch.idempotencyKey, batch.eventID, batch.eventType, batch.user.rawValue, batch.processedAt.timeIntervalSince1970,
            ])
        guard db.changesCount > 0 else { return false }
        // Checked in the write's own transaction (SQLite has one writer, so no erasure can land
        // between this check and the commit); a throw rolls the claim back with the rest.
        let erased = try Double.fetchOne(
            db, sql: "SELECT erased_at FROM tombstones WHERE tenant_id = ? AND user_key = ?", arguments: [batch.tenant, batch.user.rawValue])
        if batch.isRefused(byErasureAt: erased.map(Date.init(timeIntervalSince1970:))) { throw StoreError.erased }
        let encoder = JSONEncoder()
        // Cached statements: compiled once per connection, not once per row (an event writes
        // hundreds of term postings).
        let insertMemory = try db.cachedStatement(
            sql: """
                INSERT INTO memories (id, tenant_id, user_key, sector, content, slot, importance, salience0, reinforced_at,
                    sensitive, valid_from, valid_to, superseded_by, status, sources, created_at, last_recalled_at,
                    needs_reextraction, term_count)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
        for row in batch.inserts {
            try insertMemory.execute(
                arguments: [
                    row.id, row.tenant, row.user.rawValue, row.sector.rawValue, row.sealedContent, row.slot, row.importance,
                    row.salience0, row.reinforcedAt.timeIntervalSince1970, row.sensitive, row.validFrom.timeIntervalSince1970,
                    row.validTo?.timeIntervalSince1970, row.supersededBy, row.status.rawValue,
                    String(decoding: try encoder.encode(row.sources), as: UTF8.self), row.createdAt.timeIntervalSince1970,
                    row.lastRecalledAt?.timeIntervalSince1970, row.needsReextraction, row.termCount,
                ])
        }
        let insertVector = try db.cachedStatement(
            sql: "INSERT OR REPLACE INTO memory_vectors (memory_id, embedder, tenant_id, user_key, vector) VALUES (?, ?, ?, ?, ?)")
        for vector in batch.vectors {
            try insertVector.execute(
                arguments: [vector.memoryID, vector.embedder, batch.tenant, batch.user.rawValue, Data(VectorMath.toBytes(vector.vector))])
        }
        let insertPosting = try db.cachedStatement(
            sql: "INSERT OR REPLACE INTO memory_terms (tenant_id, user_key, term, memory_id, frequency) VALUES (?, ?, ?, ?, ?)")
        for posting in batch.postings {
            try insertPosting.execute(
                arguments: [batch.tenant, batch.user.rawValue, posting.term, posting.memoryID, posting.frequency])
        }
        for closing in batch.supersessions {
            try db.execute(
                sql: "UPDATE memories SET valid_to = ?, superseded_by = ? WHERE id = ? AND tenant_id = ? AND user_key = ?",
                arguments: [closing.validTo.timeIntervalSince1970, closing.by, closing.id, batch.tenant, batch.user.rawValue])
        }
        for reinforcement in batch.reinforcements {
            guard
                let raw = try String.fetchOne(
                    db, sql: "SELECT sources FROM memories WHERE id = ? AND tenant_id = ? AND user_key = ?",
                    arguments: [reinforcement.id, batch.tenant, batch.user.rawValue])
            else { continue }
            var sources = MemorySource.decodeList(raw)
            if !sources.contains(reinforcement.source) { sources.append(reinforcement.source) }
            try db.execute(
                sql: "UPDATE memories SET salience0 = ?, reinforced_at = ?, sources = ? WHERE id = ?",
                arguments: [
                    reinforcement.salience0, batch.processedAt.timeIntervalSince1970,
                    String(decoding: try encoder.encode(sources), as: UTF8.self), reinforcement.id,
                ])
        }
        try db.execute(
            sql: """
                UPDATE users SET memory_version = memory_version + 1,
                    last_call_at = MAX(COALESCE(last_call_at, 0), COALESCE(?, 0))
                WHERE tenant_id = ? AND user_key = ?
                """,
            arguments: [batch.callAt?.timeIntervalSince1970, batch.tenant, batch.user.rawValue])
        return true
    }

    // MARK: reads

    public func memories(tenant: String, user: UserKey, includeHistory: Bool) async throws -> [MemoryRow] {
        try await reading { db in
            let filter = includeHistory ? "" : "AND status = 'active' AND valid_to IS NULL"
            return try Row.fetchAll(
                db, sql: "SELECT \(Self.memoryColumns) FROM memories WHERE tenant_id = ? AND user_key = ? \(filter) ORDER BY valid_from, id",
                arguments: [tenant, user.rawValue]
            ).map(Self.memory)
        }
    }

    public func memories(tenant: String, user: UserKey, ids: [String]) async throws -> [MemoryRow] {
        guard !ids.isEmpty else { return [] }
        let read: @Sendable (Database) throws -> [MemoryRow] = { db in
            var arguments: [any DatabaseValueConvertible] = [tenant, user.rawValue]
            arguments.append(contentsOf: ids)
            // One prepared statement per list length, kept by the connection (search asks for up
            // to 100 ids, pre-call pages for 16): compiling each time cost 2 % of the gateway CPU in a profile.
            let statement = try db.cachedStatement(sql: Self.memoriesByIDSQL(count: ids.count))
            return try Row.fetchAll(statement, arguments: StatementArguments(arguments)).map(Self.memory)
        }
        // Search and pre-call read a page at a time; a write's conflict candidates can be many.
        return ids.count <= Self.maxPointReadRows ? try await pointReading(read) : try await reading(read)
    }

    /// The most rows read by id on the calling thread (`pointReading`): search's answer and first hits.
    static let maxPointReadRows = 128

    public func activeMemoryCount(tenant: String, user: UserKey) async throws -> Int {
        try await reading { db in
            try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM memories WHERE tenant_id = ? AND user_key = ? AND status = 'active' AND valid_to IS NULL",
                arguments: [tenant, user.rawValue]) ?? 0
        }
    }

    public func memoryHeads(tenant: String, user: UserKey) async throws -> [MemoryHead] {
        try await reading { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT id, sector, slot, importance, salience0, reinforced_at, valid_from, sensitive,
                        instr(sources, '"kind":"summary"') > 0 AS is_summary
                    FROM memories WHERE tenant_id = ? AND user_key = ? AND status = 'active' AND valid_to IS NULL
                    """,
                arguments: [tenant, user.rawValue]
            ).map { row in
                MemoryHead(
                    id: row["id"], sector: Sector(rawValue: row["sector"]) ?? .episodic, slot: row["slot"], importance: row["importance"],
                    salience0: row["salience0"], reinforcedAt: Date(timeIntervalSince1970: row["reinforced_at"]),
                    validFrom: Date(timeIntervalSince1970: row["valid_from"]), sensitive: row["sensitive"], isSummary: row["is_summary"])
            }
        }
    }

    public func vectors(tenant: String, user: UserKey, embedder: String) async throws -> (ids: [String], flat: [Float]) {
        try await reading { db in
            let rows = try Row.fetchCursor(
                db,
                sql: """
                    SELECT v.memory_id, v.vector FROM memory_vectors v JOIN memories m ON m.id = v.memory_id
                    WHERE v.tenant_id = ? AND v.user_key = ? AND v.embedder = ? AND m.status = 'active' AND m.valid_to IS NULL
                    """,
                arguments: [tenant, user.rawValue, embedder])
            var ids: [String] = []
            var flat: [Float] = []
            while let row = try rows.next() {
                ids.append(row["memory_id"])
                let blob: Data = row["vector"]
                flat.append(contentsOf: VectorMath.fromBytes([UInt8](blob)))
            }
            return (ids, flat)
        }
    }

    public func postings(tenant: String, user: UserKey, terms: [Data]) async throws -> [TermPosting] {
        guard !terms.isEmpty else { return [] }
        return try await reading { db in
            let marks = Array(repeating: "?", count: terms.count).joined(separator: ",")
            var arguments: [any DatabaseValueConvertible] = [tenant, user.rawValue]
            arguments.append(contentsOf: terms)
            return try Row.fetchAll(
                db,
                sql: """
                    SELECT t.term, t.memory_id, t.frequency, m.term_count FROM memory_terms t JOIN memories m ON m.id = t.memory_id
                    WHERE t.tenant_id = ? AND t.user_key = ? AND t.term IN (\(marks)) AND m.status = 'active' AND m.valid_to IS NULL
                    """,
                arguments: StatementArguments(arguments)
            ).map { TermPosting(term: $0["term"], memoryID: $0["memory_id"], frequency: $0["frequency"], documentLength: $0["term_count"]) }
        }
    }

    public func termStatistics(tenant: String, user: UserKey) async throws -> TermStatistics {
        try await reading { db in
            let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT COUNT(*) AS n, AVG(term_count) AS avg FROM memories
                    WHERE tenant_id = ? AND user_key = ? AND status = 'active' AND valid_to IS NULL
                    """,
                arguments: [tenant, user.rawValue])
            return TermStatistics(documentCount: row?["n"] ?? 0, averageLength: row?["avg"] ?? 0)
        }
    }

    // MARK: maintenance

    public func reinforce(tenant: String, _ updates: [(id: String, salience0: Double, at: Date)]) async throws {
        guard !updates.isEmpty else { return }
        try await writing { db in
            for update in updates {
                try db.execute(
                    sql:
                        "UPDATE memories SET salience0 = ?, reinforced_at = ?, last_recalled_at = ? WHERE id = ? AND tenant_id = ? AND status = 'active'",
                    arguments: [update.salience0, update.at.timeIntervalSince1970, update.at.timeIntervalSince1970, update.id, tenant])
            }
        }
    }

    public func archive(tenant: String, ids: [String]) async throws {
        guard !ids.isEmpty else { return }
        try await writing { db in
            for id in ids {
                try db.execute(
                    sql: """
                        UPDATE users SET memory_version = memory_version + 1 WHERE (tenant_id, user_key) IN
                            (SELECT tenant_id, user_key FROM memories WHERE id = ? AND tenant_id = ? AND status = 'active')
                        """,
                    arguments: [id, tenant])
                try db.execute(
                    sql: "UPDATE memories SET status = 'archived' WHERE id = ? AND tenant_id = ? AND status = 'active'", arguments: [id, tenant])
            }
        }
    }

    public func sweepCandidates(tenant: String, limit: Int, after: String?) async throws -> [MemoryRow] {
        try await reading { db in
            try Row.fetchAll(
                db, sql: "SELECT \(Self.memoryColumns) FROM memories WHERE tenant_id = ? AND status = 'active' AND id > ? ORDER BY id LIMIT ?",
                arguments: [tenant, after ?? "", limit]
            ).map(Self.memory)
        }
    }

    public func setRetention(tenant: String, days: Int?) async throws {
        try await writing { db in try db.execute(sql: "UPDATE tenants SET retention_days = ? WHERE id = ?", arguments: [days, tenant]) }
    }

    public func deleteMemories(tenant: String, olderThan cutoff: Date) async throws -> Int {
        try await writing { db in
            try db.execute(
                sql:
                    "UPDATE users SET memory_version = memory_version + 1 WHERE tenant_id = ? AND user_key IN (SELECT user_key FROM memories WHERE tenant_id = ? AND valid_from < ?)",
                arguments: [tenant, tenant, cutoff.timeIntervalSince1970])
            try db.execute(sql: "DELETE FROM memories WHERE tenant_id = ? AND valid_from < ?", arguments: [tenant, cutoff.timeIntervalSince1970])
            return db.changesCount
        }
    }

    public func memoryCountsByStatus() async throws -> [String: Int] {
        try await reading { db in
            var counts: [String: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT status, COUNT(*) AS n FROM memories GROUP BY status") { counts[row["status"]] = row["n"] }
            return counts
        }
    }

    public func memory(tenant: String, id: String) async throws -> MemoryRow? {
        try await reading { db in
            try Row.fetchOne(db, sql: "SELECT \(Self.memoryColumns) FROM memories WHERE tenant_id = ? AND id = ?", arguments: [tenant, id]).map(
                Self.memory)
        }
    }

    public func replaceMemory(_ row: MemoryRow, vectors: [VectorRow], postings: [TermPosting]) async throws {
        try await writing { db in
            try db.execute(
                sql:
                    "UPDATE memories SET content = ?, sensitive = ?, status = ?, term_count = ?, slot = ?, sector = ? WHERE id = ? AND tenant_id = ? AND user_key = ?",
                arguments: [
                    row.sealedContent, row.sensitive, row.status.rawValue, row.termCount, row.slot, row.sector.rawValue, row.id, row.tenant,
                    row.user.rawValue,
                ])
            guard db.changesCount > 0 else { throw StoreError.notFound("memory") }
            try db.execute(sql: "DELETE FROM memory_terms WHERE memory_id = ?", arguments: [row.id])
            try db.execute(sql: "DELETE FROM memory_vectors WHERE memory_id = ?", arguments: [row.id])
            for vector in vectors {
                try db.execute(
                    sql: "INSERT INTO memory_vectors (memory_id, embedder, tenant_id, user_key, vector) VALUES (?, ?, ?, ?, ?)",
                    arguments: [row.id, vector.embedder, row.tenant, row.user.rawValue, Data(VectorMath.toBytes(vector.vector))])
            }
            for posting in postings {
                try db.execute(
                    sql: "INSERT INTO memory_terms (tenant_id, user_key, term, memory_id, frequency) VALUES (?, ?, ?, ?, ?)",
                    arguments: [row.tenant, row.user.rawValue, posting.term, row.id, posting.frequency])
            }
            try db.execute(
                sql: "UPDATE users SET memory_version = memory_version + 1 WHERE tenant_id = ? AND user_key = ?",
                arguments: [row.tenant, row.user.rawValue])
        }
    }

    public func deleteMemory(tenant: String, id: String) async throws -> Bool {
        try await writing { db in
            try db.execute(
                sql:
                    "UPDATE users SET memory_version = memory_version + 1 WHERE (tenant_id, user_key) IN (SELECT tenant_id, user_key FROM memories WHERE id = ? AND tenant_id = ?)",
                arguments: [id, tenant])
            try db.execute(sql: "DELETE FROM memories WHERE id = ? AND tenant_id = ?", arguments: [id, tenant])
            return db.changesCount > 0
        }
    }

    public func setTenantConsentMode(tenant: String, mode: ConsentMode, allowSensitivePrecall: Bool) async throws {
        try await writing { db in
            try db.execute(
                sql: "UPDATE tenants SET consent_mode = ?, allow_sensitive_precall = ? WHERE id = ?",
                arguments: [mode.rawValue, allowSensitivePrecall, tenant])
        }
    }

    public func setTenantWebhookSecrets(tenant: String, current: Data?, previous: Data?, keyID: String) async throws {
        try await writing { db in
            // One key id covers the tenant's wrapped secrets: the pseudonym secret and these.
            try db.execute(
                sql: "UPDATE tenants SET webhook_secret_wrapped = ?, webhook_secret_previous_wrapped = ? WHERE id = ? AND key_id = ?",
                arguments: [current, previous, tenant, keyID])
            guard db.changesCount > 0 else { throw StoreError.corrupt("tenant secrets are wrapped by another master key; rotate first") }
        }
    }

    public func tenantWebhookSecrets(tenant: String) async throws -> (current: Data?, previous: Data?, keyID: String)? {
        try await reading { db in
            try Row.fetchOne(
                db, sql: "SELECT webhook_secret_wrapped, webhook_secret_previous_wrapped, key_id FROM tenants WHERE id = ?", arguments: [tenant]
            )
            .map { ($0["webhook_secret_wrapped"], $0["webhook_secret_previous_wrapped"], $0["key_id"]) }
        }
    }

    public func insertAPIKey(_ key: APIKeyRecord) async throws {
        try await writing { db in
            try db.execute(
                sql: "INSERT INTO api_keys (id, tenant_id, scope, key_hash, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [
                    key.id, key.tenant, key.scope.rawValue, key.keyHash, key.createdAt.timeIntervalSince1970, key.revokedAt?.timeIntervalSince1970,
                ])
        }
    }

    public func apiKey(hash: Data) async throws -> APIKeyRecord? {
        try await reading { db in try Row.fetchOne(db, sql: "SELECT * FROM api_keys WHERE key_hash = ?", arguments: [hash]).map(Self.apiKey) }
    }

    public func apiKeys(tenant: String) async throws -> [APIKeyRecord] {
        try await reading { db in
            try Row.fetchAll(db, sql: "SELECT * FROM api_keys WHERE tenant_id = ? ORDER BY created_at", arguments: [tenant]).map(Self.apiKey)
        }
    }

    public func revokeAPIKey(tenant: String, id: String, at: Date) async throws -> Bool {
        try await writing { db in
            try db.execute(
                sql: "UPDATE api_keys SET revoked_at = ? WHERE tenant_id = ? AND id = ? AND revoked_at IS NULL",
                arguments: [at.timeIntervalSince1970, tenant, id])
            return db.changesCount > 0
        }
    }

    static func apiKey(_ row: Row) -> APIKeyRecord {
        APIKeyRecord(
            id: row["id"], tenant: row["tenant_id"], scope: APIKeyRecord.Scope(rawValue: row["scope"]) ?? .tool, keyHash: row["key_hash"],
            createdAt: Date(timeIntervalSince1970: row["created_at"]),
            revokedAt: (row["revoked_at"] as Double?).map(Date.init(timeIntervalSince1970:)))
    }

    public func audit(_ entry: AuditEntry) async throws {
        try await writing { db in
            try db.execute(
                sql: "INSERT INTO audit_log (id, tenant_id, actor, action, user_key, memory_id, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                arguments: [entry.id, entry.tenant, entry.actor, entry.action, entry.user, entry.memoryID, entry.at.timeIntervalSince1970])
        }
    }

    public func auditEntries(tenant: String, limit: Int) async throws -> [AuditEntry] {
        try await reading { db in
            try Row.fetchAll(db, sql: "SELECT * FROM audit_log WHERE tenant_id = ? ORDER BY at DESC, id DESC LIMIT ?", arguments: [tenant, limit]).map
            { row in
                var entry = AuditEntry(
                    tenant: row["tenant_id"], actor: row["actor"], action: row["action"], user: (row["user_key"] as String?).flatMap(UserKey.init),
                    memoryID: row["memory_id"], at: Date(timeIntervalSince1970: row["at"]))
                entry.id = row["id"]
                return entry
            }
        }
    }

    public func wrappedSecrets() async throws -> [WrappedSecret] {
        try await pool.read { db in  // every user (key rotation): no per-call deadline
            var out: [WrappedSecret] = []
            for row in try Row.fetchAll(db, sql: "SELECT tenant_id, user_key, data_key_wrapped, key_id FROM users") {
                out.append(
                    WrappedSecret(
                        kind: .userDataKey, tenant: row["tenant_id"], user: UserKey(unchecked: row["user_key"]), wrapped: row["data_key_wrapped"],
                        keyID: row["key_id"]))
            }
            for row in try Row.fetchAll(
                db, sql: "SELECT id, pseudonym_secret_wrapped, webhook_secret_wrapped, webhook_secret_previous_wrapped, key_id FROM tenants")
            {
                out.append(
                    WrappedSecret(
                        kind: .tenantPseudonym, tenant: row["id"], user: nil, wrapped: row["pseudonym_secret_wrapped"], keyID: row["key_id"]))
                if let w: Data = row["webhook_secret_wrapped"] {
                    out.append(WrappedSecret(kind: .tenantWebhook, tenant: row["id"], user: nil, wrapped: w, keyID: row["key_id"]))
                }
                if let w: Data = row["webhook_secret_previous_wrapped"] {
                    out.append(WrappedSecret(kind: .tenantWebhookPrevious, tenant: row["id"], user: nil, wrapped: w, keyID: row["key_id"]))
                }
            }
            return out
        }
    }

    public func replaceWrappedSecrets(_ secrets: [WrappedSecret]) async throws {
        try await pool.write { db in  // every user in one transaction: no per-call deadline
            for secret in secrets {
                switch secret.kind {
                case .userDataKey:
                    try db.execute(
                        sql: "UPDATE users SET data_key_wrapped = ?, key_id = ? WHERE tenant_id = ? AND user_key = ?",
                        arguments: [secret.wrapped, secret.keyID, secret.tenant, secret.user?.rawValue])
                case .tenantPseudonym:
                    try db.execute(
                        sql: "UPDATE tenants SET pseudonym_secret_wrapped = ?, key_id = ? WHERE id = ?",
                        arguments: [secret.wrapped, secret.keyID, secret.tenant])
                case .tenantWebhook:
                    try db.execute(sql: "UPDATE tenants SET webhook_secret_wrapped = ? WHERE id = ?", arguments: [secret.wrapped, secret.tenant])
                case .tenantWebhookPrevious:
                    try db.execute(
                        sql: "UPDATE tenants SET webhook_secret_previous_wrapped = ? WHERE id = ?", arguments: [secret.wrapped, secret.tenant])
                }
            }
        }
        try await writingWithoutTransaction { db in _ = try Row.fetchAll(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
    }

    public func tombstone(tenant: String, user: UserKey) async throws -> Date? {
        try await reading { db in
            try Double.fetchOne(db, sql: "SELECT erased_at FROM tombstones WHERE tenant_id = ? AND user_key = ?", arguments: [tenant, user.rawValue])
                .map(Date.init(timeIntervalSince1970:))
        }
    }

    public func erase(tenant: String, user: UserKey, at: Date) async throws {
        try await writing { db in
            // The key first: even a row missed below is unreadable once it is gone.
            try db.execute(
                sql: "UPDATE users SET data_key_wrapped = zeroblob(length(data_key_wrapped)) WHERE tenant_id = ? AND user_key = ?",
                arguments: [tenant, user.rawValue])
            try db.execute(sql: "DELETE FROM memory_terms WHERE tenant_id = ? AND user_key = ?", arguments: [tenant, user.rawValue])
            try db.execute(sql: "DELETE FROM memory_vectors WHERE tenant_id = ? AND user_key = ?", arguments: [tenant, user.rawValue])
            try db.execute(sql: "DELETE FROM memories WHERE tenant_id = ? AND user_key = ?", arguments: [tenant, user.rawValue])
            try db.execute(sql: "DELETE FROM users WHERE tenant_id = ? AND user_key = ?", arguments: [tenant, user.rawValue])
            try db.execute(
                sql:
                    "INSERT INTO tombstones (tenant_id, user_key, erased_at) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET erased_at = excluded.erased_at",
                arguments: [tenant, user.rawValue, at.timeIntervalSince1970])
        }
        // Checkpoint so the WAL does not keep the old pages either.
        try await writingWithoutTransaction { db in _ = try Row.fetchAll(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
    }

    /// Memories by id within one user. The unary `+` keeps SQLite from reading them through
    /// `memories_by_user`: without statistics its planner prefers that index for an `IN` list,
    /// which walks every memory of the user (20,000 rows for a heavy caller, per search) instead
    /// of looking up each id in the primary key. `SQLiteQueryPlanTests` holds it to the key.
    static func memoriesByIDSQL(count: Int) -> String {
        let marks = Array(repeating: "?", count: count).joined(separator: ",")
        return "SELECT \(memoryColumns) FROM memories WHERE +tenant_id = ? AND +user_key = ? AND id IN (\(marks))"
    }

    /// The columns `memory(_:)` decodes, in its order: every memory read selects exactly these,
    /// so a row is decoded by position (GRDB's lookup by name lowercases each name, per row).
    static let memoryColumns = """
        id, tenant_id, user_key, sector, content, slot, importance, salience0, reinforced_at, sensitive, valid_from, valid_to, \
        superseded_by, status, sources, created_at, last_recalled_at, needs_reextraction, term_count
        """

    static let memoryColumnNames = memoryColumns.split(separator: ",").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
    static let memoryColumnPositions = Array(memoryColumnNames.indices)

    /// A memory row: by position when it is a row of `SELECT \(memoryColumns)` (the reads of
    /// this store), else by the positions of those names (`StoreCopy` selects `rowid AS copy_rowid, *`).
    static func memory(_ row: Row) -> MemoryRow {
        let at: [Int]
        if row.count == memoryColumnNames.count, row.columnNames.first == "id" {
            at = memoryColumnPositions
        } else {
            let names = Array(row.columnNames)
            at = memoryColumnNames.map { names.firstIndex(of: $0) ?? 0 }
        }
        let rawSources: String = row[at[14]]
        return MemoryRow(
            id: row[at[0]], tenant: row[at[1]], user: UserKey(unchecked: row[at[2]]),
            sector: Sector(rawValue: row[at[3]]) ?? .episodic, sealedContent: row[at[4]], slot: row[at[5]],
            importance: row[at[6]], salience0: row[at[7]],
            reinforcedAt: Date(timeIntervalSince1970: row[at[8]]), sensitive: row[at[9]],
            validFrom: Date(timeIntervalSince1970: row[at[10]]),
            validTo: (row[at[11]] as Double?).map(Date.init(timeIntervalSince1970:)), supersededBy: row[at[12]],
            status: MemoryStatus(rawValue: row[at[13]]) ?? .active,
            sources: MemorySource.decodeList(rawSources),
            createdAt: Date(timeIntervalSince1970: row[at[15]]),
            lastRecalledAt: (row[at[16]] as Double?).map(Date.init(timeIntervalSince1970:)),
            needsReextraction: row[at[17]], termCount: row[at[18]])
    }
}

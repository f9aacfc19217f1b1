import EngramCore
import Foundation
import Logging
import NIOCore
import PostgresNIO
import ServiceLifecycle

/// The scale-out backend: PostgreSQL with pgvector, shared by any number of gateways and workers.
///
/// The same contract as `SQLiteMemoryStore`: sealed content only (the crypto is in `MemoryVault`),
/// every write of an event in one transaction with its idempotency key, whose primary key makes a
/// second worker's copy of the same event a no-op. Open it with `connect`, which starts the
/// connection pool and applies the migrations; `close` stops the pool and waits until its
/// connections are closed. As a `Service` (listed before its users in a `ServiceGroup`, so it
/// stops after them) it closes the pool at graceful shutdown.
///
/// Every call has a deadline (`callTimeout`): a call that has not finished by then fails with
/// `StoreError.unavailable` and a log line naming the operation, so a stalled connection is an
/// error and a retry, never silence.
public struct PostgresMemoryStore: MemoryStore, Service {
    public let client: PostgresClient
    public let settings: PostgresSettings
    public let callTimeout: Duration
    private let runner: PostgresClientRunner
    private let logger: Logger

    public static func connect(
        _ settings: PostgresSettings, embeddingDimension: Int? = nil, callTimeout: Duration = StoreDeadline.defaultTimeout,
        startTimeout: Duration = .seconds(20), logger: Logger
    ) async throws -> PostgresMemoryStore {
        var adjusted = logger
        // postgres-nio logs queries at debug with their binds: keep it above that.
        if adjusted.logLevel < .info { adjusted.logLevel = .info }
        let quiet = adjusted
        let client = PostgresClient(configuration: settings.clientConfiguration, backgroundLogger: quiet)
        let runner = await PostgresClientRunner(client)
        let store = PostgresMemoryStore(client: client, settings: settings, callTimeout: callTimeout, runner: runner, logger: quiet)
        do {
            // An unreachable server would otherwise be retried for ever: fail the start clearly.
            _ = try await withTimeout(startTimeout) {
                try await PostgresSchema.migrate(client, embeddingDimension: embeddingDimension, logger: quiet)
            }
        } catch is TimeoutError {
            await runner.close()
            throw StoreError.unavailable("PostgreSQL at \(settings.redacted) did not answer within \(startTimeout)")
        } catch {
            await runner.close()
            throw StoreError.unavailable("PostgreSQL at \(settings.redacted): \(PostgresMemoryStore.describe(error))")
        }
        return store
    }

    /// Stops the pool and returns once its connections are closed. The store cannot be used afterwards.
    public func close() async {
        if await !runner.close() {
            logger.warning("PostgreSQL pool still closing after 10 s; the store is closed, its connections close in the background")
        }
    }

    /// Holds the pool open until graceful shutdown, then closes it.
    public func run() async throws {
        try? await gracefulShutdown()
        await close()
    }

    /// A PostgreSQL error without the query text or its binds (which may hold sealed content).
    static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] { return "\(error.code): \(message)" }
            return "\(error.code)"
        }
        return String(describing: type(of: error))
    }

    /// Log metadata of a failed call: the error class and, from PostgreSQL, the error code and
    /// SQLSTATE. Never the message (it can quote a value), the query or its binds.
    static func errorMetadata(_ error: any Error) -> Logger.Metadata {
        var metadata: Logger.Metadata = ["error_class": "\(type(of: error))"]
        if let error = error as? PSQLError {
            metadata["psql_code"] = "\(error.code)"
            if let state = error.serverInfo?[.sqlState] { metadata["sqlstate"] = "\(state)" }
        }
        return metadata
    }

    // MARK: plumbing

    /// One store call under the deadline; a failure is logged with its PostgreSQL code.
    private func bounded<T: Sendable>(_ operation: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        do {
            return try await withTimeout(callTimeout, body)
        } catch is TimeoutError {
            logger.error("store call timed out", metadata: ["backend": "postgres", "operation": "\(operation)", "timeout": "\(callTimeout)"])
            throw StoreError.unavailable("PostgreSQL: \(operation) did not finish within \(callTimeout)")
        } catch let error as StoreError {
            throw error  // the store's own answer (not found, erased...), not a failure of the backend
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            var metadata = Self.errorMetadata(error)
            metadata["backend"] = "postgres"
            metadata["operation"] = "\(operation)"
            logger.error("store call failed", metadata: metadata)
            throw error
        }
    }

    private func rows(_ query: PostgresQuery, operation: String = #function) async throws -> [PostgresRandomAccessRow] {
        try await bounded(operation) { try await self.rowsWithoutDeadline(query) }
    }

    /// For whole-database maintenance only (key rotation, vacuum), whose length grows with the data.
    private func rowsWithoutDeadline(_ query: PostgresQuery) async throws -> [PostgresRandomAccessRow] {
        try await client.withConnection { connection in try await connection.rows(query, logger: logger) }
    }

    /// A transaction under the deadline, whose own errors (a `StoreError` from inside it) come out unwrapped.
    func transaction<T: Sendable>(operation: String = #function, _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T
    {
        try await bounded(operation) { try await self.transactionWithoutDeadline(body) }
    }

    /// For whole-database work only (`StoreCopy`, key rotation), whose length grows with the data.
    func transactionWithoutDeadline<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        do {
            return try await client.withTransaction(logger: logger) { connection in try await body(connection) }
        } catch let error as PostgresTransactionError {
            throw error.closureError ?? error.beginError ?? error.commitError ?? error
        }
    }

    public func ping() async throws {
        _ = try await rows("SELECT 1")
    }

    // MARK: tenants

    static let tenantColumns = """
        id, name, pseudonym_secret_wrapped, key_id, consent_mode, allow_sensitive_precall, created_at, retention_days, trust_client_user_ids
        """

    public func ensureTenant(_ tenant: TenantRecord) async throws -> TenantRecord {
        try await transaction { connection in
            try await connection.query(
                """
                INSERT INTO tenants (id, name, pseudonym_secret_wrapped, key_id, consent_mode, allow_sensitive_precall, created_at)
                VALUES (\(tenant.id), \(tenant.name), \(tenant.pseudonymSecretWrapped), \(tenant.keyID), \(tenant.consentMode.rawValue),
                    \(tenant.allowSensitivePrecall), \(tenant.createdAt))
                ON CONFLICT (id) DO NOTHING
                """, logger: logger)
            guard
                let row = try await connection.rows(
                    "SELECT \(unescaped: Self.tenantColumns) FROM tenants WHERE id = \(tenant.id)", logger: logger
                ).first
            else { throw StoreError.notFound("tenant") }
            return try Self.tenant(row)
        }
    }

    public func tenant(id: String) async throws -> TenantRecord? {
        try await rows("SELECT \(unescaped: Self.tenantColumns) FROM tenants WHERE id = \(id)").first.map(Self.tenant)
    }

    public func tenants() async throws -> [TenantRecord] {
        try await rows("SELECT \(unescaped: Self.tenantColumns) FROM tenants ORDER BY id").map(Self.tenant)
    }

    static func tenant(_ row: PostgresRandomAccessRow) throws -> TenantRecord {
        TenantRecord(
            id: try row["id"].decode(String.self), name: try row["name"].decode(String.self),
            pseudonymSecretWrapped: try row["pseudonym_secret_wrapped"].decode(Data.self), keyID: try row["key_id"].decode(String.self),
            consentMode: ConsentMode(rawValue: try row["consent_mode"].decode(String.self)) ?? .implicit,
            allowSensitivePrecall: try row["allow_sensitive_precall"].decode(Bool.self),
            createdAt: try row["created_at"].decode(Date.self), retentionDays: try row["retention_days"].decode(Int?.self),
            trustClientUserIDs: try row["trust_client_user_ids"].decode(Bool.self))
    }

    // MARK: users

    static let userColumns = """
        tenant_id, user_key, data_key_wrapped, key_id, consent, consent_at, created_at, last_call_at, memory_version
        """

    public func ensureUser(_ user: UserRecord) async throws -> UserRecord {
        try await transaction { connection in
            try await connection.query(
                """
                INSERT INTO users (tenant_id, user_key, data_key_wrapped, key_id, consent, consent_at, created_at, last_call_at, memory_version)
                VALUES (\(user.tenant), \(user.user.rawValue), \(user.dataKeyWrapped), \(user.keyID), \(user.consent), \(user.consentAt),
                    \(user.createdAt), \(user.lastCallAt), 0)
                ON CONFLICT (tenant_id, user_key) DO NOTHING
                """, logger: logger)
            guard
                let row = try await connection.rows(
                    "SELECT \(unescaped: Self.userColumns) FROM users WHERE tenant_id = \(user.tenant) AND user_key = \(user.user.rawValue)",
                    logger: logger
                ).first
            else { throw StoreError.notFound("user") }
            return try Self.user(row)
        }
    }

    public func user(tenant: String, user: UserKey) async throws -> UserRecord? {
        try await rows("SELECT \(unescaped: Self.userColumns) FROM users WHERE tenant_id = \(tenant) AND user_key = \(user.rawValue)")
            .first.map(Self.user)
    }

    public func setConsent(tenant: String, user: UserKey, granted: Bool, at: Date) async throws {
        _ = try await rows("UPDATE users SET consent = \(granted), consent_at = \(at) WHERE tenant_id = \(tenant) AND user_key = \(user.rawValue)")
    }

    static func user(_ row: PostgresRandomAccessRow) throws -> UserRecord {
        UserRecord(
            tenant: try row["tenant_id"].decode(String.self), user: UserKey(unchecked: try row["user_key"].decode(String.self)),
            dataKeyWrapped: try row["data_key_wrapped"].decode(Data.self), keyID: try row["key_id"].decode(String.self),
            consent: try row["consent"].decode(Bool?.self), consentAt: try row["consent_at"].decode(Date?.self),
            createdAt: try row["created_at"].decode(Date.self), lastCallAt: try row["last_call_at"].decode(Date?.self),
            memoryVersion: try row["memory_version"].decode(Int64.self))
    }

    // MARK: events

    public func isProcessed(tenant: String, idempotencyKey: String) async throws -> Bool {
        !(try await rows("SELECT 1 FROM processed_events WHERE tenant_id = \(tenant) AND idempotency_key = \(idempotencyKey)").isEmpty)
    }

    public func recordEvent(tenant: String, idempotencyKey: String, eventID: String, eventType: String, user: UserKey?, at: Date) async throws -> Bool
    {
        !(try await rows(
            """
            INSERT INTO processed_events (tenant_id, idempotency_key, event_id, event_type, user_key, processed_at)
            VALUES (\(tenant), \(idempotencyKey), \(eventID), \(eventType), \(user?.rawValue), \(at))
            ON CONFLICT DO NOTHING RETURNING 1
            """
        ).isEmpty)
    }

    public func apply(_ batch: WriteBatch) async throws -> Bool {
        let memoriesJSON = try Self.memoriesJSON(batch.inserts)
        return try await transaction { connection in
            guard try await Self.claim(batch, on: connection, logger: logger) else { return false }
            try await Self.refuseIfErased(batch, on: connection, logger: logger)
            try await Self.write(batch, memoriesJSON: memoriesJSON, on: connection, logger: logger)
            return true
        }
    }

    public func memoriesNeedingReextraction(tenant: String, user: UserKey?) async throws -> [MemoryRow] {
        try await rows(
            """
            SELECT \(unescaped: Self.memoryColumns) FROM memories
            WHERE tenant_id = \(tenant) AND (\(user?.rawValue)::text IS NULL OR user_key = \(user?.rawValue)) AND needs_reextraction
            ORDER BY user_key, valid_from, id
            """
        ).map(Self.memory)
    }

    public func replaceExtraction(_ batch: WriteBatch, replacing ids: [String]) async throws -> Bool {
        let memoriesJSON = try Self.memoriesJSON(batch.inserts)
        return try await transaction { connection in
            guard try await Self.claim(batch, on: connection, logger: logger) else { return false }
            try await Self.refuseIfErased(batch, on: connection, logger: logger)
            for id in ids {
                let replaced = try await connection.rows(
                    """
                    SELECT valid_to, superseded_by FROM memories
                    WHERE id = \(id) AND tenant_id = \(batch.tenant) AND user_key = \(batch.user.rawValue) AND needs_reextraction
                    FOR UPDATE
                    """, logger: logger)
                guard let row = replaced.first else { continue }
                // What the replaced memory closed takes over its closing (or is current again).
                try await connection.query(
                    """
                    UPDATE memories SET valid_to = \(try row["valid_to"].decode(Date?.self)), superseded_by = \(try row["superseded_by"].decode(String?.self))
                    WHERE tenant_id = \(batch.tenant) AND user_key = \(batch.user.rawValue) AND superseded_by = \(id)
                    """, logger: logger)
                // Its vectors and term postings go with it (ON DELETE CASCADE).
                try await connection.query(
                    "DELETE FROM memories WHERE id = \(id) AND tenant_id = \(batch.tenant) AND user_key = \(batch.user.rawValue)", logger: logger)
            }
            try await Self.write(batch, memoriesJSON: memoriesJSON, on: connection, logger: logger)
            return true
        }
    }

    /// Records the batch's idempotency key; false if it was there. The primary key is the
    /// idempotency guarantee: a second worker holding the same event waits here for the first
    /// one's commit, then inserts nothing and writes nothing.
    static func claim(_ batch: WriteBatch, on connection: PostgresConnection, logger: Logger) async throws -> Bool {
        !(try await connection.rows(
            """
            INSERT INTO processed_events (tenant_id, idempotency_key, event_id, event_type, user_key, processed_at)
            VALUES (\(batch.tenant), \(batch.idempotencyKey), \(batch.eventID), \(batch.eventType), \(batch.user.rawValue), \(batch.processedAt))
            ON CONFLICT DO NOTHING RETURNING 1
            """, logger: logger
        ).isEmpty)
    }

    /// Throws `StoreError.erased` when the user was erased after the writer decided to write (a
    /// tombstone other than `batch.erasedAt`). Inside the write's transaction, after the user's
    /// row is locked the way `erase` locks it first: an erasure that committed before is seen
    /// here, and one that comes after waits for this write and then removes it with the rest.
    /// The lock is FOR NO KEY UPDATE, the one the write's own `UPDATE users` takes: two writes of
    /// one user queue here rather than deadlock there.
    static func refuseIfErased(_ batch: WriteBatch, on connection: PostgresConnection, logger: Logger) async throws {
        _ = try await connection.rows(
            "SELECT 1 FROM users WHERE tenant_id = \(batch.tenant) AND user_key = \(batch.user.rawValue) FOR NO KEY UPDATE", logger: logger)
        let erased = try await connection.rows(
            "SELECT erased_at FROM tombstones WHERE tenant_id = \(batch.tenant) AND user_key = \(batch.user.rawValue)", logger: logger
        ).first.map { try $0["erased_at"].decode(Date.self) }
        if batch.isRefused(byErasureAt: erased) { throw StoreError.erased }
    }

    /// The writes of a claimed batch, inside the caller's transaction.
    static func write(_ batch: WriteBatch, memoriesJSON: String?, on connection: PostgresConnection, logger: Logger) async throws {
        if let memoriesJSON { try await insertMemories(memoriesJSON, on: connection, logger: logger) }
        try await insertVectors(batch.vectors, tenant: batch.tenant, user: batch.user, on: connection, logger: logger)
        try await insertPostings(batch.postings, tenant: batch.tenant, user: batch.user, on: connection, logger: logger)
        for closing in batch.supersessions {
            try await connection.query(
                """
                UPDATE memories SET valid_to = \(closing.validTo), superseded_by = \(closing.by)
                WHERE id = \(closing.id) AND tenant_id = \(batch.tenant) AND user_key = \(batch.user.rawValue)
                """, logger: logger)
        }
        for reinforcement in batch.reinforcements {
            let source = String(decoding: try JSONEncoder().encode(reinforcement.source), as: UTF8.self)
            try await connection.query(
                """
                UPDATE memories SET salience0 = \(reinforcement.salience0), reinforced_at = \(batch.processedAt),
                    sources = CASE WHEN EXISTS (SELECT 1 FROM jsonb_array_elements(sources) AS e WHERE e = \(source)::jsonb)
                        THEN sources ELSE sources || jsonb_build_array(\(source)::jsonb) END
                WHERE id = \(reinforcement.id) AND tenant_id = \(batch.tenant) AND user_key = \(batch.user.rawValue)
                """, logger: logger)
        }
        try await connection.query(
            """
            UPDATE users SET memory_version = memory_version + 1, last_call_at = GREATEST(last_call_at, \(batch.callAt))
            WHERE tenant_id = \(batch.tenant) AND user_key = \(batch.user.rawValue)
            """, logger: logger)
    }

    /// Memory rows travel as one JSON array (content in base64, times as Unix seconds) and are
    /// expanded by `jsonb_to_recordset`: one round trip for any number of rows, NULLs included.
    private struct MemoryRecordJSON: Encodable {
        var id, tenant_id, user_key, sector: String
        var content: Data
        var slot: String?
        var importance, salience0, reinforced_at: Double
        var sensitive: Bool
        var valid_from: Double
        var valid_to: Double?
        var superseded_by: String?
        var status: String
        var sources: [MemorySource]
        var created_at: Double
        var last_recalled_at: Double?
        var needs_reextraction: Bool
        var term_count: Int
    }

    static func memoriesJSON(_ rows: [MemoryRow]) throws -> String? {
        guard !rows.isEmpty else { return nil }
        let records = rows.map { row in
            MemoryRecordJSON(
                id: row.id, tenant_id: row.tenant, user_key: row.user.rawValue, sector: row.sector.rawValue, content: row.sealedContent,
                slot: row.slot, importance: row.importance, salience0: row.salience0, reinforced_at: row.reinforcedAt.timeIntervalSince1970,
                sensitive: row.sensitive, valid_from: row.validFrom.timeIntervalSince1970, valid_to: row.validTo?.timeIntervalSince1970,
                superseded_by: row.supersededBy, status: row.status.rawValue, sources: row.sources,
                created_at: row.createdAt.timeIntervalSince1970, last_recalled_at: row.lastRecalledAt?.timeIntervalSince1970,
                needs_reextraction: row.needsReextraction, term_count: row.termCount)
        }
        return String(decoding: try JSONEncoder().encode(records), as: UTF8.self)
    }

    static func insertMemories(_ json: String, on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query(
            """
            INSERT INTO memories (id, tenant_id, user_key, sector, content, slot, importance, salience0, reinforced_at, sensitive,
                valid_from, valid_to, superseded_by, status, sources, created_at, last_recalled_at, needs_reextraction, term_count)
            SELECT x.id, x.tenant_id, x.user_key, x.sector, decode(x.content, 'base64'), x.slot, x.importance, x.salience0,
                to_timestamp(x.reinforced_at), x.sensitive, to_timestamp(x.valid_from), to_timestamp(x.valid_to), x.superseded_by,
                x.status, x.sources, to_timestamp(x.created_at), to_timestamp(x.last_recalled_at), x.needs_reextraction, x.term_count
            FROM jsonb_to_recordset(\(json)::jsonb) AS x(id text, tenant_id text, user_key text, sector text, content text, slot text,
                importance float8, salience0 float8, reinforced_at float8, sensitive boolean, valid_from float8, valid_to float8,
                superseded_by text, status text, sources jsonb, created_at float8, last_recalled_at float8, needs_reextraction boolean,
                term_count bigint)
            """, logger: logger)
    }

    /// Vectors of one embedder in one statement: ids, and all vectors as one flat float4 array sliced in SQL.
    static func insertVectors(_ vectors: [VectorRow], tenant: String, user: UserKey, on connection: PostgresConnection, logger: Logger) async throws {
        for (embedder, group) in Dictionary(grouping: vectors, by: \.embedder) {
            for (dims, sameDimension) in Dictionary(grouping: group, by: \.vector.count) where dims > 0 {
                let ids = sameDimension.map(\.memoryID)
                let flat = sameDimension.flatMap(\.vector)
                try await connection.query(
                    """
                    INSERT INTO memory_vectors (memory_id, embedder, tenant_id, user_key, dims, embedding)
                    SELECT x.id, \(embedder), \(tenant), \(user.rawValue), \(dims),
                        ((\(flat)::real[])[(x.i - 1) * \(dims) + 1 : x.i * \(dims)])::vector
                    FROM unnest(\(ids)::text[]) WITH ORDINALITY AS x(id, i)
                    ON CONFLICT (memory_id, embedder) DO UPDATE SET embedding = excluded.embedding, dims = excluded.dims
                    """, logger: logger)
            }
        }
    }

    static func insertPostings(_ postings: [TermPosting], tenant: String, user: UserKey, on connection: PostgresConnection, logger: Logger)
        async throws
    {
        guard !postings.isEmpty else { return }
        let terms = postings.map { ByteBuffer(data: $0.term) }
        let ids = postings.map(\.memoryID)
        let frequencies = postings.map(\.frequency)
        try await connection.query(
            """
            INSERT INTO memory_terms (tenant_id, user_key, term, memory_id, frequency)
            SELECT \(tenant), \(user.rawValue), x.term, x.memory_id, x.frequency
            FROM unnest(\(terms)::bytea[], \(ids)::text[], \(frequencies)::int8[]) AS x(term, memory_id, frequency)
            ON CONFLICT (tenant_id, user_key, term, memory_id) DO UPDATE SET frequency = excluded.frequency
            """, logger: logger)
    }

    // MARK: reads

    static let memoryColumns = """
        id, tenant_id, user_key, sector, content, slot, importance, salience0, reinforced_at, sensitive, valid_from, valid_to,
        superseded_by, status, sources::text AS sources, created_at, last_recalled_at, needs_reextraction, term_count
        """
    static let current = "status = 'active' AND valid_to IS NULL"

    public func memories(tenant: String, user: UserKey, includeHistory: Bool) async throws -> [MemoryRow] {
        let filter = includeHistory ? "" : "AND \(Self.current)"
        return try await rows(
            """
            SELECT \(unescaped: Self.memoryColumns) FROM memories WHERE tenant_id = \(tenant) AND user_key = \(user.rawValue)
            \(unescaped: filter) ORDER BY valid_from, id
            """
        ).map(Self.memory)
    }

    public func memories(tenant: String, user: UserKey, ids: [String]) async throws -> [MemoryRow] {
        guard !ids.isEmpty else { return [] }
        return try await rows(
            """
            SELECT \(unescaped: Self.memoryColumns) FROM memories
            WHERE tenant_id = \(tenant) AND user_key = \(user.rawValue) AND id = ANY(\(ids)::text[])
            """
        ).map(Self.memory)
    }

    public func activeMemoryCount(tenant: String, user: UserKey) async throws -> Int {
        let row = try await rows(
            "SELECT count(*) AS n FROM memories WHERE tenant_id = \(tenant) AND user_key = \(user.rawValue) AND \(unescaped: Self.current)"
        ).first
        return try row?["n"].decode(Int.self) ?? 0
    }

    public func memoryHeads(tenant: String, user: UserKey) async throws -> [MemoryHead] {
        try await rows(
            """
            SELECT id, sector, slot, importance, salience0, reinforced_at, valid_from, sensitive,
                sources @> '[{"kind":"summary"}]'::jsonb AS is_summary
            FROM memories WHERE tenant_id = \(tenant) AND user_key = \(user.rawValue) AND \(unescaped: Self.current)
            """
        ).map { row in
            MemoryHead(
                id: try row["id"].decode(String.self), sector: Sector(rawValue: try row["sector"].decode(String.self)) ?? .episodic,
                slot: try row["slot"].decode(String?.self), importance: try row["importance"].decode(Double.self),
                salience0: try row["salience0"].decode(Double.self), reinforcedAt: try row["reinforced_at"].decode(Date.self),
                validFrom: try row["valid_from"].decode(Date.self), sensitive: try row["sensitive"].decode(Bool.self),
                isSummary: try row["is_summary"].decode(Bool.self))
        }
    }

    public func vectors(tenant: String, user: UserKey, embedder: String) async throws -> (ids: [String], flat: [Float]) {
        let found = try await rows(
            """
            SELECT v.memory_id, v.embedding FROM memory_vectors v JOIN memories m ON m.id = v.memory_id
            WHERE v.tenant_id = \(tenant) AND v.user_key = \(user.rawValue) AND v.embedder = \(embedder)
                AND m.status = 'active' AND m.valid_to IS NULL
            """)
        var ids: [String] = []
        var flat: [Float] = []
        ids.reserveCapacity(found.count)
        for row in found {
            ids.append(try row["memory_id"].decode(String.self))
            guard var bytes = row["embedding"].bytes, Self.appendVector(&bytes, to: &flat) else {
                throw StoreError.corrupt("a pgvector value could not be read")
            }
        }
        return (ids, flat)
    }

    /// pgvector's binary form (`vector_send`): int16 dimensions, int16 unused, then the floats
    /// big-endian. Read straight from the buffer: decoding a `real[]` element by element costs
    /// milliseconds for a caller with hundreds of vectors.
    static func appendVector(_ buffer: inout ByteBuffer, to flat: inout [Float]) -> Bool {
        guard let dims = buffer.readInteger(as: Int16.self), buffer.readInteger(as: Int16.self) != nil,
            dims >= 0, buffer.readableBytes == Int(dims) * 4
        else { return false }
        // No `reserveCapacity(flat.count + dims)` here: reserving exactly what one more vector
        // needs defeats the array's geometric growth, and `vectors` calls this once per row, so
        // a caller's 20,000 vectors were copied 20,000 times (73 s for its first search).
        for _ in 0..<Int(dims) {
            guard let bits = buffer.readInteger(as: UInt32.self) else { return false }
            flat.append(Float(bitPattern: bits))
        }
        return true
    }

    /// The user's `limit` nearest current memories to `query` by cosine distance, computed by
    /// PostgreSQL. `exact` filters by user through the B-tree and measures every vector; otherwise
    /// the HNSW index of that dimension is walked with pgvector's iterative scan until enough rows
    /// pass the user filter (the `|| ''` keeps the planner off the B-tree, which it would rightly
    /// prefer). Both are measured in BENCHMARKS.md: a caller's rows are a tiny share of the index,
    /// so the walk visits most of it, and `hnsw.max_scan_tuples` can end it with fewer rows.
    public func nearest(tenant: String, user: UserKey, embedder: String, query: [Float], limit: Int, exact: Bool) async throws -> [(
        id: String, similarity: Double
    )] {
        let dims = query.count
        let found: [PostgresRandomAccessRow]
        if exact {
            found = try await rows(
                """
                SELECT v.memory_id, 1 - (v.embedding <=> \(query)::real[]::vector) AS similarity
                FROM memory_vectors v JOIN memories m ON m.id = v.memory_id
                WHERE v.tenant_id = \(tenant) AND v.user_key = \(user.rawValue) AND v.embedder = \(embedder) AND v.dims = \(dims)
                    AND m.status = 'active' AND m.valid_to IS NULL
                ORDER BY v.embedding <=> \(query)::real[]::vector LIMIT \(limit)
                """)
        } else {
            found = try await transaction { connection in
                try await connection.query("SET LOCAL hnsw.iterative_scan = relaxed_order", logger: logger)
                try await connection.query("SET LOCAL hnsw.ef_search = 100", logger: logger)
                return try await connection.rows(
                    """
                    SELECT v.memory_id, 1 - (v.embedding::vector(\(unescaped: String(dims))) <=> \(query)::real[]::vector(\(unescaped: String(dims)))) AS similarity
                    FROM memory_vectors v JOIN memories m ON m.id = v.memory_id
                    WHERE v.dims = \(unescaped: String(dims)) AND v.tenant_id || '' = \(tenant) AND v.user_key || '' = \(user.rawValue) AND v.embedder = \(embedder)
                        AND m.status = 'active' AND m.valid_to IS NULL
                    ORDER BY v.embedding::vector(\(unescaped: String(dims))) <=> \(query)::real[]::vector(\(unescaped: String(dims))) LIMIT \(limit)
                    """, logger: logger)
            }
        }
        return try found.map { (try $0["memory_id"].decode(String.self), try $0["similarity"].decode(Double.self)) }
    }

    public func postings(tenant: String, user: UserKey, terms: [Data]) async throws -> [TermPosting] {
        guard !terms.isEmpty else { return [] }
        let buffers = terms.map { ByteBuffer(data: $0) }
        return try await rows(
            """
            SELECT t.term, t.memory_id, t.frequency, m.term_count FROM memory_terms t JOIN memories m ON m.id = t.memory_id
            WHERE t.tenant_id = \(tenant) AND t.user_key = \(user.rawValue) AND t.term = ANY(\(buffers)::bytea[])
                AND m.status = 'active' AND m.valid_to IS NULL
            """
        ).map {
            TermPosting(
                term: try $0["term"].decode(Data.self), memoryID: try $0["memory_id"].decode(String.self),
                frequency: try $0["frequency"].decode(Int.self), documentLength: try $0["term_count"].decode(Int.self))
        }
    }

    public func termStatistics(tenant: String, user: UserKey) async throws -> TermStatistics {
        let row = try await rows(
            """
            SELECT count(*) AS n, coalesce(avg(term_count), 0)::float8 AS average FROM memories
            WHERE tenant_id = \(tenant) AND user_key = \(user.rawValue) AND \(unescaped: Self.current)
            """
        ).first
        return TermStatistics(documentCount: try row?["n"].decode(Int.self) ?? 0, averageLength: try row?["average"].decode(Double.self) ?? 0)
    }

    // MARK: maintenance

    public func reinforce(tenant: String, _ updates: [(id: String, salience0: Double, at: Date)]) async throws {
        guard !updates.isEmpty else { return }
        let ids = updates.map(\.id)
        let saliences = updates.map(\.salience0)
        let times = updates.map(\.at)
        _ = try await rows(
            """
            UPDATE memories AS m SET salience0 = x.salience0, reinforced_at = x.at, last_recalled_at = x.at
            FROM unnest(\(ids)::text[], \(saliences)::float8[], \(times)::timestamptz[]) AS x(id, salience0, at)
            WHERE m.id = x.id AND m.tenant_id = \(tenant) AND m.status = 'active'
            """)
    }

    public func archive(tenant: String, ids: [String]) async throws {
        guard !ids.isEmpty else { return }
        _ = try await rows(
            """
            WITH archived AS (
                UPDATE memories SET status = 'archived' WHERE tenant_id = \(tenant) AND id = ANY(\(ids)::text[]) AND status = 'active'
                RETURNING user_key
            )
            UPDATE users SET memory_version = memory_version + 1
            WHERE tenant_id = \(tenant) AND user_key IN (SELECT user_key FROM archived)
            """)
    }

    public func sweepCandidates(tenant: String, limit: Int, after: String?) async throws -> [MemoryRow] {
        try await rows(
            """
            SELECT \(unescaped: Self.memoryColumns) FROM memories
            WHERE tenant_id = \(tenant) AND status = 'active' AND id > \(after ?? "") ORDER BY id LIMIT \(limit)
            """
        ).map(Self.memory)
    }

    public func setRetention(tenant: String, days: Int?) async throws {
        _ = try await rows("UPDATE tenants SET retention_days = \(days) WHERE id = \(tenant)")
    }

    public func deleteMemories(tenant: String, olderThan cutoff: Date) async throws -> Int {
        let row = try await rows(
            """
            WITH deleted AS (
                DELETE FROM memories WHERE tenant_id = \(tenant) AND valid_from < \(cutoff) RETURNING user_key
            ), bumped AS (
                UPDATE users SET memory_version = memory_version + 1
                WHERE tenant_id = \(tenant) AND user_key IN (SELECT user_key FROM deleted) RETURNING 1
            )
            SELECT (SELECT count(*) FROM deleted) AS n
            """
        ).first
        return try row?["n"].decode(Int.self) ?? 0
    }

    public func memoryCountsByStatus() async throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for row in try await rows("SELECT status, count(*) AS n FROM memories GROUP BY status") {
            counts[try row["status"].decode(String.self)] = try row["n"].decode(Int.self)
        }
        return counts
    }

    public func memory(tenant: String, id: String) async throws -> MemoryRow? {
        try await rows("SELECT \(unescaped: Self.memoryColumns) FROM memories WHERE tenant_id = \(tenant) AND id = \(id)").first.map(Self.memory)
    }

    public func replaceMemory(_ row: MemoryRow, vectors: [VectorRow], postings: [TermPosting]) async throws {
        try await transaction { connection in
            let updated = try await connection.rows(
                """
                UPDATE memories SET content = \(row.sealedContent), sensitive = \(row.sensitive), status = \(row.status.rawValue),
                    term_count = \(row.termCount), slot = \(row.slot), sector = \(row.sector.rawValue)
                WHERE id = \(row.id) AND tenant_id = \(row.tenant) AND user_key = \(row.user.rawValue)
                RETURNING 1
                """, logger: logger)
            guard !updated.isEmpty else { throw StoreError.notFound("memory") }
            try await connection.query("DELETE FROM memory_terms WHERE memory_id = \(row.id)", logger: logger)
            try await connection.query("DELETE FROM memory_vectors WHERE memory_id = \(row.id)", logger: logger)
            let vectors = vectors.map { VectorRow(memoryID: row.id, embedder: $0.embedder, vector: $0.vector) }
            let postings = postings.map { TermPosting(term: $0.term, memoryID: row.id, frequency: $0.frequency) }
            try await Self.insertVectors(vectors, tenant: row.tenant, user: row.user, on: connection, logger: logger)
            try await Self.insertPostings(postings, tenant: row.tenant, user: row.user, on: connection, logger: logger)
            try await connection.query(
                "UPDATE users SET memory_version = memory_version + 1 WHERE tenant_id = \(row.tenant) AND user_key = \(row.user.rawValue)",
                logger: logger)
        }
    }

    public func deleteMemory(tenant: String, id: String) async throws -> Bool {
        let row = try await rows(
            """
            WITH deleted AS (
                DELETE FROM memories WHERE id = \(id) AND tenant_id = \(tenant) RETURNING user_key
            ), bumped AS (
                UPDATE users SET memory_version = memory_version + 1
                WHERE tenant_id = \(tenant) AND user_key IN (SELECT user_key FROM deleted) RETURNING 1
            )
            SELECT (SELECT count(*) FROM deleted) AS n
            """
        ).first
        return try (row?["n"].decode(Int.self) ?? 0) > 0
    }

    public func setTenantConsentMode(tenant: String, mode: ConsentMode, allowSensitivePrecall: Bool) async throws {
        _ = try await rows(
            "UPDATE tenants SET consent_mode = \(mode.rawValue), allow_sensitive_precall = \(allowSensitivePrecall) WHERE id = \(tenant)")
    }

    public func setTenantWebhookSecrets(tenant: String, current: Data?, previous: Data?, keyID: String) async throws {
        // One key id covers the tenant's wrapped secrets: the pseudonym secret and these.
        let updated = try await rows(
            """
            UPDATE tenants SET webhook_secret_wrapped = \(current), webhook_secret_previous_wrapped = \(previous)
            WHERE id = \(tenant) AND key_id = \(keyID) RETURNING 1
            """)
        guard !updated.isEmpty else { throw StoreError.corrupt("tenant secrets are wrapped by another master key; rotate first") }
    }

    public func tenantWebhookSecrets(tenant: String) async throws -> (current: Data?, previous: Data?, keyID: String)? {
        try await rows("SELECT webhook_secret_wrapped, webhook_secret_previous_wrapped, key_id FROM tenants WHERE id = \(tenant)").first.map {
            (
                try $0["webhook_secret_wrapped"].decode(Data?.self), try $0["webhook_secret_previous_wrapped"].decode(Data?.self),
                try $0["key_id"].decode(String.self)
            )
        }
    }

    public func insertAPIKey(_ key: APIKeyRecord) async throws {
        _ = try await rows(
            """
            INSERT INTO api_keys (id, tenant_id, scope, key_hash, created_at, revoked_at)
            VALUES (\(key.id), \(key.tenant), \(key.scope.rawValue), \(key.keyHash), \(key.createdAt), \(key.revokedAt))
            """)
    }

    public func apiKey(hash: Data) async throws -> APIKeyRecord? {
        try await rows("SELECT * FROM api_keys WHERE key_hash = \(hash)").first.map(Self.apiKey)
    }

    public func apiKeys(tenant: String) async throws -> [APIKeyRecord] {
        try await rows("SELECT * FROM api_keys WHERE tenant_id = \(tenant) ORDER BY created_at").map(Self.apiKey)
    }

    public func revokeAPIKey(tenant: String, id: String, at: Date) async throws -> Bool {
        !(try await rows(
            "UPDATE api_keys SET revoked_at = \(at) WHERE tenant_id = \(tenant) AND id = \(id) AND revoked_at IS NULL RETURNING 1"
        ).isEmpty)
    }

    static func apiKey(_ row: PostgresRandomAccessRow) throws -> APIKeyRecord {
        APIKeyRecord(
            id: try row["id"].decode(String.self), tenant: try row["tenant_id"].decode(String.self),
            scope: APIKeyRecord.Scope(rawValue: try row["scope"].decode(String.self)) ?? .tool, keyHash: try row["key_hash"].decode(Data.self),
            createdAt: try row["created_at"].decode(Date.self), revokedAt: try row["revoked_at"].decode(Date?.self))
    }

    public func audit(_ entry: AuditEntry) async throws {
        _ = try await rows(
            """
            INSERT INTO audit_log (id, tenant_id, actor, action, user_key, memory_id, at)
            VALUES (\(entry.id), \(entry.tenant), \(entry.actor), \(entry.action), \(entry.user), \(entry.memoryID), \(entry.at))
            """)
    }

    public func auditEntries(tenant: String, limit: Int) async throws -> [AuditEntry] {
        try await rows("SELECT * FROM audit_log WHERE tenant_id = \(tenant) ORDER BY at DESC, id DESC LIMIT \(limit)").map { row in
            var entry = AuditEntry(
                tenant: try row["tenant_id"].decode(String.self), actor: try row["actor"].decode(String.self),
                action: try row["action"].decode(String.self), user: try row["user_key"].decode(String?.self).flatMap(UserKey.init),
                memoryID: try row["memory_id"].decode(String?.self), at: try row["at"].decode(Date.self))
            entry.id = try row["id"].decode(String.self)
            return entry
        }
    }

    public func wrappedSecrets() async throws -> [WrappedSecret] {
        var out: [WrappedSecret] = []
        // Every user and tenant (key rotation): no per-call deadline, its length grows with the data.
        for row in try await rowsWithoutDeadline("SELECT tenant_id, user_key, data_key_wrapped, key_id FROM users") {
            out.append(
                WrappedSecret(
                    kind: .userDataKey, tenant: try row["tenant_id"].decode(String.self),
                    user: UserKey(unchecked: try row["user_key"].decode(String.self)),
                    wrapped: try row["data_key_wrapped"].decode(Data.self), keyID: try row["key_id"].decode(String.self)))
        }
        for row in try await rowsWithoutDeadline(
            "SELECT id, pseudonym_secret_wrapped, webhook_secret_wrapped, webhook_secret_previous_wrapped, key_id FROM tenants")
        {
            let tenant = try row["id"].decode(String.self)
            let keyID = try row["key_id"].decode(String.self)
            out.append(
                WrappedSecret(
                    kind: .tenantPseudonym, tenant: tenant, user: nil, wrapped: try row["pseudonym_secret_wrapped"].decode(Data.self), keyID: keyID))
            if let wrapped = try row["webhook_secret_wrapped"].decode(Data?.self) {
                out.append(WrappedSecret(kind: .tenantWebhook, tenant: tenant, user: nil, wrapped: wrapped, keyID: keyID))
            }
            if let wrapped = try row["webhook_secret_previous_wrapped"].decode(Data?.self) {
                out.append(WrappedSecret(kind: .tenantWebhookPrevious, tenant: tenant, user: nil, wrapped: wrapped, keyID: keyID))
            }
        }
        return out
    }

    public func replaceWrappedSecrets(_ secrets: [WrappedSecret]) async throws {
        try await transactionWithoutDeadline { connection in
            for secret in secrets {
                switch secret.kind {
                case .userDataKey:
                    try await connection.query(
                        """
                        UPDATE users SET data_key_wrapped = \(secret.wrapped), key_id = \(secret.keyID)
                        WHERE tenant_id = \(secret.tenant) AND user_key = \(secret.user?.rawValue)
                        """, logger: logger)
                case .tenantPseudonym:
                    try await connection.query(
                        "UPDATE tenants SET pseudonym_secret_wrapped = \(secret.wrapped), key_id = \(secret.keyID) WHERE id = \(secret.tenant)",
                        logger: logger)
                case .tenantWebhook:
                    try await connection.query(
                        "UPDATE tenants SET webhook_secret_wrapped = \(secret.wrapped) WHERE id = \(secret.tenant)", logger: logger)
                case .tenantWebhookPrevious:
                    try await connection.query(
                        "UPDATE tenants SET webhook_secret_previous_wrapped = \(secret.wrapped) WHERE id = \(secret.tenant)", logger: logger)
                }
            }
        }
        // The old wrappings live on in dead row versions until a vacuum: make it now.
        await vacuum("users", "tenants")
    }

    public func tombstone(tenant: String, user: UserKey) async throws -> Date? {
        try await rows("SELECT erased_at FROM tombstones WHERE tenant_id = \(tenant) AND user_key = \(user.rawValue)").first
            .map { try $0["erased_at"].decode(Date.self) }
    }

    public func erase(tenant: String, user: UserKey, at: Date) async throws {
        try await transaction { connection in
            // The key first: even a row missed below is unreadable once it is gone.
            try await connection.query(
                """
                UPDATE users SET data_key_wrapped = decode(repeat('00', length(data_key_wrapped)), 'hex')
                WHERE tenant_id = \(tenant) AND user_key = \(user.rawValue)
                """, logger: logger)
            try await connection.query("DELETE FROM memory_terms WHERE tenant_id = \(tenant) AND user_key = \(user.rawValue)", logger: logger)
            try await connection.query("DELETE FROM memory_vectors WHERE tenant_id = \(tenant) AND user_key = \(user.rawValue)", logger: logger)
            try await connection.query("DELETE FROM memories WHERE tenant_id = \(tenant) AND user_key = \(user.rawValue)", logger: logger)
            try await connection.query("DELETE FROM users WHERE tenant_id = \(tenant) AND user_key = \(user.rawValue)", logger: logger)
            try await connection.query(
                """
                INSERT INTO tombstones (tenant_id, user_key, erased_at) VALUES (\(tenant), \(user.rawValue), \(at))
                ON CONFLICT (tenant_id, user_key) DO UPDATE SET erased_at = excluded.erased_at
                """, logger: logger)
        }
        // PostgreSQL keeps deleted row versions until a vacuum. The wrapped data key is what makes
        // the rest readable, so the small users table is vacuumed now; the memories' dead rows are
        // sealed with that key and go with autovacuum.
        await vacuum("users")
    }

    /// Best effort: a failed vacuum is logged, never fails the operation that asked for it.
    private func vacuum(_ tables: String...) async {
        for table in tables {
            do {
                _ = try await rowsWithoutDeadline(PostgresQuery(unsafeSQL: "VACUUM \(table)"))
            } catch {
                logger.warning("vacuum failed", metadata: ["table": "\(table)", "error": "\(Self.describe(error))"])
            }
        }
    }

    static func memory(_ row: PostgresRandomAccessRow) throws -> MemoryRow {
        let rawSources = try row["sources"].decode(String.self)
        return MemoryRow(
            id: try row["id"].decode(String.self), tenant: try row["tenant_id"].decode(String.self),
            user: UserKey(unchecked: try row["user_key"].decode(String.self)),
            sector: Sector(rawValue: try row["sector"].decode(String.self)) ?? .episodic, sealedContent: try row["content"].decode(Data.self),
            slot: try row["slot"].decode(String?.self), importance: try row["importance"].decode(Double.self),
            salience0: try row["salience0"].decode(Double.self), reinforcedAt: try row["reinforced_at"].decode(Date.self),
            sensitive: try row["sensitive"].decode(Bool.self), validFrom: try row["valid_from"].decode(Date.self),
            validTo: try row["valid_to"].decode(Date?.self), supersededBy: try row["superseded_by"].decode(String?.self),
            status: MemoryStatus(rawValue: try row["status"].decode(String.self)) ?? .active,
            sources: MemorySource.decodeList(rawSources),
            createdAt: try row["created_at"].decode(Date.self), lastRecalledAt: try row["last_recalled_at"].decode(Date?.self),
            needsReextraction: try row["needs_reextraction"].decode(Bool.self), termCount: try row["term_count"].decode(Int.self))
    }
}

extension PostgresConnection {
    /// Runs a query and collects its rows (reads here are bounded: one user's rows at most).
    func rows(_ query: PostgresQuery, logger: Logger) async throws -> [PostgresRandomAccessRow] {
        var out: [PostgresRandomAccessRow] = []
        for try await row in try await self.query(query, logger: logger) { out.append(row.makeRandomAccess()) }
        return out
    }
}

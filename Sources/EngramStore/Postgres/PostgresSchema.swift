import Foundation
import Logging
import PostgresNIO

/// The PostgreSQL schema, as versioned migrations. Each runs in its own transaction under an
/// advisory lock and is recorded in `engram_migrations`, so gateways, workers and `engram migrate`
/// can start together. Shipped migrations are never edited: add v2, v3...
///
/// It is the SQLite schema (v1–v3 there) in PostgreSQL's types, with vectors in pgvector columns:
/// one `memory_vectors` table keyed by embedder, with each vector's dimension in `dims` and an
/// HNSW cosine index per dimension (a partial expression index), so a 1536-d OpenAI vector and a
/// 384-d local one are never compared.
enum PostgresSchema {
    /// Dimensions that get an HNSW index at migration; another dimension gets one at start.
    static let indexedDimensions = [384, 1536]

    static let migrations: [(version: String, statements: [String])] = [
        (
            "v1",
            [
                "CREATE EXTENSION IF NOT EXISTS vector",
                """
                CREATE TABLE tenants (
                    id text COLLATE "C" PRIMARY KEY,
                    name text NOT NULL,
                    pseudonym_secret_wrapped bytea NOT NULL,
                    key_id text NOT NULL,
                    consent_mode text NOT NULL DEFAULT 'implicit',
                    allow_sensitive_precall boolean NOT NULL DEFAULT false,
                    created_at timestamptz NOT NULL,
                    webhook_secret_wrapped bytea,
                    webhook_secret_previous_wrapped bytea,
                    retention_days bigint
                )
                """,
                """
                CREATE TABLE users (
                    tenant_id text COLLATE "C" NOT NULL REFERENCES tenants(id),
                    user_key text COLLATE "C" NOT NULL,
                    data_key_wrapped bytea NOT NULL,
                    key_id text NOT NULL,
                    consent boolean,
                    consent_at timestamptz,
                    created_at timestamptz NOT NULL,
                    last_call_at timestamptz,
                    memory_version bigint NOT NULL DEFAULT 0,
                    PRIMARY KEY (tenant_id, user_key)
                )
                """,
                """
                CREATE TABLE processed_events (
                    tenant_id text COLLATE "C" NOT NULL,
                    idempotency_key text COLLATE "C" NOT NULL,
                    event_id text NOT NULL,
                    event_type text NOT NULL,
                    user_key text,
                    processed_at timestamptz NOT NULL,
                    PRIMARY KEY (tenant_id, idempotency_key)
                )
                """,
                """
                CREATE TABLE memories (
                    id text COLLATE "C" PRIMARY KEY,
                    tenant_id text COLLATE "C" NOT NULL,
                    user_key text COLLATE "C" NOT NULL,
                    sector text NOT NULL,
                    content bytea NOT NULL,
                    slot text,
                    importance double precision NOT NULL,
                    salience0 double precision NOT NULL,
                    reinforced_at timestamptz NOT NULL,
                    sensitive boolean NOT NULL DEFAULT false,
                    valid_from timestamptz NOT NULL,
                    valid_to timestamptz,
                    superseded_by text,
                    status text NOT NULL DEFAULT 'active',
                    sources jsonb NOT NULL,
                    created_at timestamptz NOT NULL,
                    last_recalled_at timestamptz,
                    needs_reextraction boolean NOT NULL DEFAULT false,
                    term_count bigint NOT NULL DEFAULT 0,
                    FOREIGN KEY (tenant_id, user_key) REFERENCES users(tenant_id, user_key) ON DELETE CASCADE
                )
                """,
                "CREATE INDEX memories_by_user ON memories (tenant_id, user_key, status)",
                "CREATE INDEX memories_by_tenant_time ON memories (tenant_id, valid_from)",
                """
                CREATE TABLE memory_vectors (
                    memory_id text COLLATE "C" NOT NULL REFERENCES memories(id) ON DELETE CASCADE,
                    embedder text NOT NULL,
                    tenant_id text COLLATE "C" NOT NULL,
                    user_key text COLLATE "C" NOT NULL,
                    dims integer NOT NULL,
                    embedding vector NOT NULL,
                    PRIMARY KEY (memory_id, embedder),
                    CHECK (vector_dims(embedding) = dims)
                )
                """,
                "CREATE INDEX memory_vectors_by_user ON memory_vectors (tenant_id, user_key, embedder)",
                """
                CREATE TABLE memory_terms (
                    tenant_id text COLLATE "C" NOT NULL,
                    user_key text COLLATE "C" NOT NULL,
                    term bytea NOT NULL,
                    memory_id text COLLATE "C" NOT NULL REFERENCES memories(id) ON DELETE CASCADE,
                    frequency bigint NOT NULL,
                    PRIMARY KEY (tenant_id, user_key, term, memory_id)
                )
                """,
                "CREATE INDEX memory_terms_by_memory ON memory_terms (memory_id)",
                """
                CREATE TABLE tombstones (
                    tenant_id text COLLATE "C" NOT NULL,
                    user_key text COLLATE "C" NOT NULL,
                    erased_at timestamptz NOT NULL,
                    PRIMARY KEY (tenant_id, user_key)
                )
                """,
                """
                CREATE TABLE api_keys (
                    id text COLLATE "C" PRIMARY KEY,
                    tenant_id text COLLATE "C" NOT NULL REFERENCES tenants(id),
                    scope text NOT NULL,
                    key_hash bytea NOT NULL UNIQUE,
                    created_at timestamptz NOT NULL,
                    revoked_at timestamptz
                )
                """,
                """
                CREATE TABLE audit_log (
                    id text COLLATE "C" PRIMARY KEY,
                    tenant_id text COLLATE "C" NOT NULL,
                    actor text NOT NULL,
                    action text NOT NULL,
                    user_key text,
                    memory_id text,
                    at timestamptz NOT NULL
                )
                """,
                "CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, at)",
            ] + indexedDimensions.map(hnswIndex)
        ),
        (
            "v2",
            [
                "ALTER TABLE tenants ADD COLUMN trust_client_user_ids boolean NOT NULL DEFAULT false"
            ]
        ),
    ]

    static func hnswIndexName(_ dims: Int) -> String { "memory_vectors_hnsw_\(dims)" }

    static func hnswIndex(_ dims: Int) -> String {
        """
        CREATE INDEX IF NOT EXISTS \(hnswIndexName(dims)) ON memory_vectors
            USING hnsw ((embedding::vector(\(dims))) vector_cosine_ops) WHERE dims = \(dims)
        """
    }

    /// A key for `pg_advisory_xact_lock`: "engram" in ASCII.
    static let lockKey: Int64 = 0x656e_6772_616d

    /// Applies what is missing; returns the versions it applied.
    @discardableResult
    static func migrate(_ client: PostgresClient, embeddingDimension: Int?, logger: Logger) async throws -> [String] {
        var applied: [String] = []
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(lockKey))", logger: logger)
            try await connection.query(
                "CREATE TABLE IF NOT EXISTS engram_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                logger: logger)
        }
        for migration in migrations {
            let ran = try await client.withTransaction(logger: logger) { connection -> Bool in
                try await connection.query("SELECT pg_advisory_xact_lock(\(lockKey))", logger: logger)
                let done = try await connection.query("SELECT 1 FROM engram_migrations WHERE version = \(migration.version)", logger: logger)
                for try await _ in done { return false }
                for statement in migration.statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query("INSERT INTO engram_migrations (version) VALUES (\(migration.version))", logger: logger)
                return true
            }
            if ran { applied.append(migration.version) }
        }
        if let dims = embeddingDimension, !indexedDimensions.contains(dims) {
            // A configured dimension of its own (text-embedding-3-large at 3072 has none: pgvector's
            // HNSW stops at 2,000 dimensions, and those searches stay exact per user).
            if dims <= 2000 {
                try await client.withTransaction(logger: logger) { connection in
                    try await connection.query("SELECT pg_advisory_xact_lock(\(lockKey))", logger: logger)
                    try await connection.query(PostgresQuery(unsafeSQL: hnswIndex(dims)), logger: logger)
                }
            }
        }
        return applied
    }
}

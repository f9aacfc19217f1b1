import EngramCore
import EngramProviders
import EngramStore
import Foundation
import Logging

/// Engram's whole configuration: one typed value read once from the environment.
public struct EngramConfiguration: Sendable {
    public var httpHost = "127.0.0.1"
    public var httpPort = 8080
    public var database = DatabaseLocation.sqlite(path: "./data/engram.sqlite")
    public var redis = RedisEndpoint()
    public var redisTimeout: Duration = .seconds(2)
    /// The deadline of one store call (`ENGRAM_STORE_TIMEOUT_MS`, 10 s): past it the call fails and is logged.
    public var storeTimeout: Duration = StoreDeadline.defaultTimeout
    public var queuePrefix = "engram:"
    public var webhookSecret: String?
    public var webhookSecretPrevious: String?
    public var publicBaseURL = "http://127.0.0.1:8080"
    public var apiKey: String?
    public var adminKey: String?
    public var masterKey: MasterKey?
    /// Still accepted for reading while a master-key rotation completes.
    public var previousMasterKey: MasterKey?
    public var rateLimitPerMinute = 600
    public var rateLimitBurst = 60
    public var extractor = ProviderKind.local
    public var embedder = ProviderKind.local
    public var openAIKey: String?
    public var llmBaseURL = "https://api.openai.com/v1"
    public var llmModel = "gpt-4o-mini"
    public var embeddingModel = "text-embedding-3-small"
    public var embeddingDimension = 1536
    public var llmTimeout: Duration = .seconds(30)
    public var llmFailurePolicy = LLMFailurePolicy.retryThenLocal
    /// The custom-LLM proxy's upstream: an OpenAI-compatible base URL ending in /v1.
    public var llmUpstreamURL = "https://api.openai.com/v1"
    /// Sent upstream as `Authorization: Bearer`; defaults to OPENAI_API_KEY; none when both are unset.
    public var llmUpstreamKey: String?
    /// Connect plus first byte of the upstream's answer, at most.
    public var llmUpstreamTimeout: Duration = .seconds(10)
    /// Characters of memory the proxy adds to one turn.
    public var llmMemoryChars = 1500
    /// Memory retrieval for one turn, at most; past it the turn goes on without memory.
    public var llmMemoryDeadline: Duration = .milliseconds(30)
    public var consentMode = ConsentMode.implicit
    public var metricsHost = "127.0.0.1"
    public var metricsPort = 9464
    /// The gateway's own Prometheus endpoint (on `metricsHost`), apart from its public port; 0 = none.
    public var gatewayMetricsPort = 9465
    /// When set, the gateway also answers `/metrics` on its public port, to `Authorization: Bearer <key>` only.
    public var metricsKey: String?
    public var logLevel = Logger.Level.info
    /// Largest post-call body kept in memory; larger bodies are hashed and dropped.
    public var maxBodyBytes = 2 * 1024 * 1024
    /// Largest body read at all (audio webhooks can be tens of MB).
    public var maxStreamBytes = 256 * 1024 * 1024
    public var maxToolBodyBytes = 64 * 1024
    /// A connection with no bytes moving for this long is closed (keep-alive and stalled uploads alike).
    public var httpIdleTimeout: Duration = .seconds(30)
    /// A request body must arrive whole within this time (a slow drip is cut off with 408).
    public var requestBodyTimeout: Duration = .seconds(60)
    /// Bytes all requests together may hold before their signature is verified; beyond it, 503 with Retry-After.
    public var unverifiedBodyBudgetBytes = 64 * 1024 * 1024
    public var signatureTolerancePast: Duration = .seconds(30 * 60)
    public var signatureToleranceFuture: Duration = .seconds(5 * 60)
    public var dedupeTTLSeconds = 7 * 24 * 3600
    public var precallBudget: Duration = .milliseconds(800)
    /// Bound of the in-memory keyword indexes (estimated bytes; 0: search reads postings from the store).
    public var termIndexMaxBytes = TermIndexCache.defaultMaxBytes
    /// Browser origins allowed to call `/mcp` (exact, lowercased `scheme://host[:port]`). A
    /// request with an `Origin` header not listed is refused with 403 (MCP's guard against DNS
    /// rebinding); server-side clients such as ElevenLabs send no `Origin` and are unaffected.
    public var mcpAllowedOrigins: Set<String> = []
    /// Bytes of the SQLite file read through a memory map (0: SQLite reads with `pread`).
    public var sqliteMapBytes = AppDatabase.defaultMapBytes
    /// Nice value the worker lowers itself to (0: unchanged), so reads are not starved by extraction.
    public var workerNice = 10
    public var precallContextChars = 1200
    public var precallIncludeSensitive = false
    /// Character budget of the search-memory tool's answer (AnswerPacker: merged, no turn twice).
    public var searchAnswerChars = 2000
    public var firstMessageTemplate: String?
    public var promptTemplate: String?
    public var maxAttempts = 5
    /// Events the worker takes and stores together (one group commit, acknowledged together).
    public var workerBatch = 32
    /// Callers whose events the worker handles side by side within a batch.
    public var workerConcurrency = 2
    /// Memories one event may produce (the most important kept); the rest are counted and dropped.
    public var maxMemoriesPerEvent = ExtractionBudget.defaultMaxMemories
    /// Transcript turns of one event given to the extractor; later turns are counted and dropped.
    public var maxTurnsPerEvent = ExtractionBudget.defaultMaxTurns
    public var retryBase: Duration = .seconds(2)
    public var retryMax: Duration = .seconds(600)
    public var heartbeatTTL: Duration = .seconds(15)
    public var reaperInterval: Duration = .seconds(5)
    public var sweepInterval: Duration = .seconds(3600)
    public var workerID = EngramConfiguration.defaultWorkerID()
    public var spoolDirectory = "./data/spool"
    public var reinforcementFlushInterval: Duration = .seconds(2)
    public var backupDirectory = "./data/backups"
    public var backupInterval: Duration = .seconds(3600)
    public var backupKeep = 24
    /// How often the worker carries erasures to the queue, Redis' files and the backups (and the
    /// gateway to its spool); also how often dead letters are expired.
    public var erasurePurgeInterval: Duration = .seconds(60)
    /// Dead letters are deleted this many days after they failed.
    public var deadLetterRetentionDays = 7
    /// Read only by `engram backfill` and `engram reextract` (the Conversations API).
    public var elevenLabsAPIKey: String?
    public var elevenLabsBaseURL = ElevenLabsClient.defaultBaseURL
    /// OTLP/HTTP collector base URL (`ENGRAM_OTEL_ENDPOINT`); nil means tracing is off.
    public var otelEndpoint: String?
    /// Service name on exported spans; nil means the executable's own name.
    public var otelServiceName: String?
    /// Share of new traces sampled (0...1); a trace that arrives with a decision keeps it.
    public var otelSampleRatio = 1.0

    public init() {}

    /// The key ring: the master key, and the previous one while a rotation completes.
    public func keyRing() throws -> KeyRing {
        KeyRing(master: try require(\.masterKey, "ENGRAM_MASTER_KEY"), previous: previousMasterKey.map { [$0] } ?? [])
    }

    public static func defaultWorkerID() -> String {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "worker"
        return "\(host)-\(ProcessInfo.processInfo.processIdentifier)"
    }

    /// Reads the environment. Optional values stay nil; `require` checks what an executable needs.
    public static func fromEnvironment(_ environment: [String: String] = EngramConfiguration.environmentWithDevFile()) throws -> EngramConfiguration {
        let reader = EnvironmentReader(environment)
        var c = EngramConfiguration()
        c.httpHost = reader.string("ENGRAM_HTTP_HOST") ?? c.httpHost
        c.httpPort = try reader.int("ENGRAM_HTTP_PORT", range: 0...65535) ?? c.httpPort
        if let raw = reader.string("ENGRAM_DATABASE_URL") { c.database = try DatabaseLocation.parse(raw) }
        if let raw = reader.string("ENGRAM_REDIS_URL") { c.redis = try RedisEndpoint.parse(raw) }
        c.redisTimeout = try reader.milliseconds("ENGRAM_REDIS_TIMEOUT_MS") ?? c.redisTimeout
        if let timeout = try reader.int("ENGRAM_STORE_TIMEOUT_MS", range: 100...600_000) { c.storeTimeout = .milliseconds(timeout) }
        c.queuePrefix = reader.string("ENGRAM_QUEUE_PREFIX") ?? c.queuePrefix
        c.webhookSecret = reader.string("ENGRAM_WEBHOOK_SECRET")
        c.webhookSecretPrevious = reader.string("ENGRAM_WEBHOOK_SECRET_PREVIOUS")
        c.publicBaseURL = reader.string("ENGRAM_PUBLIC_BASE_URL") ?? c.publicBaseURL
        c.apiKey = reader.string("ENGRAM_API_KEY")
        c.adminKey = reader.string("ENGRAM_ADMIN_KEY")
        if let raw = reader.string("ENGRAM_MASTER_KEY") {
            guard let key = MasterKey(base64: raw) else {
                throw ConfigurationError(variable: "ENGRAM_MASTER_KEY", reason: "must be 32 bytes, base64-encoded")
            }
            c.masterKey = key
        }
        if let raw = reader.string("ENGRAM_MASTER_KEY_PREVIOUS") {
            guard let key = MasterKey(base64: raw) else {
                throw ConfigurationError(variable: "ENGRAM_MASTER_KEY_PREVIOUS", reason: "must be 32 bytes, base64-encoded")
            }
            c.previousMasterKey = key
        }
        c.rateLimitPerMinute = try reader.int("ENGRAM_RATE_LIMIT_PER_MINUTE", range: 1...1_000_000) ?? c.rateLimitPerMinute
        c.rateLimitBurst = try reader.int("ENGRAM_RATE_LIMIT_BURST", range: 1...100_000) ?? c.rateLimitBurst
        c.openAIKey = reader.string("OPENAI_API_KEY")
        let providerDefault: ProviderKind = c.openAIKey == nil ? .local : .openai
        c.extractor = try reader.enumValue("ENGRAM_EXTRACTOR", ProviderKind.self) ?? providerDefault
        c.embedder = try reader.enumValue("ENGRAM_EMBEDDER", ProviderKind.self) ?? providerDefault
        c.llmBaseURL = reader.string("ENGRAM_LLM_BASE_URL") ?? c.llmBaseURL
        c.llmModel = reader.string("ENGRAM_LLM_MODEL") ?? c.llmModel
        c.embeddingModel = reader.string("ENGRAM_EMBEDDING_MODEL") ?? c.embeddingModel
        c.embeddingDimension = try reader.int("ENGRAM_EMBEDDING_DIMENSIONS", range: 8...8192) ?? c.embeddingDimension
        c.llmTimeout = try reader.milliseconds("ENGRAM_LLM_TIMEOUT_MS") ?? c.llmTimeout
        c.llmFailurePolicy = try reader.enumValue("ENGRAM_LLM_FAILURE_POLICY", LLMFailurePolicy.self) ?? c.llmFailurePolicy
        if let raw = reader.string("ENGRAM_LLM_UPSTREAM_URL") {
            guard let url = URLComponents(string: raw), ["http", "https"].contains(url.scheme ?? ""), url.host?.isEmpty == false else {
                throw ConfigurationError(
                    variable: "ENGRAM_LLM_UPSTREAM_URL", reason: "expected an http(s) URL ending in /v1, such as https://api.openai.com/v1")
            }
            c.llmUpstreamURL = raw.hasSuffix("/") ? String(raw.dropLast()) : raw
        }
        c.llmUpstreamKey = reader.string("ENGRAM_LLM_UPSTREAM_KEY") ?? c.openAIKey
        c.llmUpstreamTimeout = try reader.milliseconds("ENGRAM_LLM_UPSTREAM_TIMEOUT_MS", range: 100...600_000) ?? c.llmUpstreamTimeout
        c.llmMemoryChars = try reader.int("ENGRAM_LLM_MEMORY_CHARS", range: 0...100_000) ?? c.llmMemoryChars
        c.llmMemoryDeadline = try reader.milliseconds("ENGRAM_LLM_MEMORY_DEADLINE_MS", range: 1...60_000) ?? c.llmMemoryDeadline
        c.consentMode = try reader.enumValue("ENGRAM_CONSENT_MODE", ConsentMode.self) ?? c.consentMode
        c.metricsHost = reader.string("ENGRAM_METRICS_HOST") ?? c.metricsHost
        c.metricsPort = try reader.int("ENGRAM_METRICS_PORT", range: 0...65535) ?? c.metricsPort
        c.gatewayMetricsPort = try reader.int("ENGRAM_GATEWAY_METRICS_PORT", range: 0...65535) ?? c.gatewayMetricsPort
        if let key = reader.string("ENGRAM_METRICS_KEY") {
            guard key.count >= 16 else { throw ConfigurationError(variable: "ENGRAM_METRICS_KEY", reason: "at least 16 characters") }
            c.metricsKey = key
        }
        if let raw = reader.string("ENGRAM_LOG_LEVEL") {
            guard let level = Logger.Level(rawValue: raw.lowercased()) else {
                throw ConfigurationError(variable: "ENGRAM_LOG_LEVEL", reason: "expected trace, debug, info, notice, warning, error or critical")
            }
            c.logLevel = level
        }
        c.maxBodyBytes = try reader.int("ENGRAM_MAX_BODY_BYTES", range: 1024...(512 * 1024 * 1024)) ?? c.maxBodyBytes
        c.maxStreamBytes = try reader.int("ENGRAM_MAX_STREAM_BYTES", range: 1024...(4 * 1024 * 1024 * 1024)) ?? c.maxStreamBytes
        c.maxToolBodyBytes = try reader.int("ENGRAM_MAX_TOOL_BODY_BYTES", range: 256...(16 * 1024 * 1024)) ?? c.maxToolBodyBytes
        c.httpIdleTimeout = try reader.milliseconds("ENGRAM_HTTP_IDLE_TIMEOUT_MS", range: 100...3_600_000) ?? c.httpIdleTimeout
        c.requestBodyTimeout = try reader.milliseconds("ENGRAM_BODY_TIMEOUT_MS", range: 100...3_600_000) ?? c.requestBodyTimeout
        c.unverifiedBodyBudgetBytes =
            try reader.int("ENGRAM_UNVERIFIED_BODY_BUDGET_BYTES", range: 64 * 1024...(16 * 1024 * 1024 * 1024))
            ?? c.unverifiedBodyBudgetBytes
        c.dedupeTTLSeconds = try reader.int("ENGRAM_DEDUPE_TTL_SECONDS", range: 60...(90 * 86400)) ?? c.dedupeTTLSeconds
        c.precallBudget = try reader.milliseconds("ENGRAM_PRECALL_BUDGET_MS") ?? c.precallBudget
        c.termIndexMaxBytes = try reader.int("ENGRAM_TERM_INDEX_MAX_MB", range: 0...1_048_576).map { $0 * 1024 * 1024 } ?? c.termIndexMaxBytes
        c.workerNice = try reader.int("ENGRAM_WORKER_NICE", range: 0...19) ?? c.workerNice
        c.mcpAllowedOrigins = Set(
            (reader.string("ENGRAM_MCP_ALLOWED_ORIGINS") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
                .filter { !$0.isEmpty })
        c.sqliteMapBytes = try reader.int("ENGRAM_SQLITE_MMAP_MB", range: 0...65_536).map { $0 * 1024 * 1024 } ?? c.sqliteMapBytes
        c.precallContextChars = try reader.int("ENGRAM_PRECALL_CONTEXT_CHARS", range: 0...100_000) ?? c.precallContextChars
        c.precallIncludeSensitive = try reader.bool("ENGRAM_PRECALL_INCLUDE_SENSITIVE") ?? c.precallIncludeSensitive
        c.searchAnswerChars = try reader.int("ENGRAM_SEARCH_ANSWER_CHARS", range: 100...100_000) ?? c.searchAnswerChars
        c.firstMessageTemplate = reader.string("ENGRAM_FIRST_MESSAGE_TEMPLATE")
        c.promptTemplate = reader.string("ENGRAM_PROMPT_TEMPLATE")
        c.maxAttempts = try reader.int("ENGRAM_MAX_ATTEMPTS", range: 1...100) ?? c.maxAttempts
        c.workerBatch = try reader.int("ENGRAM_WORKER_BATCH", range: 1...1000) ?? c.workerBatch
        c.workerConcurrency = try reader.int("ENGRAM_WORKER_CONCURRENCY", range: 1...64) ?? c.workerConcurrency
        c.maxMemoriesPerEvent = try reader.int("ENGRAM_MAX_MEMORIES_PER_EVENT", range: 1...10_000) ?? c.maxMemoriesPerEvent
        c.maxTurnsPerEvent = try reader.int("ENGRAM_MAX_TURNS_PER_EVENT", range: 1...100_000) ?? c.maxTurnsPerEvent
        c.retryBase = try reader.milliseconds("ENGRAM_RETRY_BASE_MS") ?? c.retryBase
        c.retryMax = try reader.milliseconds("ENGRAM_RETRY_MAX_MS") ?? c.retryMax
        c.heartbeatTTL = try reader.milliseconds("ENGRAM_HEARTBEAT_TTL_MS") ?? c.heartbeatTTL
        c.reaperInterval = try reader.milliseconds("ENGRAM_REAPER_INTERVAL_MS") ?? c.reaperInterval
        c.sweepInterval = try reader.milliseconds("ENGRAM_SWEEP_INTERVAL_MS") ?? c.sweepInterval
        c.workerID = reader.string("ENGRAM_WORKER_ID") ?? c.workerID
        c.spoolDirectory = reader.string("ENGRAM_SPOOL_DIR") ?? c.spoolDirectory
        c.reinforcementFlushInterval = try reader.milliseconds("ENGRAM_REINFORCEMENT_FLUSH_MS") ?? c.reinforcementFlushInterval
        c.backupDirectory = reader.string("ENGRAM_BACKUP_DIR") ?? c.backupDirectory
        c.backupInterval = try reader.milliseconds("ENGRAM_BACKUP_INTERVAL_MS") ?? c.backupInterval
        c.backupKeep = try reader.int("ENGRAM_BACKUP_KEEP", range: 1...10_000) ?? c.backupKeep
        c.erasurePurgeInterval = try reader.milliseconds("ENGRAM_ERASURE_PURGE_INTERVAL_MS") ?? c.erasurePurgeInterval
        if c.erasurePurgeInterval < .milliseconds(100) {
            // Erasure propagation cannot be turned off: it is what the erasure guarantee rests on.
            throw ConfigurationError(variable: "ENGRAM_ERASURE_PURGE_INTERVAL_MS", reason: "must be at least 100 (milliseconds)")
        }
        c.deadLetterRetentionDays = try reader.int("ENGRAM_DEAD_LETTER_RETENTION_DAYS", range: 1...3650) ?? c.deadLetterRetentionDays
        c.elevenLabsAPIKey = reader.string("ELEVENLABS_API_KEY")
        if let raw = reader.string("ELEVENLABS_API_BASE_URL") {
            guard let url = URLComponents(string: raw), ["http", "https"].contains(url.scheme ?? ""), url.host?.isEmpty == false else {
                throw ConfigurationError(variable: "ELEVENLABS_API_BASE_URL", reason: "expected an http(s) URL such as https://api.elevenlabs.io")
            }
            c.elevenLabsBaseURL = raw
        }
        if let raw = reader.string("ENGRAM_OTEL_ENDPOINT") {
            guard let url = URLComponents(string: raw), ["http", "https"].contains(url.scheme ?? ""), url.host?.isEmpty == false else {
                throw ConfigurationError(variable: "ENGRAM_OTEL_ENDPOINT", reason: "expected an http(s) URL such as http://127.0.0.1:4318")
            }
            c.otelEndpoint = raw
        }
        c.otelServiceName = reader.string("ENGRAM_OTEL_SERVICE_NAME")
        if let raw = reader.string("ENGRAM_OTEL_SAMPLE_RATIO") {
            guard let ratio = Double(raw), (0...1).contains(ratio) else {
                throw ConfigurationError(variable: "ENGRAM_OTEL_SAMPLE_RATIO", reason: "expected a number from 0 to 1")
            }
            c.otelSampleRatio = ratio
        }
        if c.extractor == .openai || c.embedder == .openai, c.openAIKey == nil {
            throw ConfigurationError(variable: "OPENAI_API_KEY", reason: "required when ENGRAM_EXTRACTOR or ENGRAM_EMBEDDER is openai")
        }
        return c
    }

    /// The ElevenLabs Conversations API client; fails with a clear message without `ELEVENLABS_API_KEY`.
    public func elevenLabsClient() throws -> ElevenLabsClient {
        guard let key = elevenLabsAPIKey else {
            throw ConfigurationError(
                variable: "ELEVENLABS_API_KEY",
                reason: "required: an ElevenLabs API key that can read Conversational AI conversations (ElevenLabs → Developers → API keys)")
        }
        return ElevenLabsClient(baseURL: elevenLabsBaseURL, apiKey: key)
    }

    /// Fails with the variable's name when a value an executable needs is missing.
    public func require<T>(_ keyPath: KeyPath<EngramConfiguration, T?>, _ variable: String) throws -> T {
        guard let value = self[keyPath: keyPath] else {
            throw ConfigurationError(variable: variable, reason: "required")
        }
        return value
    }

    /// The process environment, with `./data/dev.env` filling variables that are not set.
    public static func environmentWithDevFile(path: String = "./data/dev.env") -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return environment }
        for line in text.split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.hasPrefix("#"), let equals = trimmed.firstIndex(of: "=") else { continue }
            var key = String(trimmed[..<equals]).trimmingCharacters(in: .whitespaces)
            if key.hasPrefix("export ") { key = String(key.dropFirst(7)).trimmingCharacters(in: .whitespaces) }
            var value = String(trimmed[trimmed.index(after: equals)...]).trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.first == value.last, value.first == "\"" || value.first == "'" {
                value = String(value.dropFirst().dropLast())
            }
            if environment[key] == nil { environment[key] = value }
        }
        return environment
    }
}

/// Typed reads of environment variables; empty values count as unset.
struct EnvironmentReader {
    let environment: [String: String]
    init(_ environment: [String: String]) { self.environment = environment }

    func string(_ name: String) -> String? {
        guard let value = environment[name], !value.isEmpty else { return nil }
        return value
    }

    func int(_ name: String, range: ClosedRange<Int>) throws -> Int? {
        guard let raw = string(name) else { return nil }
        guard let value = Int(raw), range.contains(value) else {
            throw ConfigurationError(variable: name, reason: "expected an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    func milliseconds(_ name: String, range: ClosedRange<Int> = 0...(7 * 86_400_000)) throws -> Duration? {
        try int(name, range: range).map { .milliseconds($0) }
    }

    func bool(_ name: String) throws -> Bool? {
        guard let raw = string(name)?.lowercased() else { return nil }
        switch raw {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw ConfigurationError(variable: name, reason: "expected true or false")
        }
    }

    func enumValue<E: RawRepresentable>(_ name: String, _ type: E.Type) throws -> E? where E.RawValue == String {
        guard let raw = string(name) else { return nil }
        guard let value = E(rawValue: raw.lowercased()) else {
            throw ConfigurationError(variable: name, reason: "unknown value")
        }
        return value
    }
}

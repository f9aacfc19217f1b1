import EngramApp
import EngramCore
import EngramProviders
import EngramQueue
import EngramStore
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// Builds the gateway from configuration: store, queue, controllers, middleware.
/// `store` replaces the configured backend (tests wrap the real store to stall it).
/// `observability`: services that must outlive the others (the trace exporter), run first.
func buildApplication(
    configuration: EngramConfiguration, clock: WallClock = .system, store: (any MemoryStore)? = nil, logger: Logger? = nil,
    observability: [any Service] = []
) async throws -> some ApplicationProtocol {
    let logger = logger ?? Logging.Logger(label: "engram-gateway")
    let gateway = try await buildGateway(configuration: configuration, clock: clock, store: store, logger: logger, observability: observability)
    return Application(
        router: gateway.router,
        // Closes keep-alive connections left idle and uploads that stall mid-body.
        server: .http1(configuration: .init(idleTimeout: TimeAmount(configuration.httpIdleTimeout))),
        configuration: .init(address: .hostname(configuration.httpHost, port: configuration.httpPort), serverName: "engram-gateway"),
        services: gateway.services,
        logger: logger)
}

/// The gateway's router (`buildRouter`) and the services that run beside it, built from
/// configuration; `buildApplication` puts them behind the HTTP server (tests also list the routes).
func buildGateway(
    configuration: EngramConfiguration, clock: WallClock = .system, store: (any MemoryStore)? = nil, logger: Logger,
    observability: [any Service] = []
) async throws -> (router: Router<GatewayRequestContext>, services: [any Service]) {
    _ = try configuration.require(\.apiKey, "ENGRAM_API_KEY")
    let webhookSecret = try configuration.require(\.webhookSecret, "ENGRAM_WEBHOOK_SECRET")
    let keyRing = try configuration.keyRing()
    // A store opened here is closed here: it runs as a service, after the trace exporter and
    // before everything that uses it, so graceful shutdown closes its pool last.
    let injected = store != nil
    let store: any MemoryStore = if let store { store } else { try await StoreFactory.open(configuration, logger: logger) }
    let embedder = try ProviderFactory.embedder(configuration)
    let vault = MemoryVault(
        store: store, keyRing: keyRing, embedder: embedder, termIndexCache: TermIndexCache(maxBytes: configuration.termIndexMaxBytes), clock: clock)
    guard let defaultTenant = try await vault.defaultTenant(consentMode: configuration.consentMode) else {
        throw StoreError.notFound("default tenant")
    }
    let queue = RedisEventQueue(
        endpoint: configuration.redis, timeout: configuration.redisTimeout, keys: QueueKeys(prefix: configuration.queuePrefix))
    let intake = PostCallIntake(
        secrets: [webhookSecret] + (configuration.webhookSecretPrevious.map { [$0] } ?? []),
        tolerancePast: configuration.signatureTolerancePast, toleranceFuture: configuration.signatureToleranceFuture,
        maxBodyBytes: configuration.maxBodyBytes, cipher: keyRing.envelopeCipher, clock: clock)
    let reinforcement = vault.reinforcementBuffer()
    let decoy = try vault.webhookDecoy()
    // What the environment's keys and the post-call path without a tenant know of the default
    // tenant: read again at most a second after the last read, so `engram tenant` changes need no restart.
    let defaultID = defaultTenant.id
    let recentDefault = RecentValue(defaultTenant) { try await vault.tenant(defaultID) }
    let recentDefaultWebhook = RecentValue(try await vault.webhookTenant(defaultID, decoy: decoy)) {
        try await vault.webhookTenant(defaultID, decoy: decoy)
    }
    let ingest = DurableIngest(
        queue: queue, spool: try Spool(directory: configuration.spoolDirectory, logger: logger), ttlSeconds: configuration.dedupeTTLSeconds)
    let services = GatewayServices(
        configuration: configuration, vault: vault, queue: queue, ingest: ingest, intake: intake,
        precall: PrecallContextBuilder(vault: vault, characterBudget: configuration.precallContextChars),
        reinforcement: reinforcement, defaultTenant: recentDefault, defaultWebhook: recentDefaultWebhook,
        defaultTenantID: defaultID, clock: clock,
        rateLimiter: RateLimiter(
            client: RedisClient(endpoint: configuration.redis, timeout: configuration.redisTimeout, connections: 2),
            keys: QueueKeys(prefix: configuration.queuePrefix), perMinute: configuration.rateLimitPerMinute, burst: configuration.rateLimitBurst),
        webhookDecoy: decoy,
        unverifiedBodies: UnverifiedBodyBudget(limit: configuration.unverifiedBodyBudgetBytes),
        erasure: ErasurePurge(
            vault: vault, queue: queue, backupDirectory: nil, deadLetterRetention: Double(configuration.deadLetterRetentionDays) * 86_400))

    let router = buildRouter(services)

    var background: [any Service] =
        observability + (injected ? [] : StoreFactory.services(for: store)) + [
            ReinforcementFlusher(buffer: reinforcement, interval: configuration.reinforcementFlushInterval, logger: logger),
            SpoolDrainer(ingest: ingest, logger: logger),
            SpoolErasureJob(purge: services.erasure, spool: ingest.spool, interval: configuration.erasurePurgeInterval, logger: logger),
        ]
    // The metrics listener, apart from the public port (no request log, not behind the Ingress).
    if configuration.gatewayMetricsPort > 0 {
        let metrics = MetricsController(configuration: configuration, queue: queue, spool: ingest.spool)
        background.append(metrics.application(logger: logger))
    }
    return (router, background)
}

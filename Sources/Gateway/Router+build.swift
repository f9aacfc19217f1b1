import EngramApp
import EngramCore
import EngramObservability
import EngramProviders
import EngramQueue
import Hummingbird

/// The gateway's routes, grouped by who may call them. Authentication is middleware on each
/// group, never a call inside a handler; a handler behind it gets a context in which the caller
/// (or the verified webhook) cannot be missing. `RouteAccessTests` sends every route of
/// this router every kind of wrong credential: a route added outside these groups fails it.
func buildRouter(_ services: GatewayServices) -> Router<GatewayRequestContext> {
    let configuration = services.configuration
    let router = Router(context: GatewayRequestContext.self)
    if configuration.otelEndpoint != nil { router.add(middleware: RequestTracingMiddleware()) }
    router.add(middleware: RequestLogMiddleware())
    router.add(middleware: ErrorMiddleware())

    let spool = services.ingest.spool
    let erasure = ErasurePropagation(purge: services.erasure, spool: spool)

    // Public: the probes.
    router.addRoutes(HealthController(vault: services.vault, queue: services.queue, spool: spool).endpoints)
    // The metrics scrape on the public port: only with a key of its own.
    if let key = configuration.metricsKey {
        router.group()
            .add(middleware: MetricsKeyMiddleware(key: key))
            .addRoutes(MetricsController(configuration: configuration, queue: services.queue, spool: spool).endpoints)
    }

    // ElevenLabs' post-call webhooks: the HMAC signature of the body, with the tenant's secrets.
    router.group()
        .add(
            middleware: WebhookSignatureMiddleware(
                configuration: configuration, vault: services.vault, intake: services.intake, defaultTenantID: services.defaultTenantID,
                defaultWebhook: services.defaultWebhook, decoy: services.webhookDecoy, unverifiedBodies: services.unverifiedBodies)
        )
        .group(context: WebhookRequestContext.self)
        .addRoutes(PostCallController(vault: services.vault, ingest: services.ingest).endpoints)

    // Tool keys: what the agent calls during a call.
    let toolCallers = router.group()
        .add(middleware: Authenticator(scope: .tool, configuration: configuration, vault: services.vault, defaultTenant: services.defaultTenant))
        .group(context: AuthenticatedRequestContext.self)
    let precall = ConversationInitController(
        configuration: configuration, precall: services.precall, reinforcement: services.reinforcement, rateLimiter: services.rateLimiter,
        clock: services.clock)
    // A ringing phone and a live LLM turn are never refused for their rate: over it they go on without memory.
    toolCallers.addRoutes(precall.webhookEndpoints)
    toolCallers.addRoutes(
        LLMProxyController(
            configuration: configuration, vault: services.vault, precall: services.precall, reinforcement: services.reinforcement,
            rateLimiter: services.rateLimiter, clock: services.clock,
            upstream: LLMUpstream(
                baseURL: configuration.llmUpstreamURL, apiKey: configuration.llmUpstreamKey, timeout: configuration.llmUpstreamTimeout)
        ).endpoints)
    let tools = ToolsController(
        configuration: configuration, vault: services.vault, ingest: services.ingest, reinforcement: services.reinforcement,
        erasure: erasure, clock: services.clock)
    toolCallers.group()
        .add(middleware: RateLimitMiddleware(rateLimiter: services.rateLimiter))
        .addRoutes(precall.endpoints)
        .addRoutes(tools.endpoints)
    // The same tools over the Model Context Protocol (Sources/Gateway/MCP): only `tools/call` is rate limited.
    toolCallers.addRoutes(MCPController(configuration: configuration, tools: MCPTools(actions: tools, rateLimiter: services.rateLimiter)).endpoints)

    // Admin keys: the management API.
    router.group()
        .add(middleware: Authenticator(scope: .admin, configuration: configuration, vault: services.vault, defaultTenant: services.defaultTenant))
        .group(context: AuthenticatedRequestContext.self)
        .add(middleware: RateLimitMiddleware(rateLimiter: services.rateLimiter))
        .addRoutes(ManagementController(configuration: configuration, vault: services.vault, erasure: erasure, clock: services.clock).endpoints)
    return router
}

import EngramApp
import EngramCore
import EngramObservability
import EngramQueue
import Hummingbird
import Logging

/// The gateway's Prometheus endpoint: its own listener on `ENGRAM_METRICS_HOST`:`ENGRAM_GATEWAY_METRICS_PORT`
/// (no request log, no request counter, not reachable through the public port's ingress), and
/// on the public port only with `ENGRAM_METRICS_KEY` as a bearer token.
struct MetricsController {
    let configuration: EngramConfiguration
    let queue: any EventQueue
    let spool: Spool

    /// Samples what only a scrape sees (spool depth, whether Redis answers) and renders the registry.
    func render() async -> Response {
        EngramMetrics.spoolDepth(spool.depth)
        let redisUp = (try? await withTimeout(.milliseconds(500)) { try await queue.ping() }) != nil
        EngramMetrics.redisUp(redisUp)
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: MetricsExport.render())))
    }

    /// `/metrics` for the public router, which adds it only when a metrics key is configured
    /// (404 otherwise), behind `MetricsKeyMiddleware` (401 without the key).
    var endpoints: RouteCollection<GatewayRequestContext> {
        RouteCollection(context: GatewayRequestContext.self)
            .get("/metrics") { _, _ in await render() }
    }

    /// The separate listener, as a service of the gateway's application.
    func application(logger: Logger) -> some ApplicationProtocol {
        let router = Router()
        router.get("/metrics") { _, _ in await render() }
        router.get("/health/live") { _, _ in "ok" }
        return Application(
            router: router,
            configuration: .init(
                address: .hostname(configuration.metricsHost, port: configuration.gatewayMetricsPort), serverName: "engram-gateway-metrics"),
            logger: logger)
    }
}

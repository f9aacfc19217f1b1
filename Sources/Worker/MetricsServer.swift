import EngramApp
import EngramObservability
import EngramQueue
import Hummingbird
import Logging

/// The worker's Prometheus endpoint (`ENGRAM_METRICS_HOST`:`ENGRAM_METRICS_PORT`) and liveness
/// probe (`/health/live`), plus a sampler that records queue depths, whether Redis answers and
/// memory counts every few seconds.
enum MetricsServer {
    static func application(host: String, port: Int, logger: Logger) -> some ApplicationProtocol {
        let router = Router()
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: MetricsExport.render())))
        }
        router.get("/health/live") { _, _ in "ok" }
        return Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "engram-worker-metrics"), logger: logger)
    }

    static func sampler(queue: any EventQueue, vault: MemoryVault, logger: Logger) -> PeriodicJob {
        PeriodicJob(name: "metrics-sampler", interval: .seconds(5), logger: logger) {
            // engram_redis_up says whether engram_queue_depth is current: a depth keeps its last
            // value while Redis cannot be read.
            do {
                EngramMetrics.queueDepth(try await queue.stats())
                EngramMetrics.redisUp(true)
            } catch {
                EngramMetrics.redisUp(false)
                throw error
            }
            for (status, count) in try await vault.memoryCountsByStatus() { EngramMetrics.memories(status: status, count: count) }
        }
    }
}

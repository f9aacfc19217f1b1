import EngramApp
import EngramObservability
import Foundation
import Logging
import ServiceLifecycle

/// engram-worker: read configuration, build the services, run until SIGTERM.
@main
struct Worker {
    static func main() async {
        do {
            let configuration = try EngramConfiguration.fromEnvironment()
            EngramLogging.bootstrap(service: "engram-worker", level: configuration.logLevel, traceMetadata: configuration.otelEndpoint != nil)
            MetricsExport.bootstrap(.worker)
            let logger = Logger(label: "engram-worker")
            // Reads first: before the worker starts its threads (they inherit it), then once a second.
            CPUPriority.keepLowered(to: configuration.workerNice, logger: logger)
            // Before anything makes an HTTP client: the shared one picks its tracer when first used.
            let tracing = try EngramTracing.bootstrap(configuration: configuration, service: "engram-worker", logger: logger)
            let runtime = try await buildWorker(configuration: configuration, logger: logger)
            // The exporter first, so it stops last and flushes the spans of the events in flight.
            let services = (tracing.map { [$0] } ?? []) + workerServices(runtime, configuration: configuration, logger: logger)
            let group = ServiceGroup(
                configuration: .init(
                    services: services.map { .init(service: $0) },
                    gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            logger.info("worker started", metadata: ["worker": "\(configuration.workerID)"])
            try await group.run()
        } catch {
            FileHandle.standardError.write(Data("engram-worker: \(error)\n".utf8))
            exit(1)
        }
    }
}

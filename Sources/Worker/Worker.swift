import Foundation
import Logging
import ServiceLifecycle
import Shared

/// engram-worker: read configuration, build the services, run until SIGTERM.
@main
struct Worker {
    static func main() async {
        do {
            let configuration = try EngramConfiguration.fromEnvironment()
            EngramLogging.bootstrap(service: "engram-worker", level: configuration.logLevel)
            MetricsExport.bootstrap()
            let logger = Logger(label: "engram-worker")
            let runtime = try await buildWorker(configuration: configuration, logger: logger)
            let group = ServiceGroup(configuration: .init(
                services: workerServices(runtime, configuration: configuration, logger: logger).map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            logger.info("worker started", metadata: ["worker": "\(configuration.workerID)"])
            try await group.run()
        } catch {
            FileHandle.standardError.write(Data("engram-worker: \(error)\n".utf8))
            exit(1)
        }
    }
}

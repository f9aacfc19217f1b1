import EngramApp
import EngramObservability
import Foundation
import Hummingbird
import Logging

/// engram-gateway: read configuration, build, run. Nothing else.
@main
struct App {
    static func main() async {
        do {
            let configuration = try EngramConfiguration.fromEnvironment()
            EngramLogging.bootstrap(service: "engram-gateway", level: configuration.logLevel, traceMetadata: configuration.otelEndpoint != nil)
            MetricsExport.bootstrap(.gateway)
            let tracing = try EngramTracing.bootstrap(
                configuration: configuration, service: "engram-gateway", logger: Logger(label: "engram-gateway"))
            let app = try await buildApplication(configuration: configuration, observability: tracing.map { [$0] } ?? [])
            try await app.runService()
        } catch {
            FileHandle.standardError.write(Data("engram-gateway: \(error)\n".utf8))
            exit(1)
        }
    }
}

import Foundation
import Hummingbird
import Logging
import Shared

/// engram-gateway: read configuration, build, run. Nothing else.
@main
struct App {
    static func main() async {
        do {
            let configuration = try EngramConfiguration.fromEnvironment()
            EngramLogging.bootstrap(service: "engram-gateway", level: configuration.logLevel)
            MetricsExport.bootstrap()
            let app = try await buildApplication(configuration: configuration)
            try await app.runService()
        } catch {
            FileHandle.standardError.write(Data("engram-gateway: \(error)\n".utf8))
            exit(1)
        }
    }
}

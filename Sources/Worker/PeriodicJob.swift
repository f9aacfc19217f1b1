import Logging
import ServiceLifecycle

/// Runs `body` every `interval` until graceful shutdown. A failing run is logged (by error
/// class) and the job carries on.
struct PeriodicJob: Service {
    let name: String
    let interval: Duration
    let logger: Logger
    let body: @Sendable () async throws -> Void

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await body()
            } catch is CancellationError {
                break  // the group is stopping
            } catch {
                logger.error("periodic job failed", metadata: ["job": "\(name)", "error_class": "\(type(of: error))"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}

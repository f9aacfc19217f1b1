import EngramObservability
import Logging
import ServiceLifecycle

/// Runs `body` every `interval` until graceful shutdown. A failing run is logged (by error
/// class) and the job carries on.
struct PeriodicJob: Service {
    let name: String
    let interval: Duration
    let logger: Logger
    let body: @Sendable () async throws -> Void
    /// A job failing every run (Redis down) logs its first failure, then one line per 30 s with a count.
    let failures = RepeatingFailureLog("periodic job failed")

    init(name: String, interval: Duration, logger: Logger, body: @escaping @Sendable () async throws -> Void) {
        self.name = name
        self.interval = interval
        self.logger = logger
        self.body = body
    }

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await body()
                failures.succeeded(logger: logger, metadata: ["job": "\(name)"])
            } catch is CancellationError {
                break  // the group is stopping
            } catch {
                failures.failed(error, logger: logger, metadata: ["job": "\(name)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}

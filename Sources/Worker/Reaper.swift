import Logging
import ServiceLifecycle
import Shared

/// Returns the in-flight events of workers whose heartbeat expired to the pending list.
enum Reaper {
    static func job(queue: any EventQueue, interval: Duration, logger: Logger) -> PeriodicJob {
        PeriodicJob(name: "reaper", interval: interval, logger: logger) {
            let moved = try await queue.reap()
            if moved > 0 { logger.warning("requeued events of a dead worker", metadata: ["count": "\(moved)"]) }
        }
    }
}

/// Keeps this worker's heartbeat key alive; cleared at shutdown, after the processor stopped.
struct Heartbeat: Service {
    let queue: any EventQueue
    let worker: String
    let ttl: Duration
    let logger: Logger
    let failures = RepeatingFailureLog("heartbeat failed")

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await queue.heartbeat(worker: worker, ttl: ttl)
                failures.succeeded(logger: logger)
            } catch {
                failures.failed(error, logger: logger)
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: ttl / 3) }
        }
        try? await queue.clearHeartbeat(worker: worker)
    }
}

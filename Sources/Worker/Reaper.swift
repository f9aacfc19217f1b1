import EngramObservability
import EngramQueue
import Logging
import ServiceLifecycle

/// Returns the in-flight events of workers whose heartbeat expired to the pending list, each
/// return counted as a death of its worker (`Envelope.deaths`, apart from its processing
/// attempts); an event whose workers died `maxAttempts` times goes to the dead letters as
/// `worker_died` (a poison event stops there instead of killing every worker).
enum Reaper {
    static func job(queue: any EventQueue, interval: Duration, maxAttempts: Int, logger: Logger) -> PeriodicJob {
        PeriodicJob(name: "reaper", interval: interval, logger: logger) {
            report(try await queue.reap(maxAttempts: maxAttempts), logger: logger, source: "dead worker")
        }
    }

    /// Logs and counts what a return of in-flight events did.
    static func report(_ returned: InFlightReturn, logger: Logger, source: String) {
        if returned.requeued > 0 {
            logger.warning("requeued in-flight events of a \(source)", metadata: ["count": "\(returned.requeued)"])
        }
        if returned.deadLettered > 0 {
            EngramMetrics.eventDeadLettered(reason: workerDiedErrorClass, count: returned.deadLettered)
            logger.error(
                "dead-lettered events whose workers died holding them ENGRAM_MAX_ATTEMPTS times",
                metadata: [
                    "count": "\(returned.deadLettered)", "error_class": "\(workerDiedErrorClass)",
                ])
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

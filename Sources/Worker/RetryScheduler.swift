import EngramCore
import EngramQueue
import Foundation
import Logging

/// Moves retries whose time has come back to the pending list.
enum RetryScheduler {
    static func job(queue: any EventQueue, interval: Duration, logger: Logger) -> PeriodicJob {
        PeriodicJob(name: "retry-scheduler", interval: interval, logger: logger) {
            _ = try await queue.promoteDueRetries(now: Date(), limit: 500)
        }
    }

    /// Exponential backoff with jitter: base · 2^attempt, capped, drawn from its upper half;
    /// never sooner than a provider's `Retry-After`.
    static func delay(attempt: Int, base: Duration, cap: Duration, retryAfter: Double? = nil) -> Duration {
        let exponential = min(cap.seconds, base.seconds * pow(2, Double(attempt)))
        var seconds = Double.random(in: (exponential / 2)...max(exponential, 0.001))
        // A provider's Retry-After is honoured up to a day: `1e300` must not park an event forever.
        if let retryAfter, retryAfter.isFinite { seconds = max(seconds, min(retryAfter, 86_400)) }
        return SafeNumber.milliseconds(fromSeconds: seconds)
    }
}

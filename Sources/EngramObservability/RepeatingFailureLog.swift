import EngramCore
import Foundation
import Logging
import Synchronization

/// Logs a failure that repeats (Redis down: every loop fails several times a second) once when
/// it starts, then at most once per `interval` with how many times it happened since, and once
/// when it ends: an outage reads as a few lines, not thousands.
public final class RepeatingFailureLog: Sendable {
    private struct State {
        var failing = false
        var suppressed = 0
        var total = 0
        var lastLogged = ContinuousClock.now
        var started = ContinuousClock.now
    }

    private let state = Mutex(State())
    private let interval: Duration
    private let message: String

    public init(_ message: String, interval: Duration = .seconds(30)) {
        self.message = message
        self.interval = interval
    }

    /// Records one failure; logs it when it is the first, or when `interval` has passed since the last line.
    public func failed(_ error: any Error, logger: Logger, metadata: Logger.Metadata = [:], now: ContinuousClock.Instant = .now) {
        let line: (first: Bool, count: Int, since: Duration)? = state.withLock { s in
            s.total += 1
            if !s.failing {
                s = State(failing: true, suppressed: 0, total: 1, lastLogged: now, started: now)
                return (true, 1, .zero)
            }
            s.suppressed += 1
            guard now - s.lastLogged >= interval else { return nil }
            let count = s.suppressed
            s.suppressed = 0
            s.lastLogged = now
            return (false, count, now - s.started)
        }
        guard let line else { return }
        var fields = metadata
        fields["error_class"] = "\(type(of: error))"
        if let cause = Self.safeDescription(error) { fields["error"] = "\(cause)" }
        if line.first {
            logger.error("\(message)", metadata: fields)
        } else {
            fields["failures_since_last_log"] = "\(line.count)"
            fields["failing_for_s"] = "\(Int(line.since.components.seconds))"
            logger.error("\(message) (still failing)", metadata: fields)
        }
    }

    /// Records a success; logs once that a failure run has ended.
    public func succeeded(logger: Logger, metadata: Logger.Metadata = [:], now: ContinuousClock.Instant = .now) {
        let ended: (total: Int, since: Duration)? = state.withLock { s in
            guard s.failing else { return nil }
            let result = (s.total, now - s.started)
            s = State()
            return result
        }
        guard let ended else { return }
        var fields = metadata
        fields["failures"] = "\(ended.total)"
        fields["failing_for_s"] = "\(Int(ended.since.components.seconds))"
        logger.notice("\(message): recovered", metadata: fields)
    }

    /// Descriptions that are known to carry no personal data (addresses and server replies only).
    static func safeDescription(_ error: any Error) -> String? {
        switch error {
        case let error as any DescribedWithoutPersonalData: return error.description
        default: return nil
        }
    }
}

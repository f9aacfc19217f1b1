import Foundation
import Metrics
import Prometheus

/// Engram's metric names, in one place: snake_case with units. Recorded through swift-metrics;
/// exported in Prometheus text format by `MetricsExport`.
public enum EngramMetrics {
    public static func httpRequest(route: String, method: String, status: Int, duration: Duration) {
        let labels = [("route", route), ("method", method), ("status", String(status))]
        Counter(label: "engram_http_requests_total", dimensions: labels).increment()
        Metrics.Timer(label: "engram_http_request_duration_seconds", dimensions: labels).recordNanoseconds(duration.nanoseconds)
    }

    public static func postCallAcknowledged(outcome: String, duration: Duration) {
        Counter(label: "engram_postcall_events_total", dimensions: [("outcome", outcome)]).increment()
        Metrics.Timer(label: "engram_postcall_ack_seconds").recordNanoseconds(duration.nanoseconds)
    }

    /// A post-call upload refused because unverified bodies already hold the whole budget.
    public static func unverifiedBodyRefused() {
        Counter(label: "engram_unverified_body_refused_total").increment()
    }

    /// A request whose client went away before it was answered (not a server error).
    public static func clientAborted(route: String) {
        Counter(label: "engram_http_client_aborts_total", dimensions: [("route", route)]).increment()
    }

    public static func precallFallback(reason: String) {
        Counter(label: "engram_precall_fallback_total", dimensions: [("reason", reason)]).increment()
    }

    public static func eventProcessed(outcome: String, lag: Double?) {
        Counter(label: "engram_events_processed_total", dimensions: [("outcome", outcome)]).increment()
        if let lag { Metrics.Timer(label: "engram_processing_lag_seconds").recordNanoseconds(SafeNumber.clampedInt64(max(0, lag) * 1e9)) }
    }

    /// Events moved to the dead letters, by reason (`worker_died`, `permanent`, `attempts_exhausted`, `invalid_envelope`).
    public static func eventDeadLettered(reason: String, count: Int = 1) {
        guard count > 0 else { return }
        Counter(label: "engram_events_dead_lettered_total", dimensions: [("reason", reason)]).increment(by: Int64(count))
    }

    /// Work one event was not allowed (its budget): turns dropped, turns clipped, memories dropped.
    public static func eventWorkCut(turns: Int, clippedTurns: Int, memories: Int) {
        for (what, count) in [("turns_dropped", turns), ("turns_clipped", clippedTurns), ("memories_dropped", memories)] where count > 0 {
            Counter(label: "engram_event_work_cut_total", dimensions: [("what", what)]).increment(by: Int64(count))
        }
    }

    public static func providerCall(kind: String, provider: String, duration: Duration, errorClass: String?) {
        Metrics.Timer(label: "engram_\(kind)_duration_seconds", dimensions: [("provider", provider)]).recordNanoseconds(duration.nanoseconds)
        if let errorClass {
            Counter(label: "engram_\(kind)_errors_total", dimensions: [("provider", provider), ("error_class", errorClass)]).increment()
        }
    }

    public static func queueDepth(_ stats: QueueStats) {
        for (list, value) in [("events", stats.pending), ("processing", stats.processing), ("retry", stats.retry), ("dead", stats.dead)] {
            Gauge(label: "engram_queue_depth", dimensions: [("list", list)]).record(value)
        }
    }

    public static func spoolDepth(_ depth: Int) { Gauge(label: "engram_spool_depth").record(depth) }

    public static func breakerState(_ name: String, _ state: CircuitBreaker.State) {
        Gauge(label: "engram_circuit_breaker_state", dimensions: [("name", name)]).record(state.rawValue)
    }

    public static func memories(status: String, count: Int) {
        Gauge(label: "engram_memories", dimensions: [("status", status)]).record(count)
    }
}

/// Bootstraps swift-metrics into a Prometheus registry (once per process) and renders it.
public enum MetricsExport {
    public static let registry = PrometheusCollectorRegistry()
    private static let once: Void = {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(20),
            .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
            .seconds(5), .seconds(10), .seconds(30),
        ]
        MetricsSystem.bootstrap(factory)
    }()

    public static func bootstrap() { _ = once }

    public static func render() -> String { registry.emitToString() }
}

extension Duration {
    public var nanoseconds: Int64 {
        let (s, atto) = components
        // Saturating: a duration past 292 years is a measurement error, not a reason to trap.
        let (scaled, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return s < 0 ? .min : .max }
        let (total, overflowSum) = scaled.addingReportingOverflow(atto / 1_000_000_000)
        return overflowSum ? (s < 0 ? .min : .max) : total
    }
}

import EngramCore
import Foundation
import Metrics
import Prometheus

/// Engram's metric names, in one place: snake_case with units. Recorded through swift-metrics;
/// exported in Prometheus text format by `MetricsExport`.
public enum EngramMetrics {
    public static func httpRequest(route: String, method: String, status: Int, duration: Duration) {
        // The status stays off the histogram: one bucket set per route and method, not per status code.
        Counter(label: "engram_http_requests_total", dimensions: [("route", route), ("method", method), ("status", String(status))]).increment()
        Metrics.Timer(label: "engram_http_request_duration_seconds", dimensions: [("route", route), ("method", method)]).recordNanoseconds(
            duration.nanoseconds)
    }

    public static func postCallAcknowledged(outcome: String, duration: Duration) {
        Counter(label: "engram_postcall_events_total", dimensions: [("outcome", outcome)]).increment()
        Metrics.Timer(label: "engram_postcall_ack_seconds").recordNanoseconds(duration.nanoseconds)
    }

    /// One step of the post-call tenant lookup (tenant_read, secrets_read, unwrap): the same
    /// steps for an unknown tenant as for a known one (`MemoryVault.webhookTenant`).
    public static func postCallTenantStep(_ step: String) {
        Counter(label: "engram_postcall_tenant_steps_total", dimensions: [("step", step)]).increment()
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

    /// A custom-LLM proxy turn that went on without memory (`deadline`, `store_error`, `rate_limited`).
    public static func llmMemoryMiss(reason: String) {
        Counter(label: "engram_llm_memory_misses_total", dimensions: [("reason", reason)]).increment()
    }

    /// A SQLite point read that went the ordinary way instead (`SQLiteMemoryStore.pointReading`):
    /// `busy` (the file was locked), `error` (any other failure of the point reader).
    public static func pointReadFallback(reason: String) {
        Counter(label: "engram_store_point_read_fallbacks_total", dimensions: [("reason", reason)]).increment()
    }

    /// One MCP message at `/mcp`: `method` (initialize, ping, tools/list, tools/call, other,
    /// notification, invalid) and `outcome` (ok, error, tool_error).
    public static func mcpMessage(method: String, outcome: String) {
        Counter(label: "engram_mcp_messages_total", dimensions: [("method", method), ("outcome", outcome)]).increment()
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

    public static func spoolDepth(_ depth: Int) { Gauge(label: "engram_spool_depth").record(depth) }

    /// One series per state: 1 for the breaker's current state, 0 for the others.
    public static func breakerState(_ name: String, _ state: CircuitBreaker.State) {
        for (label, value) in [("closed", CircuitBreaker.State.closed), ("half_open", .halfOpen), ("open", .open)] {
            Gauge(label: "engram_circuit_breaker_state", dimensions: [("name", name), ("state", label)]).record(value == state ? 1 : 0)
        }
    }

    /// Whether the last Redis call of the sampler (worker) or the last scrape's ping (gateway) succeeded.
    public static func redisUp(_ up: Bool) { Gauge(label: "engram_redis_up").record(up ? 1 : 0) }

    public static func memories(status: String, count: Int) {
        Gauge(label: "engram_memories", dimensions: [("status", status)]).record(count)
    }
}

/// Bootstraps swift-metrics into a Prometheus registry (once per process) and renders it, with
/// `# HELP` from `EngramMetrics.help`, the process metrics and `engram_build_info`.
public enum MetricsExport {
    public static let registry = PrometheusCollectorRegistry()
    private static let once: Void = {
        var factory = PrometheusHelpMetricsFactory(registry: registry, help: EngramMetrics.help)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(20),
            .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
            .seconds(5), .seconds(10), .seconds(30),
        ]
        MetricsSystem.bootstrap(factory)
        EngramMetrics.buildInfo()
        ProcessMetrics.shared.register(in: registry)
    }()

    /// Once per process; `role` also creates that process's counters at zero.
    public static func bootstrap(_ role: EngramMetrics.Role? = nil) {
        _ = once
        if let role { EngramMetrics.initialiseAtZero(role) }
    }

    public static func render() -> String {
        ProcessMetrics.shared.sample()
        return registry.emitToString()
    }
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

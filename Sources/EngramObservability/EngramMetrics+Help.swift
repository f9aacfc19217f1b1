import EngramCore
import Metrics

/// `# HELP` text of every metric family, and the series that exist from the start.
/// A family missing here has no HELP line; `MetricsHelpTests` fails on it.
extension EngramMetrics {
    public static let help: [String: String] = [
        "engram_http_requests_total": "HTTP requests answered by the gateway, by route template, method and status (probes and /metrics excluded).",
        "engram_http_request_duration_seconds": "Gateway request duration by route template and method.",
        "engram_http_client_aborts_total": "Requests whose client went away before the answer, by route template.",
        "engram_postcall_events_total": "Post-call webhooks acknowledged, by outcome (queued, duplicate, spooled, ignored_<reason>).",
        "engram_postcall_ack_seconds": "Time from receiving a post-call webhook to its acknowledgement.",
        "engram_postcall_tenant_steps_total":
            "Steps of the post-call tenant lookup (tenant_read, secrets_read, unwrap): the same for an unknown tenant as for a known one.",
        "engram_unverified_body_refused_total": "Post-call uploads refused with 503 because unverified bodies held the whole byte budget.",
        "engram_precall_fallback_total": "Pre-call requests answered with neutral defaults, by reason.",
        "engram_llm_memory_misses_total": "Custom-LLM proxy turns forwarded without memory, by reason (deadline, store_error, rate_limited).",
        "engram_mcp_messages_total":
            "MCP messages at /mcp, by method (initialize, ping, tools/list, tools/call, other, notification, invalid) and outcome (ok, error, tool_error).",
        "engram_store_point_read_fallbacks_total":
            "SQLite point reads (a user, memories by id) that went the ordinary way, by reason (busy, error); the read itself still answers.",
        "engram_events_processed_total": "Queue events handled by the worker, by outcome.",
        "engram_events_dead_lettered_total":
            "Events moved to the dead letters, by reason (worker_died, permanent, attempts_exhausted, invalid_envelope).",
        "engram_event_work_cut_total": "Work cut from events past the per-event budget (turns_dropped, turns_clipped, memories_dropped).",
        "engram_processing_lag_seconds": "Time from a webhook's receipt to its event being stored by the worker.",
        "engram_extraction_duration_seconds": "Duration of memory-extraction calls, by provider.",
        "engram_extraction_errors_total": "Failed memory-extraction calls, by provider and error class.",
        "engram_embedding_duration_seconds": "Duration of embedding calls, by provider.",
        "engram_embedding_errors_total": "Failed embedding calls, by provider and error class.",
        "engram_queue_depth": "Events in each Redis list (events, processing, retry, dead), sampled every 5 s; stale while engram_redis_up is 0.",
        "engram_spool_depth": "Events in the gateway's local spool (Redis unreachable), at the last scrape.",
        "engram_circuit_breaker_state": "Provider circuit breaker: 1 for the current state (closed, half_open, open), 0 for the others.",
        "engram_memories": "Stored memories by status, sampled every 5 s by the worker.",
        "engram_redis_up": "1 when the last Redis call of the sampler (worker) or scrape-time ping (gateway) succeeded, 0 when it failed.",
        "engram_build_info": "Always 1; the version label is the running Engram version.",
    ]

    /// Which process exports: each creates only its own series at zero.
    public enum Role: Sendable { case gateway, worker }

    /// Creates the series whose label values are known in advance, at zero, so `rate()` and
    /// `increase()` have a starting point before the first event.
    public static func initialiseAtZero(_ role: Role) {
        // Both processes read users and memories by id through the SQLite point reader.
        for reason in ["busy", "error"] {
            Counter(label: "engram_store_point_read_fallbacks_total", dimensions: [("reason", reason)]).increment(by: 0)
        }
        switch role {
        case .gateway:
            Counter(label: "engram_unverified_body_refused_total").increment(by: 0)
            for step in ["tenant_read", "secrets_read", "unwrap"] {
                Counter(label: "engram_postcall_tenant_steps_total", dimensions: [("step", step)]).increment(by: 0)
            }
            for outcome in ["queued", "duplicate", "spooled"] {
                Counter(label: "engram_postcall_events_total", dimensions: [("outcome", outcome)]).increment(by: 0)
            }
            for reason in ["rate_limited", "no_caller", "budget", "store_error"] {
                Counter(label: "engram_precall_fallback_total", dimensions: [("reason", reason)]).increment(by: 0)
            }
            for reason in ["deadline", "store_error", "rate_limited"] {
                Counter(label: "engram_llm_memory_misses_total", dimensions: [("reason", reason)]).increment(by: 0)
            }
            for method in ["initialize", "ping", "tools/list", "tools/call"] {
                Counter(label: "engram_mcp_messages_total", dimensions: [("method", method), ("outcome", "ok")]).increment(by: 0)
            }
        case .worker:
            for outcome in ["stored", "duplicate", "no_user", "no_consent", "tombstoned", "recorded", "ignored", "dead_letter", "failed"] {
                Counter(label: "engram_events_processed_total", dimensions: [("outcome", outcome)]).increment(by: 0)
            }
            // The worker_died alert needs a series before the first dead letter.
            for reason in ["worker_died", "permanent", "attempts_exhausted", "invalid_envelope"] {
                Counter(label: "engram_events_dead_lettered_total", dimensions: [("reason", reason)]).increment(by: 0)
            }
            for what in ["turns_dropped", "turns_clipped", "memories_dropped"] {
                Counter(label: "engram_event_work_cut_total", dimensions: [("what", what)]).increment(by: 0)
            }
        }
    }

    static func buildInfo() {
        Gauge(label: "engram_build_info", dimensions: [("version", Engram.version)]).record(1)
    }
}

import Foundation
import Logging
import OTel
import ServiceLifecycle
import Tracing

/// OpenTelemetry tracing: swift-distributed-tracing spans exported over OTLP/HTTP (protobuf) when
/// `ENGRAM_OTEL_ENDPOINT` is set. Unset, nothing is bootstrapped and every span is the no-op
/// tracer's. Spans carry ids, counts, classes, durations and status only: never transcripts,
/// phone numbers, memory content or secrets.
public enum EngramTracing {
    /// Bootstraps the process-wide tracer (once, at start, before any HTTP client is made) and
    /// returns the exporter's service, or nil when tracing is off. Run the service first in the
    /// service group, so it stops last and flushes the spans of everything stopped before it.
    public static func bootstrap(configuration: some TracingSettings, service: String, logger: Logger) throws -> (any Service)? {
        guard let otel = otelConfiguration(configuration, service: service) else { return nil }
        let backend = try OTel.makeTracingBackend(configuration: otel)
        InstrumentationSystem.bootstrap(backend.factory)
        logger.info("tracing on", metadata: ["service_name": "\(otel.serviceName)", "sample_ratio": "\(configuration.otelSampleRatio)"])
        return backend.service
    }

    /// swift-otel's configuration for traces only: logs and metrics keep their own bootstraps
    /// (JSON lines, Prometheus). The standard `OTEL_*` variables still apply on top (swift-otel
    /// reads them), e.g. `OTEL_EXPORTER_OTLP_HEADERS` for a collector that wants a token.
    static func otelConfiguration(_ configuration: some TracingSettings, service: String) -> OTel.Configuration? {
        guard let endpoint = configuration.otelEndpoint else { return nil }
        var otel = OTel.Configuration.default
        otel.serviceName = configuration.otelServiceName ?? service
        otel.logs.enabled = false
        otel.metrics.enabled = false
        otel.traces.enabled = true
        otel.traces.exporter = .otlp
        otel.traces.otlpExporter.protocol = .httpProtobuf
        otel.traces.otlpExporter.endpoint = tracesURL(endpoint)
        // Parent-based: the worker follows the gateway's decision, so a trace is kept whole or not at all.
        otel.traces.sampler = .parentBasedTraceIDRatio(ratio: configuration.otelSampleRatio) ?? .parentBasedAlwaysOn
        otel.propagators = [.traceContext]
        // swift-otel's own diagnostics go through our JSON lines. A malformed inbound traceparent
        // makes it log the whole carrier (every request header, Authorization included): dropped.
        let diagnostics = Logger(label: "swift-otel") { label in
            JSONLogHandler(label: label, service: service, level: .warning, droppingMetadataKeys: ["carrier"])
        }
        otel.diagnosticLogger = .custom(diagnostics)
        otel.diagnosticLogLevel = .warning
        return otel
    }

    /// `http://host:4318` → `http://host:4318/v1/traces`; a URL already naming `/v1/traces` is kept.
    static func tracesURL(_ endpoint: String) -> String {
        if endpoint.hasSuffix("/v1/traces") { return endpoint }
        return (endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint) + "/v1/traces"
    }

    /// Runs `operation` in a new span, child of `context`. Unlike the library's `withSpan`, a
    /// thrown error is recorded by its type only (`error.type`), never by its description.
    public static func withSpan<T>(
        _ operationName: String, context: @autoclosure () -> ServiceContext = .current ?? .topLevel, ofKind kind: SpanKind = .internal,
        isolation: isolated (any Actor)? = #isolation, _ operation: (any Span) async throws -> T
    ) async throws -> T {
        let span = startSpan(operationName, context: context(), ofKind: kind)
        defer { span.end() }
        do {
            return try await ServiceContext.withValue(span.context) { try await operation(span) }
        } catch {
            span.recordFailure(error)
            throw error
        }
    }

    /// Adds the active trace and span ids (`trace_id`, `span_id`) to every log line written inside a span.
    public static var loggingMetadataProvider: Logger.MetadataProvider { OTel.makeLoggingMetadataProvider() }
}

/// What tracing reads from the configuration (`EngramConfiguration` conforms in EngramApp): the
/// observability layer stays below the configuration.
public protocol TracingSettings: Sendable {
    /// `ENGRAM_OTEL_ENDPOINT`; nil turns tracing off.
    var otelEndpoint: String? { get }
    var otelServiceName: String? { get }
    var otelSampleRatio: Double { get }
}

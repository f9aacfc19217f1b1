import EngramObservability
import Foundation
import Logging
import OTel
import ServiceLifecycle
import Tracing

/// Tracing's set-up from the configuration: the observability layer knows spans, not `EngramConfiguration`.
extension EngramTracing {
    /// Bootstraps the process-wide tracer (once, at start, before any HTTP client is made) and
    /// returns the exporter's service, or nil when tracing is off. Run the service first in the
    /// service group, so it stops last and flushes the spans of everything stopped before it.
    public static func bootstrap(configuration: EngramConfiguration, service: String, logger: Logger) throws -> (any Service)? {
        guard let otel = otelConfiguration(configuration, service: service) else { return nil }
        let backend = try OTel.makeTracingBackend(configuration: otel)
        InstrumentationSystem.bootstrap(backend.factory)
        logger.info("tracing on", metadata: ["service_name": "\(otel.serviceName)", "sample_ratio": "\(configuration.otelSampleRatio)"])
        return backend.service
    }

    /// swift-otel's configuration for traces only: logs and metrics keep their own bootstraps
    /// (JSON lines, Prometheus). The standard `OTEL_*` variables still apply on top (swift-otel
    /// reads them), e.g. `OTEL_EXPORTER_OTLP_HEADERS` for a collector that wants a token.
    package static func otelConfiguration(_ configuration: EngramConfiguration, service: String) -> OTel.Configuration? {
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
}

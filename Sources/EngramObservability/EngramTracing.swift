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
    /// `http://host:4318` → `http://host:4318/v1/traces`; a URL already naming `/v1/traces` is kept.
    package static func tracesURL(_ endpoint: String) -> String {
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

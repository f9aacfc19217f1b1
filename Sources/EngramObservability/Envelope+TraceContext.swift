import EngramCore
import Tracing

extension Envelope {
    /// Writes the current trace context (W3C `traceparent`, `tracestate`) into the envelope, so
    /// the worker's spans join the trace of the request that queued it. No-op when tracing is off.
    public mutating func attachTraceContext(_ context: ServiceContext? = ServiceContext.current) {
        guard let context else { return }
        var carrier: [String: String] = [:]
        InstrumentationSystem.instrument.inject(context, into: &carrier, using: DictionaryInjector())
        guard let parent = carrier["traceparent"] else { return }
        trace = parent
        traceState = carrier["tracestate"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The trace context the envelope carries, as the parent of the worker's spans; `.topLevel`
    /// when it carries none (queued with tracing off, or by an older gateway).
    public var traceContext: ServiceContext {
        var context = ServiceContext.topLevel
        guard let trace else { return context }
        var carrier = ["traceparent": trace]
        if let traceState { carrier["tracestate"] = traceState }
        InstrumentationSystem.instrument.extract(carrier, into: &context, using: DictionaryExtractor())
        return context
    }
}

private struct DictionaryInjector: Instrumentation.Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
}

private struct DictionaryExtractor: Instrumentation.Extractor {
    func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
}

import Hummingbird
import Tracing

/// A server span per request, from Hummingbird's `TracingMiddleware` (a no-op unless tracing is
/// on), with three changes:
/// - probes and scrapes (`/health/...`, `/metrics`) get none: they would drown the traces;
/// - `url.path` is the route template and `url.query` is dropped, as the raw path can hold a
///   phone number (`/v1/users/%2B1.../memories`), just as the request log keeps the template;
/// - a 5xx answer marks the span failed (errors become answers inside it, in `ErrorMiddleware`).
struct RequestTracingMiddleware<Context: RequestContext>: RouterMiddleware {
    static var untraced: Set<String> { ["/health/live", "/health/ready", "/metrics"] }

    let tracing = TracingMiddleware<Context>()

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // The route is resolved before the middleware runs, so its template is known here.
        if let route = context.endpointPath, Self.untraced.contains(route) { return try await next(request, context) }
        return try await tracing.handle(request, context: context) { request, context in
            guard let current = ServiceContext.current, let span = InstrumentationSystem.tracer.activeSpan(identifiedBy: current) else {
                return try await next(request, context)
            }
            // Also when `next` throws; by then the template is known even for a 404 (`NotFound`).
            defer {
                span.updateAttributes { attributes in
                    attributes["url.path"] = context.endpointPath
                    attributes["url.query"] = nil
                }
            }
            let response = try await next(request, context)
            if response.status.code >= 500 { span.setStatus(SpanStatus(code: .error)) }
            return response
        }
    }
}

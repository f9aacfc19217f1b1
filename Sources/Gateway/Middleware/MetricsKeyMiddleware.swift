import EngramApp
import EngramCore
import EngramObservability
import EngramQueue
import Hummingbird

/// The public `/metrics` route's own bearer key (`ENGRAM_METRICS_KEY`), compared in constant
/// time: 401 without it. (The metrics listener on its own port has no key.)
struct MetricsKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let key: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let presented = BearerAuth.token(request), secretsEqual(presented, key) else { throw APIError.unauthorized() }
        return try await next(request, context)
    }
}

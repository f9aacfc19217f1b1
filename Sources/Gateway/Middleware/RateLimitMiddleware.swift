import EngramApp
import EngramCore
import EngramObservability
import EngramQueue
import Hummingbird

/// Holds each key of an authenticated route group to its budget: 429 with Retry-After when it is
/// over. Routes a ringing phone or a live turn depends on (pre-call, the custom LLM) are not
/// behind it: over the budget they answer without memory instead, checking the limiter themselves.
struct RateLimitMiddleware: RouterMiddleware {
    typealias Context = AuthenticatedRequestContext
    let rateLimiter: RateLimiter

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        try await Self.enforce(rateLimiter, keyID: context.caller.keyID)
        return try await next(request, context)
    }

    /// 429 with Retry-After when the key is over its budget; also used by the MCP server, where
    /// only `tools/call` counts (reconnects and `tools/list` do not use up the budget).
    static func enforce(_ rateLimiter: RateLimiter, keyID: String) async throws {
        let decision = await rateLimiter.check(keyID)
        guard decision.allowed else {
            // Whole seconds, at least 1; a value Redis sent that is not finite cannot trap here.
            let seconds = decision.retryAfter.isFinite ? min(max(1, decision.retryAfter.rounded(.up)), 86_400) : 1
            throw APIError(
                status: .tooManyRequests, code: "rate_limited", message: "too many requests for this key",
                headers: [.retryAfter: String(Int(seconds))])
        }
    }
}

import Crypto
import EngramApp
import EngramCore
import EngramStore
import Foundation
import Hummingbird

/// Who is calling: the tenant a bearer key belongs to, the key's scope, and an id for the
/// audit log and rate limits (never the key itself).
struct Caller: Sendable {
    let tenant: TenantContext
    let scope: APIKeyRecord.Scope
    let keyID: String
}

/// Resolves bearer keys: the environment's keys belong to the default tenant; others are looked
/// up by their SHA-256 in the store (never stored in clear), must be unrevoked and of the
/// route's scope. A tool key cannot use the management API and vice versa.
struct Authenticator: Sendable {
    let services: GatewayServices

    func authenticate(_ request: Request, scope: APIKeyRecord.Scope) async throws -> Caller {
        guard let token = BearerAuth.token(request), !token.isEmpty, token.utf8.count <= 512 else { throw APIError.unauthorized() }
        let configuration = services.configuration
        let environmentKey = scope == .tool ? configuration.apiKey : configuration.adminKey
        if let environmentKey, secretsEqual(token, environmentKey) {
            return Caller(tenant: services.defaultTenant, scope: scope, keyID: "env:\(scope.rawValue)")
        }
        let hash = Data(SHA256.hash(data: Data(token.utf8)))
        guard let record = try await services.vault.apiKey(hash: hash), record.revokedAt == nil, record.scope == scope,
              constantTimeEquals(record.keyHash, hash),
              let tenant = try await services.vault.tenant(record.tenant)
        else { throw APIError.unauthorized() }
        return Caller(tenant: tenant, scope: scope, keyID: record.id)
    }

    /// The caller of a tool or management route: authenticated, then held to its rate limit.
    func authorize(_ request: Request, scope: APIKeyRecord.Scope) async throws -> Caller {
        let caller = try await authenticate(request, scope: scope)
        try await enforceRateLimit(caller)
        return caller
    }

    /// 429 with Retry-After when the key is over its budget.
    func enforceRateLimit(_ caller: Caller) async throws {
        let decision = await services.rateLimiter.check(caller.keyID)
        guard decision.allowed else {
            throw APIError(status: .tooManyRequests, code: "rate_limited", message: "too many requests for this key",
                           headers: [.retryAfter: String(max(1, Int(decision.retryAfter.rounded(.up))))])
        }
    }
}

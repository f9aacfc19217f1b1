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

/// Authentication of a route group (middleware): resolves the bearer key to its `Caller`, or
/// answers 401. The environment's keys belong to the default tenant; others are looked up by
/// their SHA-256 in the store (never stored in clear), must be unrevoked and of the group's
/// scope. A tool key cannot use the management API and vice versa.
struct Authenticator: RouterMiddleware {
    typealias Context = GatewayRequestContext
    let scope: APIKeyRecord.Scope
    let configuration: EngramConfiguration
    let vault: MemoryVault
    /// The environment's keys' tenant, re-read at most a second after the last read.
    let defaultTenant: RecentValue<TenantContext>

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        context.caller = try await authenticate(request, scope: scope)
        return try await next(request, context)
    }

    func authenticate(_ request: Request, scope: APIKeyRecord.Scope) async throws -> Caller {
        guard let token = BearerAuth.token(request), !token.isEmpty, token.utf8.count <= 512 else { throw APIError.unauthorized() }
        let environmentKey = scope == .tool ? configuration.apiKey : configuration.adminKey
        if let environmentKey, secretsEqual(token, environmentKey) {
            return Caller(tenant: defaultTenant.current(), scope: scope, keyID: "env:\(scope.rawValue)")
        }
        let hash = Data(SHA256.hash(data: Data(token.utf8)))
        guard let record = try await vault.apiKey(hash: hash), record.revokedAt == nil, record.scope == scope,
            constantTimeEquals(record.keyHash, hash),
            let tenant = try await vault.tenant(record.tenant)
        else { throw APIError.unauthorized() }
        return Caller(tenant: tenant, scope: scope, keyID: record.id)
    }
}

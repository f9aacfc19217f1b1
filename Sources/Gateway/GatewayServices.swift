import Foundation
import Logging
import Shared

/// Everything the gateway's controllers share, built once at start.
struct GatewayServices: Sendable {
    let configuration: EngramConfiguration
    let vault: MemoryVault
    let queue: any EventQueue
    let ingest: DurableIngest
    let intake: PostCallIntake
    let precall: PrecallContextBuilder
    let reinforcement: ReinforcementBuffer
    let defaultTenant: TenantContext
    let clock: WallClock
    let rateLimiter: RateLimiter
    /// The default tenant also has secrets stored with `engram tenant set-webhook-secret default`.
    let hasStoredDefaultWebhookSecret: Bool
    /// Bytes held by post-call bodies whose signature is not verified yet, across all requests.
    let unverifiedBodies: UnverifiedBodyBudget

    var authenticator: Authenticator { Authenticator(services: self) }

    /// The caller's user key from tool or pre-call arguments: user_id first, then the phone number.
    func userKey(tenant: TenantContext, userID: String?, callerID: String?) -> UserKey? {
        if let identity = CallerReference.fromUserID(userID) { return tenant.userKeys.key(for: identity) }
        return PhoneNumber.normalize(callerID).map { tenant.userKeys.key(for: .phone($0)) }
    }
}

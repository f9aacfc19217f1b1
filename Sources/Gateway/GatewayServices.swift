import EngramApp
import EngramCore
import EngramQueue
import Foundation
import Logging

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
    /// Carries an erasure to the queue at once (the worker's run does Redis' files and backups).
    let erasure: ErasurePurge

    /// After an erasure: drops the caller's queued events and spooled records now. Best effort:
    /// the erasure itself is done, and the worker's next purge run repeats this.
    func propagateErasure(tenant: String, user: UserKey, logger: Logger) async {
        await erasure.propagateErasure(tenant: tenant, user: user, spool: ingest.spool, logger: logger)
    }

    var authenticator: Authenticator { Authenticator(services: self) }

    /// Whether recall for an agent (search tool, custom-LLM proxy) may include sensitive memories:
    /// its answer can reach a spoofed caller, so only when the tenant allows it (operators still see them).
    func includeSensitive(_ tenant: TenantContext) -> Bool {
        tenant.record.allowSensitivePrecall || configuration.precallIncludeSensitive
    }

    /// The caller's user key from tool or pre-call arguments, by the tenant's rule for
    /// client-supplied ids (`CallerResolution`): the phone number first unless the tenant trusts `user_id`.
    func userKey(tenant: TenantContext, userID: String?, callerID: String?) -> UserKey? {
        CallerResolution.resolve(clientIDs: [userID], phone: callerID, trustClientIDs: tenant.record.trustClientUserIDs)
            .map { tenant.userKeys.key(for: $0) }
    }
}

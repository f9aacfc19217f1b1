import EngramApp
import EngramCore
import EngramQueue
import Foundation
import Logging

/// Everything the gateway builds once at start. `buildRouter` hands each controller and
/// middleware only the part it uses; nothing below the router sees all of it.
struct GatewayServices: Sendable {
    let configuration: EngramConfiguration
    let vault: MemoryVault
    let queue: any EventQueue
    let ingest: DurableIngest
    let intake: PostCallIntake
    let precall: PrecallContextBuilder
    let reinforcement: ReinforcementBuffer
    /// The default tenant (the environment's keys), read again at most a second after the last read.
    let defaultTenant: RecentValue<TenantContext>
    /// The default tenant and its stored webhook secrets, for the post-call path without a tenant.
    let defaultWebhook: RecentValue<WebhookTenantLookup>
    let defaultTenantID: String
    let clock: WallClock
    let rateLimiter: RateLimiter
    /// Secrets no tenant has, for post-call lookups that find none (`MemoryVault.webhookTenant`).
    let webhookDecoy: WebhookDecoy
    /// Bytes held by post-call bodies whose signature is not verified yet, across all requests.
    let unverifiedBodies: UnverifiedBodyBudget
    /// Carries an erasure to the queue at once (the worker's run does Redis' files and backups).
    let erasure: ErasurePurge
}

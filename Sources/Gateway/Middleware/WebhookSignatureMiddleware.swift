import EngramApp
import EngramCore
import EngramObservability
import EngramQueue
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// A post-call body whose HMAC signature checked out: what `WebhookSignatureMiddleware` hands
/// to the post-call handler.
struct VerifiedWebhook: Sendable {
    let tenant: TenantContext
    /// The intake that verified the body (the tenant's secrets); it also classifies it.
    let intake: PostCallIntake
    /// At most the configured prefix of the body (`ENGRAM_MAX_BODY_BYTES`).
    let kept: ByteBuffer
    /// The body was longer than what was kept.
    let oversize: Bool
    let signatureHeader: String?
    /// When verification began, for `engram_postcall_ack_seconds`.
    let started: ContinuousClock.Instant
}

/// Authentication of the post-call webhooks (middleware): verify the ElevenLabs signature on the
/// raw body as it streams, keeping at most the configured prefix, before any handler runs.
///
/// The tenant is the one the path names (`{tenant}`), or the default tenant on the path without
/// one. An unknown tenant is answered exactly as a wrong signature is (no tenant enumeration):
/// its body is checked against a secret nobody has, so it fails at the same step with the same
/// error. Until the HMAC is checked, every byte kept is held for an unauthenticated sender, so
/// it counts against the shared `UnverifiedBodyBudget` until the request ends.
struct WebhookSignatureMiddleware: RouterMiddleware {
    typealias Context = GatewayRequestContext
    static let signatureField = HTTPField.Name("ElevenLabs-Signature")!

    let configuration: EngramConfiguration
    let vault: MemoryVault
    /// The default tenant's intake: the environment's secrets, tolerances, limits, cipher, clock.
    let intake: PostCallIntake
    let defaultTenantID: String
    /// The path without a tenant: the default tenant and its stored secrets (`engram tenant
    /// set-webhook-secret default`), read again at most a second after the last read.
    let defaultWebhook: RecentValue<WebhookTenantLookup>
    /// Secrets no tenant has, unwrapped in place of missing ones (`MemoryVault.webhookTenant`).
    let decoy: WebhookDecoy
    /// Bytes held by post-call bodies whose signature is not verified yet, across all requests.
    let unverifiedBodies: UnverifiedBodyBudget

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let id = context.parameters.get("tenant") else {
            return try await verify(request, context: context, lookup: defaultWebhook.current(), next: next)
        }
        guard !id.isEmpty, id.utf8.count <= 64 else { return try await verify(request, context: context, lookup: nil, next: next) }
        // The same reads and unwraps for an id that names no tenant (no enumeration by timing).
        let lookup = try await vault.webhookTenant(id, decoy: decoy)
        return try await verify(request, context: context, lookup: lookup, next: next)
    }

    /// Verification against a random secret, for a tenant that does not exist or has no secret.
    func unverifiableIntake() -> PostCallIntake {
        let secret = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        let base = intake
        return PostCallIntake(
            secrets: [secret], tolerancePast: base.tolerancePast, toleranceFuture: base.toleranceFuture, maxBodyBytes: base.maxBodyBytes,
            cipher: base.cipher, clock: base.clock)
    }

    /// The secrets of a looked-up tenant: its stored ones, and for the default tenant the
    /// environment's too; the decoy's when it has none (refused even if they matched).
    func intake(for lookup: WebhookTenantLookup, logger: Logger) -> (intake: PostCallIntake, verifiable: Bool) {
        var secrets = lookup.secretsAreDecoy ? [] : lookup.secrets
        if lookup.tenant?.id == defaultTenantID { secrets = intake.secrets + secrets }
        if secrets.isEmpty, let tenant = lookup.tenant { NoSecretWarning.log(tenant: tenant.id, logger: logger) }
        let base = intake
        return (
            PostCallIntake(
                secrets: secrets.isEmpty ? lookup.secrets : secrets, tolerancePast: base.tolerancePast, toleranceFuture: base.toleranceFuture,
                maxBodyBytes: base.maxBodyBytes, cipher: base.cipher, clock: base.clock),
            !secrets.isEmpty
        )
    }

    /// `lookup`: the tenant the path names, found by `MemoryVault.webhookTenant`; nil when the id
    /// cannot name one. A tenant that does not exist (or has no secret) has its body read and
    /// verified as any tenant's and refused as a signature mismatch.
    func verify(
        _ request: Request, context: Context, lookup: WebhookTenantLookup?, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let started = ContinuousClock.now
        let header = request.headers[Self.signatureField]
        let tenant = lookup?.tenant
        let (intake, verifiable) = lookup.map { self.intake(for: $0, logger: context.logger) } ?? (unverifiableIntake(), false)
        var verifier: StreamingSignatureVerifier
        do {
            verifier = try intake.begin(header: header)
        } catch let error as SignatureError {
            throw APIError.from(error)
        }
        let limit = configuration.maxBodyBytes
        let bodyDeadline = ContinuousClock.now + configuration.requestBodyTimeout
        var kept = ByteBuffer()
        var total = 0
        // What this request keeps is held for an unauthenticated sender until the HMAC is checked;
        // given back when the request ends (after the handler), as before this was middleware.
        var reserved = 0
        defer { unverifiedBodies.release(reserved) }
        for try await chunk in request.body {
            total += chunk.readableBytes
            if total > configuration.maxStreamBytes { throw APIError.tooLarge }
            // A stall is closed by the idle timeout; a slow drip of bytes is cut off here.
            if ContinuousClock.now > bodyDeadline { throw APIError.bodyTimeout }
            chunk.withUnsafeReadableBytes { verifier.update($0) }
            let keep = min(chunk.readableBytes, max(0, limit - kept.readableBytes))
            if keep > 0, let slice = chunk.getSlice(at: chunk.readerIndex, length: keep) {
                guard unverifiedBodies.reserve(keep) else {
                    EngramMetrics.unverifiedBodyRefused()
                    throw APIError.unverifiedBudgetExhausted
                }
                reserved += keep
                kept.writeImmutableBuffer(slice)
            }
        }
        do {
            try verifier.finish()
        } catch let error as SignatureError {
            throw APIError.from(error)
        }
        // Unreachable for an unknown tenant or one without secrets (nobody signs with a random
        // secret); kept as a guard.
        guard let tenant, verifiable else { throw APIError.from(SignatureError.mismatch) }
        var context = context
        context.webhook = VerifiedWebhook(
            tenant: tenant, intake: intake, kept: kept, oversize: total > limit, signatureHeader: header, started: started)
        return try await next(request, context)
    }
}

/// The warning that a tenant has no webhook secret, at most once a minute: a line per refused
/// request would make a tenant without secrets slower to refuse than an unknown one.
enum NoSecretWarning {
    private static let last = Mutex<ContinuousClock.Instant?>(nil)

    static func log(tenant: String, logger: Logger, now: ContinuousClock.Instant = .now) {
        let due = last.withLock { last in
            guard last.map({ now - $0 >= .seconds(60) }) ?? true else { return false }
            last = now
            return true
        }
        // Answered as a wrong signature, like an unknown tenant; the operator sees why here.
        if due { logger.warning("post-call refused: no webhook secret is configured for this tenant", metadata: ["tenant": "\(tenant)"]) }
    }
}

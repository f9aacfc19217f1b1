import EngramApp
import EngramCore
import EngramObservability
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// `POST /v1/elevenlabs/post-call`: verify the signature on the raw body as it streams, keep at
/// most the configured prefix, classify, enqueue durably, answer 200 in milliseconds.
struct PostCallController {
    let services: GatewayServices
    static let signatureField = HTTPField.Name("ElevenLabs-Signature")!

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.post("/v1/elevenlabs/post-call") { request, context in
            try await receive(request, context: context, tenant: services.defaultTenant)
        }
        router.post("/v1/elevenlabs/{tenant}/post-call") { request, context in
            // An unknown tenant is answered exactly as a wrong signature is (no tenant
            // enumeration): its body is checked against a secret nobody has, so it fails at the
            // same step with the same error.
            let id = context.parameters.get("tenant") ?? ""
            let tenant = id.isEmpty || id.utf8.count > 64 ? nil : try await services.vault.tenant(id)
            return try await receive(request, context: context, tenant: tenant)
        }
    }

    /// Verification against a random secret, for a tenant that does not exist or has no secret.
    func unverifiableIntake() -> PostCallIntake {
        let secret = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        let base = services.intake
        return PostCallIntake(secrets: [secret], tolerancePast: base.tolerancePast, toleranceFuture: base.toleranceFuture, maxBodyBytes: base.maxBodyBytes, cipher: base.cipher, clock: base.clock)
    }

    /// The tenant's HMAC secrets: stored ones (wrapped), and for the default tenant the environment's.
    func intake(for tenant: TenantContext, logger: Logger) async throws -> PostCallIntake {
        var secrets: [String] = []
        if tenant.id == services.defaultTenant.id { secrets = services.intake.secrets }
        secrets += try await services.vault.webhookSecrets(tenant: tenant.id)
        guard !secrets.isEmpty else {
            // Answered as a wrong signature, like an unknown tenant; the operator sees why here.
            logger.warning("post-call refused: no webhook secret is configured for this tenant", metadata: ["tenant": "\(tenant.id)"])
            return unverifiableIntake()
        }
        let base = services.intake
        return PostCallIntake(secrets: secrets, tolerancePast: base.tolerancePast, toleranceFuture: base.toleranceFuture, maxBodyBytes: base.maxBodyBytes, cipher: base.cipher, clock: base.clock)
    }

    /// `tenant` nil: the path named no existing tenant; the body is read and verified as for any
    /// tenant and refused as a signature mismatch.
    func receive(_ request: Request, context: BasicRequestContext, tenant: TenantContext?) async throws -> Response {
        let started = ContinuousClock.now
        let header = request.headers[Self.signatureField]
        let intake: PostCallIntake
        if let tenant {
            intake = tenant.id == services.defaultTenant.id && !services.hasStoredDefaultWebhookSecret
                ? services.intake : try await self.intake(for: tenant, logger: context.logger)
        } else {
            intake = unverifiableIntake()
        }
        var verifier: StreamingSignatureVerifier
        do {
            verifier = try intake.begin(header: header)
        } catch let error as SignatureError {
            throw APIError.from(error)
        }
        let limit = services.configuration.maxBodyBytes
        let bodyDeadline = ContinuousClock.now + services.configuration.requestBodyTimeout
        var kept = ByteBuffer()
        var total = 0
        // What this request keeps is held for an unauthenticated sender until the HMAC is checked.
        var reserved = 0
        defer { services.unverifiedBodies.release(reserved) }
        for try await chunk in request.body {
            total += chunk.readableBytes
            if total > services.configuration.maxStreamBytes { throw APIError.tooLarge }
            // A stall is closed by the idle timeout; a slow drip of bytes is cut off here.
            if ContinuousClock.now > bodyDeadline { throw APIError.bodyTimeout }
            chunk.withUnsafeReadableBytes { verifier.update($0) }
            let keep = min(chunk.readableBytes, max(0, limit - kept.readableBytes))
            if keep > 0, let slice = chunk.getSlice(at: chunk.readerIndex, length: keep) {
                guard services.unverifiedBodies.reserve(keep) else {
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
        // Unreachable for an unknown tenant (nobody signs with a random secret); kept as a guard.
        guard let tenant else { throw APIError.from(SignatureError.mismatch) }
        let decision: IntakeDecision
        do {
            // Erasure tags of the callers the body names, so an erasure finds the queued copy.
            let vault = services.vault
            decision = try intake.classify(kept: Data(buffer: kept), oversize: total > limit, tenant: tenant.id, signatureHeader: header ?? "") {
                vault.erasureTags(of: $0, tenant: tenant)
            }
        } catch let error as IntakeError {
            throw APIError.from(error)
        }
        switch decision {
        case .ignore(let reason):
            context.logger.info("post-call event acknowledged and dropped", metadata: ["reason": "\(reason)"])
            EngramMetrics.postCallAcknowledged(outcome: "ignored_\(reason)", duration: ContinuousClock.now - started)
        case .enqueue(let envelope, let dedupe):
            do {
                let outcome = try await services.ingest.accept(envelope, dedupe: dedupe, logger: context.logger)
                context.logger.info("post-call event accepted", metadata: ["event_id": "\(envelope.id)", "tenant": "\(tenant.id)", "outcome": "\(outcome.rawValue)"])
                EngramMetrics.postCallAcknowledged(outcome: outcome.rawValue, duration: ContinuousClock.now - started)
            } catch {
                // Neither Redis nor the spool can keep it: only then is the sender asked to retry.
                context.logger.error("event could not be made durable", metadata: ["error_class": "\(type(of: error))"])
                throw APIError(status: .serviceUnavailable, code: "queue_unavailable", message: "cannot store the event right now; retry", headers: [.retryAfter: "5"])
            }
        }
        return try Response.json(["status": "accepted"])
    }
}

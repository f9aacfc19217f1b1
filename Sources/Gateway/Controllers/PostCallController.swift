import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Shared

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
            guard let id = context.parameters.get("tenant"), id.count <= 64, let tenant = try await services.vault.tenant(id) else {
                throw APIError.unauthorized("unknown tenant")  // no oracle for which tenants exist beyond 401
            }
            return try await receive(request, context: context, tenant: tenant)
        }
    }

    /// The tenant's HMAC secrets: stored ones (wrapped), and for the default tenant the environment's.
    func intake(for tenant: TenantContext) async throws -> PostCallIntake {
        var secrets: [String] = []
        if tenant.id == services.defaultTenant.id { secrets = services.intake.secrets }
        if let stored = try await services.vault.store.tenantWebhookSecrets(tenant: tenant.id) {
            for wrapped in [stored.current, stored.previous].compactMap({ $0 }) {
                let secret = try services.vault.keyRing.unwrap(wrapped, keyID: stored.keyID, context: "webhook:\(tenant.id)")
                secrets.append(String(decoding: secret, as: UTF8.self))
            }
        }
        guard !secrets.isEmpty else { throw APIError.unauthorized("no webhook secret is configured for this tenant") }
        let base = services.intake
        return PostCallIntake(secrets: secrets, tolerancePast: base.tolerancePast, toleranceFuture: base.toleranceFuture, maxBodyBytes: base.maxBodyBytes, cipher: base.cipher, clock: base.clock)
    }

    func receive(_ request: Request, context: BasicRequestContext, tenant: TenantContext) async throws -> Response {
        let started = ContinuousClock.now
        let header = request.headers[Self.signatureField]
        let intake = tenant.id == services.defaultTenant.id && !services.hasStoredDefaultWebhookSecret ? services.intake : try await self.intake(for: tenant)
        var verifier: StreamingSignatureVerifier
        do {
            verifier = try intake.begin(header: header)
        } catch let error as SignatureError {
            throw APIError.from(error)
        }
        let limit = services.configuration.maxBodyBytes
        var kept = ByteBuffer()
        var total = 0
        for try await chunk in request.body {
            total += chunk.readableBytes
            if total > services.configuration.maxStreamBytes { throw APIError.tooLarge }
            chunk.withUnsafeReadableBytes { verifier.update($0) }
            if kept.readableBytes < limit {
                kept.writeImmutableBuffer(chunk.getSlice(at: chunk.readerIndex, length: min(chunk.readableBytes, limit - kept.readableBytes))!)
            }
        }
        do {
            try verifier.finish()
        } catch let error as SignatureError {
            throw APIError.from(error)
        }
        let decision: IntakeDecision
        do {
            decision = try intake.classify(kept: Data(buffer: kept), oversize: total > limit, tenant: tenant.id, signatureHeader: header ?? "")
        } catch let error as IntakeError {
            throw APIError.from(error)
        }
        switch decision {
        case .ignore(let reason):
            context.logger.info("post-call event acknowledged and dropped", metadata: ["reason": "\(reason)"])
            EngramMetrics.postCallAcknowledged(outcome: "ignored_\(reason)", duration: ContinuousClock.now - started)
        case .enqueue(var envelope, let dedupe):
            // Erasure tags of the callers the body names, so an erasure finds the queued copy.
            envelope.userTags = EventOwner.tags(body: Data(buffer: kept), type: envelope.type, tenant: tenant, keyRing: services.vault.keyRing)
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

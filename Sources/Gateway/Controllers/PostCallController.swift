import EngramApp
import EngramCore
import EngramObservability
import EngramQueue
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// `POST /v1/elevenlabs/post-call` and `/v1/elevenlabs/{tenant}/post-call`, behind
/// `WebhookSignatureMiddleware` (which verifies the signature on the raw body as it streams and
/// keeps at most the configured prefix): classify, enqueue durably, answer 200 in milliseconds.
struct PostCallController {
    typealias Context = WebhookRequestContext
    let vault: MemoryVault
    let ingest: DurableIngest

    var endpoints: RouteCollection<Context> {
        RouteCollection(context: Context.self)
            .post("/v1/elevenlabs/post-call", use: receive)
            .post("/v1/elevenlabs/{tenant}/post-call", use: receive)
    }

    /// The body is verified by now; its tenant and intake come with it.
    @Sendable func receive(_ request: Request, context: Context) async throws -> Response {
        let tenant = context.webhook.tenant
        let intake = context.webhook.intake
        let started = context.webhook.started
        let header = context.webhook.signatureHeader
        let decision: IntakeDecision
        do {
            // Erasure tags of the callers the body names, so an erasure finds the queued copy.
            let kept = Data(buffer: context.webhook.kept)
            decision = try intake.classify(kept: kept, oversize: context.webhook.oversize, tenant: tenant.id, signatureHeader: header ?? "") {
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
                let outcome = try await ingest.accept(envelope, dedupe: dedupe, logger: context.logger)
                context.logger.info(
                    "post-call event accepted", metadata: ["event_id": "\(envelope.id)", "tenant": "\(tenant.id)", "outcome": "\(outcome.rawValue)"])
                EngramMetrics.postCallAcknowledged(outcome: outcome.rawValue, duration: ContinuousClock.now - started)
            } catch {
                // Neither Redis nor the spool can keep it: only then is the sender asked to retry.
                context.logger.error("event could not be made durable", metadata: ["error_class": "\(type(of: error))"])
                throw APIError(
                    status: .serviceUnavailable, code: "queue_unavailable", message: "cannot store the event right now; retry",
                    headers: [.retryAfter: "5"])
            }
        }
        return Self.accepted()
    }

    /// `{"status":"accepted"}`, as `Response.json` writes it, encoded once (not per acknowledgement).
    static let acceptedBody = ByteBuffer(string: #"{"status":"accepted"}"#)

    static func accepted() -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: acceptedBody))
    }
}

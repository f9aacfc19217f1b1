@preconcurrency import Crypto
import Foundation

/// Why a post-call body was refused after its signature checked out.
public enum IntakeError: Error, Equatable, Sendable {
    case malformedJSON
    case missingField(String)
    case tooLarge
}

/// What the gateway does with a verified post-call body.
public enum IntakeDecision: Sendable, Equatable {
    /// Durable queueing, deduplicated by these marks.
    case enqueue(Envelope, dedupe: [String])
    /// Acknowledged and not kept (audio, unknown types), with the reason for the counter.
    case ignore(reason: String)
}

/// The post-call path without HTTP: signature header, body classification and the envelope.
/// The gateway streams bytes into it; the evaluation calls it directly.
public struct PostCallIntake: Sendable {
    public let secrets: [String]
    public let tolerancePast: Duration
    public let toleranceFuture: Duration
    public let maxBodyBytes: Int
    public let cipher: FieldCipher
    public let clock: WallClock

    public init(secrets: [String], tolerancePast: Duration, toleranceFuture: Duration, maxBodyBytes: Int, cipher: FieldCipher, clock: WallClock) {
        self.secrets = secrets
        self.tolerancePast = tolerancePast
        self.toleranceFuture = toleranceFuture
        self.maxBodyBytes = maxBodyBytes
        self.cipher = cipher
        self.clock = clock
    }

    /// Parses the header and checks its timestamp before a byte of the body is read.
    public func begin(header: String?) throws -> StreamingSignatureVerifier {
        let parsed = try SignatureHeader(parsing: header)
        try parsed.checkFreshness(now: clock.now(), past: tolerancePast, future: toleranceFuture)
        return StreamingSignatureVerifier(header: parsed, secrets: secrets)
    }

    /// Classifies a verified body. `kept` is at most `maxBodyBytes`; `oversize` says more came.
    public func classify(kept: Data, oversize: Bool, tenant: String, signatureHeader: String) throws -> IntakeDecision {
        if oversize {
            // Audio is sent whole and can be tens of MB: acknowledged and dropped, never kept.
            if Self.declaresType("post_call_audio", in: kept) { return .ignore(reason: "audio_oversize") }
            throw IntakeError.tooLarge
        }
        guard let object = (try? JSONSerialization.jsonObject(with: kept)) as? [String: Any] else { throw IntakeError.malformedJSON }
        guard let type = object["type"] as? String, !type.isEmpty else { throw IntakeError.missingField("type") }
        let data = object["data"] as? [String: Any]
        switch type {
        case EventType.postCallTranscription, EventType.callInitiationFailure:
            guard let data else { throw IntakeError.missingField("data") }
            guard let conversation = data["conversation_id"] as? String, !conversation.isEmpty else {
                throw IntakeError.missingField("data.conversation_id")
            }
            let now = clock.now()
            let envelope: Envelope
            do {
                envelope = try Envelope.seal(kept, tenant: tenant, type: type, receivedAt: now, cipher: cipher)
            } catch {
                throw IntakeError.malformedJSON  // sealing cannot fail for valid input; keep the error domain closed
            }
            return .enqueue(envelope, dedupe: [
                Self.eventDedupeMark(tenant: tenant, type: type, conversationID: conversation),
                Self.digest("signature|\(tenant)|\(signatureHeader)"),
            ])
        case "post_call_audio":
            return .ignore(reason: "audio")
        default:
            return .ignore(reason: "unknown_type")
        }
    }

    /// Finds `"type": "<value>"` in the first bytes of a body too large to parse.
    static func declaresType(_ value: String, in prefix: Data) -> Bool {
        let text = String(decoding: prefix.prefix(64 * 1024), as: UTF8.self)
        guard let regex = try? NSRegularExpression(pattern: #""type"\s*:\s*"([a-z_]+)""#) else { return false }
        let ns = text as NSString
        guard let match = regex.firstMatch(in: text, range: NSRange(location: 0, length: ns.length)) else { return false }
        return ns.substring(with: match.range(at: 1)) == value
    }

    /// The dedupe mark of one conversation's event: shared by the webhook and `engram backfill`,
    /// so whichever comes second is a duplicate.
    public static func eventDedupeMark(tenant: String, type: String, conversationID: String) -> String {
        digest("event|\(tenant)|\(type)|\(conversationID)")
    }

    public static func digest(_ text: String) -> String {
        Data(SHA256.hash(data: Data(text.utf8))).prefix(20).hexString
    }
}

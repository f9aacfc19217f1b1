@preconcurrency import Crypto
import EngramCore
import Foundation

/// Why a post-call body was refused after its signature checked out.
public enum IntakeError: Error, Equatable, Sendable {
    case malformedJSON
    case missingField(String)
    case tooLarge
    /// One JSON object names a key twice: refused, since readers could disagree on the event.
    case duplicateKey
    /// Nested deeper than `PostCallWebhook.maxDepth`.
    case tooDeep(limit: Int)
    /// A field longer than its limit in UTF-8 bytes.
    case fieldTooLong(String, limit: Int)
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
    /// HMACs keyed by `secrets`, once: every request copies them.
    private let keyedSecrets: [HMAC<SHA256>]

    public init(secrets: [String], tolerancePast: Duration, toleranceFuture: Duration, maxBodyBytes: Int, cipher: FieldCipher, clock: WallClock) {
        self.secrets = secrets
        self.tolerancePast = tolerancePast
        self.toleranceFuture = toleranceFuture
        self.maxBodyBytes = maxBodyBytes
        self.cipher = cipher
        self.clock = clock
        keyedSecrets = StreamingSignatureVerifier.keyed(secrets)
    }

    /// Parses the header and checks its timestamp before a byte of the body is read.
    public func begin(header: String?) throws -> StreamingSignatureVerifier {
        let parsed = try SignatureHeader(parsing: header)
        try parsed.checkFreshness(now: clock.now(), past: tolerancePast, future: toleranceFuture)
        return StreamingSignatureVerifier(header: parsed, keyed: keyedSecrets)
    }

    /// Classifies a verified body. `kept` is at most `maxBodyBytes`; `oversize` says more came.
    /// `userTags`: the erasure tags of the callers the parsed event names, set on its envelope
    /// (from the one parse here, so the post-call path reads the body once).
    public func classify(
        kept: Data, oversize: Bool, tenant: String, signatureHeader: String, userTags: (PostCallData) -> [String]? = { _ in nil }
    ) throws -> IntakeDecision {
        if oversize {
            // Audio is sent whole and can be tens of MB: acknowledged and dropped, never kept.
            if Self.declaresType("post_call_audio", in: kept) { return .ignore(reason: "audio_oversize") }
            throw IntakeError.tooLarge
        }
        // The same strict check as the worker's parse (`EventIngestor`), then only the fields read
        // here (`PostCallFields`: a scanner, or Foundation's typed decoding where the scanner is
        // not sure): what is accepted here is the conversation the worker will read.
        let webhook: PostCallFields
        do {
            webhook = try PostCallWebhook.intakeFields(kept)
        } catch StrictJSONError.duplicateKey {
            throw IntakeError.duplicateKey
        } catch StrictJSONError.tooDeep(let limit) {
            throw IntakeError.tooDeep(limit: limit)
        } catch {
            throw IntakeError.malformedJSON
        }
        let type = webhook.type
        guard !type.isEmpty else { throw IntakeError.missingField("type") }
        switch type {
        case EventType.postCallTranscription, EventType.callInitiationFailure:
            guard let data = webhook.data else { throw IntakeError.missingField("data") }
            guard let conversation = webhook.conversationID, !conversation.isEmpty else {
                throw IntakeError.missingField("data.conversation_id")
            }
            guard conversation.utf8.count <= PostCallData.maxConversationIDBytes else {
                throw IntakeError.fieldTooLong("data.conversation_id", limit: PostCallData.maxConversationIDBytes)
            }
            let now = clock.now()
            let envelope: Envelope
            do {
                envelope = try Envelope.seal(kept, tenant: tenant, type: type, receivedAt: now, cipher: cipher, userTags: userTags(data))
            } catch {
                throw IntakeError.malformedJSON  // sealing cannot fail for valid input; keep the error domain closed
            }
            return .enqueue(
                envelope,
                dedupe: [
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

import Foundation

/// What travels on the queue: `{id, tenant, type, received_at, attempt, deaths, trace, trace_state, user_tags, body}`,
/// the body being the raw webhook (or tool event) encrypted with the envelope key. The trace
/// fields are left out when tracing is off, and envelopes without them still decode. `user_tags`
/// are keyed pseudonyms (`KeyRing.userTag`) of every caller identity the event names (the
/// phone number's and the client's id), so an erasure of any of them finds the event without
/// decrypting it; envelopes queued before tags existed have none.
public struct Envelope: Codable, Sendable, Equatable {
    public var id: String
    public var tenant: String
    public var type: String
    /// Unix seconds with fractions.
    public var receivedAt: Double
    /// Processing attempts made (a failed one is retried with this raised: LLM retries use it).
    public var attempt: Int
    /// Times a worker stopped while holding the event (crashed, killed, reaped), counted apart
    /// from `attempt`: an outage that used the event's retries must not make one worker crash
    /// look like a poison event. Absent (nil) is none; left out of the JSON then.
    public var deaths: Int?
    /// W3C `traceparent` of the request that produced it, if tracing is on.
    public var trace: String?
    /// W3C `tracestate` that goes with `trace`, if any.
    public var traceState: String?
    /// Erasure tags of the callers the event names (hex HMACs under a key derived from the master key).
    public var userTags: [String]?
    /// Base64 of AES-GCM(nonce | ciphertext | tag).
    public var body: String

    enum CodingKeys: String, CodingKey {
        case id, tenant, type
        case receivedAt = "received_at"
        case attempt, deaths, trace
        case traceState = "trace_state"
        case userTags = "user_tags"
        case body
    }

    public init(
        id: String = UUIDv7.make(), tenant: String, type: String, receivedAt: Date, attempt: Int = 0, trace: String? = nil, userTags: [String]? = nil,
        body: String
    ) {
        self.id = id
        self.tenant = tenant
        self.type = type
        self.receivedAt = receivedAt.timeIntervalSince1970
        self.attempt = attempt
        self.trace = trace
        self.userTags = userTags
        self.body = body
    }

    /// Seals a raw body for the queue.
    public static func seal(
        _ raw: Data, tenant: String, type: String, receivedAt: Date, cipher: FieldCipher, id: String = UUIDv7.make(), userTags: [String]? = nil
    ) throws -> Envelope {
        let sealed = try cipher.seal(raw, context: "envelope:\(tenant):\(type)")
        return Envelope(id: id, tenant: tenant, type: type, receivedAt: receivedAt, userTags: userTags, body: sealed.base64EncodedString())
    }

    public func openBody(cipher: FieldCipher) throws -> Data {
        guard let sealed = Data(base64Encoded: body) else { throw CipherError(description: "envelope body is not base64") }
        return try cipher.open(sealed, context: "envelope:\(tenant):\(type)")
    }

    public func encoded() throws -> Data { try JSONEncoder().encode(self) }

    public static func decode(_ data: Data) throws -> Envelope { try JSONDecoder().decode(Envelope.self, from: data) }
}

/// Event types on the queue.
public enum EventType {
    public static let postCallTranscription = "post_call_transcription"
    public static let callInitiationFailure = "call_initiation_failure"
    public static let remember = "tool_remember"
}

/// The body of a `remember` tool event (encrypted inside its envelope like any other).
public struct RememberEvent: Codable, Sendable {
    public var user: String
    public var fact: String
    public var conversationID: String?
    public var saidAt: Double

    public init(user: UserKey, fact: String, conversationID: String?, saidAt: Date) {
        self.user = user.rawValue
        self.fact = fact
        self.conversationID = conversationID
        self.saidAt = saidAt.timeIntervalSince1970
    }

    enum CodingKeys: String, CodingKey {
        case user, fact
        case conversationID = "conversation_id"
        case saidAt = "said_at"
    }
}

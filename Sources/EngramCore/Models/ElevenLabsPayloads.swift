import Foundation

/// The post-call webhook, decoded leniently: only what Engram uses is required. The gateway's
/// classification and the worker read it through the same `parse`, so both see one conversation.
public struct PostCallWebhook: Decodable, Sendable {
    /// Empty when absent or not a string (the gateway refuses such bodies).
    public var type: String
    /// Unix seconds; nil when absent or not a plausible time (`SafeNumber.unixSeconds`).
    public var eventTimestamp: Int64?
    /// nil when absent or not an object.
    public var data: PostCallData?

    enum CodingKeys: String, CodingKey {
        case type
        case eventTimestamp = "event_timestamp"
        case data
    }

    /// The deepest nesting of objects and arrays accepted in a post-call body (ElevenLabs sends
    /// under 10; JSONDecoder itself stops at 512, far past what any event needs).
    public static let maxDepth = 64

    /// The one parse of a post-call body: strict JSON (no duplicate keys, bounded depth), then
    /// the lenient typed decoding. Throws `StrictJSONError` or `DecodingError` (top level not an
    /// object, or invalid text in a string).
    public static func parse(_ body: Data) throws -> PostCallWebhook {
        try StrictJSON.check(body, maxDepth: maxDepth)
        return try JSONDecoder().decode(PostCallWebhook.self, from: body)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        type = (try? c.decodeIfPresent(String.self, forKey: .type)) ?? ""
        eventTimestamp = c.decodeUnixSeconds(.eventTimestamp)
        data = try? c.decodeIfPresent(PostCallData.self, forKey: .data)
    }
}

/// `data` of a post-call event.
public struct PostCallData: Decodable, Sendable {
    /// The longest conversation id accepted, in UTF-8 bytes (ElevenLabs' are about 30).
    public static let maxConversationIDBytes = 256

    public var agentID: String?
    public var conversationID: String?
    public var userID: String?
    public var transcript: [TranscriptTurn]
    public var metadata: CallMetadata?
    public var analysis: CallAnalysis?
    public var initiation: InitiationClientData?

    enum CodingKeys: String, CodingKey {
        case agentID = "agent_id"
        case conversationID = "conversation_id"
        case userID = "user_id"
        case transcript, metadata, analysis
        case initiation = "conversation_initiation_client_data"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        agentID = try? c.decodeIfPresent(String.self, forKey: .agentID)
        conversationID = try? c.decodeIfPresent(String.self, forKey: .conversationID)
        userID = try? c.decodeIfPresent(String.self, forKey: .userID)
        transcript = (try? c.decodeIfPresent([TranscriptTurn].self, forKey: .transcript)) ?? []
        metadata = try? c.decodeIfPresent(CallMetadata.self, forKey: .metadata)
        analysis = try? c.decodeIfPresent(CallAnalysis.self, forKey: .analysis)
        initiation = try? c.decodeIfPresent(InitiationClientData.self, forKey: .initiation)
    }

    /// The caller's phone number as ElevenLabs reports it (metadata first, then dynamic variables).
    public var callerNumber: String? {
        metadata?.phoneCall?.externalNumber
            ?? initiation?.dynamicVariables["system__caller_id"]?.stringValue
            ?? initiation?.dynamicVariables["caller_id"]?.stringValue
    }
}

public struct TranscriptTurn: Decodable, Sendable {
    public var role: String
    public var message: String?
    public var timeInCallSecs: Double?
    /// LoCoMo-style image captions, appended to the turn's text.
    public var imageCaption: String?

    enum CodingKeys: String, CodingKey {
        case role, message
        case timeInCallSecs = "time_in_call_secs"
        case imageCaption = "image_caption"
    }

    public init(role: String, message: String?, timeInCallSecs: Double? = nil, imageCaption: String? = nil) {
        self.role = role
        self.message = message
        self.timeInCallSecs = timeInCallSecs
        self.imageCaption = imageCaption
    }

    /// Never fails: an element that is not an object is a turn without text, so one odd element
    /// neither drops the whole transcript nor shifts the indices memories cite.
    public init(from decoder: Decoder) throws {
        guard let c = try? decoder.container(keyedBy: CodingKeys.self) else {
            role = "unknown"
            return
        }
        role = (try? c.decode(String.self, forKey: .role)) ?? "unknown"
        message = try? c.decodeIfPresent(String.self, forKey: .message)
        timeInCallSecs = try? c.decodeIfPresent(Double.self, forKey: .timeInCallSecs)
        imageCaption = try? c.decodeIfPresent(String.self, forKey: .imageCaption)
    }
}

public struct CallMetadata: Decodable, Sendable {
    public var startTimeUnixSecs: Int64?
    public var callDurationSecs: Double?
    public var phoneCall: PhoneCall?
    public var timezone: String?

    enum CodingKeys: String, CodingKey {
        case startTimeUnixSecs = "start_time_unix_secs"
        case callDurationSecs = "call_duration_secs"
        case phoneCall = "phone_call"
        case timezone
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        startTimeUnixSecs = c.decodeUnixSeconds(.startTimeUnixSecs)
        callDurationSecs = try? c.decodeIfPresent(Double.self, forKey: .callDurationSecs)
        phoneCall = try? c.decodeIfPresent(PhoneCall.self, forKey: .phoneCall)
        timezone = try? c.decodeIfPresent(String.self, forKey: .timezone)
    }
}

public struct PhoneCall: Decodable, Sendable {
    public var externalNumber: String?
    public var direction: String?
    enum CodingKeys: String, CodingKey {
        case externalNumber = "external_number"
        case direction
    }
}

public struct CallAnalysis: Decodable, Sendable {
    public var transcriptSummary: String?
    public var dataCollectionResults: [String: DataCollectionResult]

    enum CodingKeys: String, CodingKey {
        case transcriptSummary = "transcript_summary"
        case dataCollectionResults = "data_collection_results"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        transcriptSummary = try? c.decodeIfPresent(String.self, forKey: .transcriptSummary)
        dataCollectionResults = (try? c.decodeIfPresent([String: DataCollectionResult].self, forKey: .dataCollectionResults)) ?? [:]
    }
}

public struct DataCollectionResult: Decodable, Sendable {
    public var value: JSONScalar?
    enum CodingKeys: String, CodingKey { case value }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        value = try? c.decodeIfPresent(JSONScalar.self, forKey: .value)
    }
}

public struct InitiationClientData: Decodable, Sendable {
    public var dynamicVariables: [String: JSONScalar]
    enum CodingKeys: String, CodingKey { case dynamicVariables = "dynamic_variables" }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        var variables: [String: JSONScalar] = [:]
        if let nested = try? c.nestedContainer(keyedBy: AnyKey.self, forKey: .dynamicVariables) {
            for key in nested.allKeys {
                if let value = try? nested.decode(JSONScalar.self, forKey: key) { variables[key.stringValue] = value }
            }
        }
        dynamicVariables = variables
    }
}

/// A JSON string, number or boolean (ElevenLabs' dynamic variable values).
public enum JSONScalar: Codable, Sendable, Equatable {
    case string(String)
    case number(Double)
    case bool(Bool)

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        // Strings first: most values are strings, and every failed attempt builds an error.
        if let s = try? c.decode(String.self) {
            self = .string(s)
            return
        }
        if let b = try? c.decode(Bool.self) {
            self = .bool(b)
            return
        }
        self = .number(try c.decode(Double.self))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .string(let s): try c.encode(s)
        case .number(let n):
            if abs(n) < 1e15, let whole = SafeNumber.int64(n), Double(whole) == n { try c.encode(whole) } else { try c.encode(n) }
        case .bool(let b): try c.encode(b)
        }
    }

    /// The value as text. A number that does not fit an integer stays text ("1e+20"), never a trap.
    public var stringValue: String? {
        switch self {
        case .string(let s): return s
        case .number(let n): return SafeNumber.text(n)
        case .bool(let b): return b ? "true" : "false"
        }
    }
}

struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension KeyedDecodingContainer {
    /// Unix seconds sent as a number or as a string; nil when absent, not a number, or not a
    /// plausible time (NaN, 1e300, "inf", negative: `SafeNumber.unixSeconds`).
    package func decodeUnixSeconds(_ key: Key) -> Int64? {
        if let value = try? decodeIfPresent(Int64.self, forKey: key) {
            return (0...SafeNumber.maxUnixSeconds).contains(value) ? value : nil
        }
        if let value = try? decodeIfPresent(Double.self, forKey: key) { return SafeNumber.unixSeconds(value) }
        if let text = try? decodeIfPresent(String.self, forKey: key) { return SafeNumber.unixSeconds(text) }
        return nil
    }
}

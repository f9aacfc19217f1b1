import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders

/// The poison payloads of issue 11: one number that did not fit `Int64(Double)` trapped the
/// worker (SIGILL), and the event went back to the queue to kill the next one.
enum PoisonPayloads {
    /// Each variant of the report, applied to the fixture.
    static let variants: [(name: String, mutate: @Sendable (inout [String: Any]) -> Void)] = [
        (
            "data collection value 1e19",
            { object in
                PoisonPayloads.edit(&object, ["data", "analysis", "data_collection_results", "reason"]) { $0["value"] = 1e19 }
            }
        ),
        (
            "dynamic variable user_id 1e20",
            { object in
                PoisonPayloads.edit(&object, ["data", "conversation_initiation_client_data", "dynamic_variables"]) { $0["user_id"] = 1e20 }
            }
        ),
        (
            "caller id 1e20",
            { object in
                PoisonPayloads.edit(&object, ["data", "conversation_initiation_client_data", "dynamic_variables"]) { $0["system__caller_id"] = 1e20 }
                PoisonPayloads.edit(&object, ["data", "metadata", "phone_call"]) { $0["external_number"] = 1e20 }
            }
        ),
        ("event_timestamp 1e300", { object in object["event_timestamp"] = 1e300 }),
        ("start_time \"nan\"", { object in PoisonPayloads.edit(&object, ["data", "metadata"]) { $0["start_time_unix_secs"] = "nan" } }),
    ]

    /// Applies `change` to the object at `path` (created if missing).
    static func edit(_ object: inout [String: Any], _ path: [String], _ change: (inout [String: Any]) -> Void) {
        guard let key = path.first else {
            change(&object)
            return
        }
        var child = object[key] as? [String: Any] ?? [:]
        edit(&child, Array(path.dropFirst()), change)
        object[key] = child
    }
}

@Suite("Numbers and payloads from outside never trap", .timeLimit(.minutes(1)))
struct PayloadSafetyTests {
    static let limits: [Double] = [
        .nan, .infinity, -.infinity, 1e19, -1e19, 1e300, -1e300, .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
        Double(Int64.max), Double(Int64.min), Double(Int64.max).nextDown, Double(Int64.min).nextUp, Double(Int64.min).nextDown,
        9_007_199_254_740_993, .leastNonzeroMagnitude, -0.0, 0.5, -0.5,
    ]

    @Test("SafeNumber converts every floating-point limit without trapping, nil or clamped where it does not fit")
    func safeNumberLimits() {
        for value in Self.limits {
            let exact = SafeNumber.int64(value)
            let clamped = SafeNumber.clampedInt64(value)
            _ = SafeNumber.clampedInt(value)
            _ = SafeNumber.milliseconds(fromSeconds: value)
            _ = SafeNumber.text(value)
            _ = SafeNumber.unixSeconds(value)
            if let exact { #expect(exact == clamped) }
        }
        #expect(SafeNumber.int64(1e19) == nil)
        #expect(SafeNumber.int64(.nan) == nil)
        #expect(SafeNumber.int64(Double(Int64.max)) == nil)  // 2^63 after rounding
        #expect(SafeNumber.int64(Double(Int64.min)) == Int64.min)
        #expect(SafeNumber.clampedInt64(1e300) == Int64.max)
        #expect(SafeNumber.clampedInt64(-1e300) == Int64.min)
        #expect(SafeNumber.clampedInt64(.nan) == 0)
        #expect(SafeNumber.text(1e19) == "1e+19")
        #expect(SafeNumber.text(14_155_550_123) == "14155550123")
        #expect(SafeNumber.unixSeconds("nan") == nil)
        #expect(SafeNumber.unixSeconds("inf") == nil)
        #expect(SafeNumber.unixSeconds("1e300") == nil)
        #expect(SafeNumber.unixSeconds("-1") == nil)
        #expect(SafeNumber.unixSeconds("1763759979") == 1_763_759_979)
        #expect(SafeNumber.unixSeconds("1763759979.9") == 1_763_759_979)
        #expect(SafeNumber.retryAfterSeconds("-inf") == nil)
        #expect(SafeNumber.retryAfterSeconds("nan") == nil)
        #expect(SafeNumber.retryAfterSeconds("1e300") == 1e300)
        #expect(Date(checkedUnixSeconds: .nan) == nil)
    }

    @Test("a JSON scalar holding any number past an integer limit becomes text, not a trap")
    func scalarText() throws {
        for value in Self.limits where value.isFinite {
            let scalar = JSONScalar.number(value)
            #expect(scalar.stringValue != nil)
            _ = try JSONEncoder().encode(scalar)
        }
        #expect(JSONScalar.number(.nan).stringValue == "nan")
    }

    @Test(
        "the five poison payloads of issue 11 parse, resolve a caller or none, and extract without trapping",
        arguments: PoisonPayloads.variants.indices)
    func poisonVariants(_ index: Int) throws {
        let variant = PoisonPayloads.variants[index]
        let body = try fixtureTranscript(mutate: variant.mutate)
        let webhook = try PostCallWebhook.parse(body)
        let data = try #require(webhook.data)
        let received = Date()
        let conversation = Conversation(data, fallbackStart: received)
        let extraction = LocalExtractor().extractNow(conversation)
        #expect(!extraction.memories.isEmpty)
        let identity = EventIngestor.identity(of: data, trustClientIDs: true)  // a tenant that trusts client ids reads user_id
        switch index {
        case 0: #expect(conversation.dataCollection["reason"] == "1e+19")
        case 1: #expect(identity == .external("1e+20"))
        case 2: #expect(data.callerNumber == "1e+20" || data.callerNumber == nil)
        case 3: #expect(webhook.eventTimestamp == nil)
        default: #expect(conversation.startedAt == received)  // "nan" is not a time: the receive time stands in
        }
    }

    @Test("every integer-like field accepts numbers at and past the limits as numbers and as strings")
    func timestampFields() throws {
        let values: [Any] = [
            1e19, -1e19, 1e300, -1.0, 0, 9_223_372_036_854_775_807 as Int64, -9_223_372_036_854_775_808 as Int64, "nan", "NaN", "inf",
            "-inf", "Infinity", "1e400", "", "12abc", true, NSNull(), [1], ["a": 1],
        ]
        for value in values {
            let body = try fixtureTranscript { object in
                object["event_timestamp"] = value
                PoisonPayloads.edit(&object, ["data", "metadata"]) { $0["start_time_unix_secs"] = value }
            }
            let webhook = try PostCallWebhook.parse(body)
            if let seconds = webhook.eventTimestamp { #expect((0...SafeNumber.maxUnixSeconds).contains(seconds)) }
            _ = Conversation(try #require(webhook.data), fallbackStart: Date())
        }
    }
}

@Suite("Strict JSON: duplicate keys, depth and grammar", .timeLimit(.minutes(1)))
struct StrictJSONTests {
    func check(_ text: String, depth: Int = 64) throws { try StrictJSON.check(Data(text.utf8), maxDepth: depth) }

    @Test("a duplicate key is refused at any depth, also when spelled with escapes or another Unicode form")
    func duplicates() {
        for text in [
            #"{"type":"a","type":"b"}"#,
            #"{"data":{"conversation_id":"x","conversation_id":"y"}}"#,
            #"{"type":"a","typ\u0065":"b"}"#,
            #"[{"a":1},{"b":1,"b":2}]"#,
            "{\"caf\u{E9}\":1,\"cafe\u{301}\":2}",
            #"{"\ud83d\ude00":1,"😀":2}"#,
        ] {
            #expect(throws: StrictJSONError.duplicateKey) { try check(text) }
        }
    }

    @Test("the same key in different objects, and the fixture, are accepted")
    func accepted() throws {
        try check(#"{"a":{"a":1},"b":[{"a":1},{"a":2}],"c":"\"\\\/\b\f\n\r\t\u00e9"}"#)
        try check("  [1, -0, 0.5, 1e10, -2E-3, true, false, null, \"x\", {}, []]  ")
        try StrictJSON.check(try Fixtures.elevenLabs("post_call_transcription.json"), maxDepth: PostCallWebhook.maxDepth)
    }

    @Test("nesting past the limit is refused; at the limit accepted")
    func depth() throws {
        try check(String(repeating: "[", count: 64) + String(repeating: "]", count: 64))
        #expect(throws: StrictJSONError.tooDeep(limit: 64)) { try check(String(repeating: "[", count: 65) + String(repeating: "]", count: 65)) }
        #expect(throws: StrictJSONError.tooDeep(limit: 64)) { try check(String(repeating: "[", count: 100_000)) }
    }

    @Test("malformed texts are refused, as JSONSerialization refuses them")
    func malformed() {
        for text in [
            "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "\"abc", "01", "-", "1.", ".5", "1e", "+1", "tru", "nul",
            "{\"a\":1}x", "\"a\u{01}b\"", "\"\\x\"", "\"\\u12\"", "[1 2]", "{\"a\":1 \"b\":2}", "NaN", "Infinity", "[1]]",
        ] {
            #expect(throws: (any Error).self, "\(text.debugDescription)") { try check(text) }
        }
    }

    @Test("the gateway refuses a duplicate key with its own reason, and gateway and worker read one conversation")
    func gatewayAndWorkerAgree() throws {
        let intake = PostCallIntake(
            secrets: ["s"], tolerancePast: .seconds(60), toleranceFuture: .seconds(60), maxBodyBytes: 1 << 20,
            cipher: KeyRing(master: MasterKey.generate()).envelopeCipher, clock: .system)
        var text = String(decoding: try fixtureTranscript(conversationID: "conv_first"), as: UTF8.self)
        // A second conversation id after the first: JSONSerialization kept one, JSONDecoder maybe the other.
        text = text.replacingOccurrences(
            of: #""conversation_id":"conv_first""#, with: #""conversation_id":"conv_first","conversation_id":"conv_second""#)
        #expect(throws: IntakeError.duplicateKey) {
            try intake.classify(kept: Data(text.utf8), oversize: false, tenant: "default", signatureHeader: "h")
        }
        let body = try fixtureTranscript(conversationID: "conv_same")
        guard case .enqueue = try intake.classify(kept: body, oversize: false, tenant: "default", signatureHeader: "h") else {
            Issue.record("the fixture was not enqueued")
            return
        }
        #expect(try PostCallWebhook.parse(body).data?.conversationID == "conv_same")
    }

    @Test("every truncation of the fixture, and every fifth structural byte changed, is refused or accepted without a crash")
    func truncationsAndFlips() throws {
        // The scanner reads through an unchecked pointer for speed: this walks every end it can meet.
        let body = [UInt8](try Fixtures.elevenLabs("post_call_transcription.json"))
        for length in 0..<body.count {
            #expect(throws: (any Error).self) { try StrictJSON.check(Data(body[0..<length]), maxDepth: PostCallWebhook.maxDepth) }
        }
        let structural = Set("{}[]\":,\\u0123456789-+.eEtfn ".utf8)
        let replacements: [UInt8] = [0x22, 0x5C, 0x7B, 0x7D, 0x5B, 0x5D, 0x2C, 0x3A, 0x00, 0xFF, 0x75]
        var outcomes = 0
        // Every fifth structural byte (all of them cost half a minute in a debug build).
        for (position, index) in body.indices.filter({ structural.contains(body[$0]) }).enumerated() where position % 5 == 0 {
            for replacement in replacements where replacement != body[index] {
                var changed = body
                changed[index] = replacement
                do { try StrictJSON.check(Data(changed), maxDepth: PostCallWebhook.maxDepth) } catch {}
                outcomes += 1
            }
        }
        #expect(outcomes > 500)
    }
}

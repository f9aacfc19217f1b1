import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore

/// The gateway reads a post-call body's few fields with `PostCallFieldScanner` instead of
/// Foundation's decoding (the ack path). Its answer must be Foundation's wherever it gives one,
/// it must not answer where Foundation refuses the body, and no bytes may make it trap.
@Suite("Post-call field scanner agrees with Foundation", .timeLimit(.minutes(2)))
struct PostCallFieldScannerTests {
    typealias Value = PayloadFuzzTests.Value

    /// Foundation's answer for a body `StrictJSON` accepted: the fields, or nil when it refuses it.
    static func reference(_ body: Data) -> PostCallFields? {
        (try? JSONDecoder().decode(PostCallWebhook.self, from: body)).map(PostCallFields.init)
    }

    static func scanned(_ body: Data) -> PostCallFields? {
        body.withUnsafeBytes { PostCallFieldScanner.scan($0) }
    }

    @Test("every ElevenLabs fixture reads the same fields as Foundation's decoding, and the scanner answers for them")
    func fixtures() throws {
        for name in ["post_call_transcription.json", "call_initiation_failure.json", "post_call_audio.json"] {
            let body = try Fixtures.elevenLabs(name)
            try StrictJSON.check(body, maxDepth: PostCallWebhook.maxDepth)
            let scanned = try #require(Self.scanned(body), "the scanner gave up on \(name)")
            #expect(scanned == Self.reference(body), "\(name)")
        }
        let fixture = try #require(Self.scanned(try Fixtures.elevenLabs("post_call_transcription.json")))
        #expect(fixture.type == EventType.postCallTranscription)
        #expect(fixture.conversationID == Fixtures.fixtureConversation)
        #expect(fixture.data?.callerNumber == Fixtures.fixturePhone)
    }

    @Test("the fields the scanner is careful about: wrong types, nulls, escapes, numbers and non-ASCII agree with Foundation")
    func edgeCases() throws {
        let cases: [String] = [
            #"{"type":"post_call_transcription","data":{"conversation_id":"c1"}}"#,
            #"{"type":5,"data":{"conversation_id":"c1"}}"#,
            #"{"type":null,"data":null}"#,
            #"{"type":"post_call_transcription","data":[1,2]}"#,
            #"{"type":"post_call_transcription","data":"x"}"#,
            #"{"type":"post_call_transcription","data":{"conversation_id":7}}"#,
            #"{"type":"post_call_transcription","data":{"conversation_id":"c\u0031"}}"#,
            #"{"typ\u0065":"post_call_transcription","data":{"conversation_id":"c1"}}"#,
            #"{"type":"post_call_transcription","data":{"conversation_id":"c1","metadata":{"phone_call":{"external_number":"+15551234567","direction":5}}}}"#,
            #"{"type":"post_call_transcription","data":{"conversation_id":"c1","metadata":{"phone_call":{"external_number":15551234567}}}}"#,
            #"{"type":"post_call_transcription","data":{"conversation_id":"c1","metadata":{"phone_call":{"external_number":null,"direction":null}}}}"#,
            #"{"type":"post_call_transcription","data":{"conversation_id":"c1","metadata":{"phone_call":[]}}}"#,
            #"{"type":"post_call_transcription","data":{"conversation_id":"c1","conversation_initiation_client_data":{"dynamic_variables":{"caller_id":"+15551234567","user_id":null,"system__caller_id":{}}}}}"#,
            #"{"type":"post_call_transcription","data":{"conversation_id":"c1","conversation_initiation_client_data":{"dynamic_variables":{"caller_id":15551234567}}}}"#,
            #"{"type":"post_call_transcription","data":{"conversation_id":"c1","conversation_initiation_client_data":{"dynamic_variables":{"user_id":true}}}}"#,
            #"{"type":"post_call_transcription","data":{"conversation_id":"c1","conversation_initiation_client_data":{"dynamic_variables":null}}}"#,
            #"{"type":"post_call_transcription","data":{"conversation_id":"c1","x":1e400,"y":123456789012345678901234567890}}"#,
            #"{"type":"post_call_transcription","data":{"conversation_id":"c1","x":"\ud800"}}"#,
            #"{"type":"post_call_transcription","data":{"conversation_id":"c1","x":"\ud83d\ude00","y":"caf\u00e9 \" \\ \n"}}"#,
            "{\"type\":\"post_call_transcription\",\"data\":{\"conversation_id\":\"c1\",\"x\":\"caf\u{e9}\"}}",
            "{\"type\":\"post_call_transcription\",\"data\":{\"conversation_id\":\"caf\u{e9}\"}}",
            #"{"type":"post_call_transcription","data":{"conversation_id":"c1","user_id":"u_1","transcript":[{"role":"user","message":"hi"}]}}"#,
            #"  {"data":{"conversation_id":"c1"} , "type" : "post_call_audio" }  "#,
            #"[{"type":"post_call_transcription"}]"#,
            #""post_call_transcription""#,
            #"{}"#,
        ]
        var answered = 0
        for text in cases {
            let body = Data(text.utf8)
            guard (try? StrictJSON.check(body, maxDepth: PostCallWebhook.maxDepth)) != nil else { continue }
            let reference = Self.reference(body)
            if let scanned = Self.scanned(body) {
                answered += 1
                #expect(reference != nil, "the scanner answered for a body Foundation refuses: \(text)")
                #expect(scanned == reference, "\(text)")
            }
            // Through the public entry point, the answer is always Foundation's.
            #expect((try? PostCallWebhook.intakeFields(body)) == reference, "\(text)")
        }
        #expect(answered >= 10)
        // Invalid UTF-8 inside a string: the scanner leaves it to Foundation.
        var bytes = Array(#"{"type":"post_call_transcription","data":{"conversation_id":"c1","x":"ab"}}"#.utf8)
        if let index = bytes.firstIndex(of: UInt8(ascii: "b")) { bytes[index] = 0xFF }
        #expect(Self.scanned(Data(bytes)) == nil)
    }

    @Test(
        "20,000 seeded mutations of the fixture: wherever the scanner answers, Foundation agrees; where Foundation refuses, the scanner does not answer"
    )
    func differentialFuzz() async throws {
        let base = try JSONDecoder().decode(Value.self, from: try Fixtures.elevenLabs("post_call_transcription.json"))
        let allPaths = PayloadFuzzTests.paths(of: base)
        var rng = PayloadFuzzTests.SplitMix(state: 0xACC_E55)
        let systematic = PayloadFuzzTests.targets.count * PayloadFuzzTests.evilValues.count
        var answered = 0
        var checked = 0
        for number in 0..<20_000 {
            // Seconds of CPU in one job would hold one of the two threads every test shares (the
            // pool is as wide as the cores) while all suites start; the other tests' deadlines
            // ran out waiting. Letting the others run every 200 cases keeps them going.
            if number % 200 == 0 { await Task.yield() }
            var tree: Value? = base
            if number < systematic {
                let target = PayloadFuzzTests.targets[number / PayloadFuzzTests.evilValues.count]
                tree = PayloadFuzzTests.setting(PayloadFuzzTests.evilValues[number % PayloadFuzzTests.evilValues.count], at: target[...], in: tree)
            } else {
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    let path =
                        Bool.random(using: &rng)
                        ? (PayloadFuzzTests.targets.randomElement(using: &rng) ?? []) : (allPaths.randomElement(using: &rng) ?? [])
                    let value = PayloadFuzzTests.evilValues.randomElement(using: &rng) ?? nil
                    if Int.random(in: 0..<4, using: &rng) == 0 {
                        tree = PayloadFuzzTests.setting(value, at: (path + [.key("extra_\(number)")])[...], in: tree)
                    } else {
                        tree = PayloadFuzzTests.setting(value, at: path[...], in: tree)
                    }
                }
            }
            var body = (tree ?? .null).data
            if number >= systematic, Int.random(in: 0..<4, using: &rng) == 0 { body = PayloadFuzzTests.textMutation(body, &rng) }
            let scanned = Self.scanned(body)  // on any bytes, validated or not: must not trap
            guard (try? StrictJSON.check(body, maxDepth: PostCallWebhook.maxDepth)) != nil else { continue }
            checked += 1
            let reference = Self.reference(body)
            if let scanned {
                answered += 1
                #expect(reference != nil, "case \(number): the scanner answered for a body Foundation refuses")
                #expect(scanned == reference, "case \(number)")
            }
        }
        // The fast path is the common path: most valid mutations are answered by the scanner.
        #expect(checked > 5_000)
        #expect(answered * 2 > checked, "the scanner answered \(answered) of \(checked) valid bodies")
    }

    @Test("malformed, truncated, huge, deeply nested and odd-number inputs never trap the scanner or the intake")
    func hostileInput() throws {
        let fixture = try Fixtures.elevenLabs("post_call_transcription.json")
        var inputs: [Data] = [
            Data(), Data("{".utf8), Data("}".utf8), Data(#"{"type""#.utf8), Data(#"{"type":"#.utf8), Data(#"{"type":"x"#.utf8),
            Data(#"{"type":"x\"#.utf8), Data(#"{"type":"x\u"#.utf8), Data(#"{"type":"x\ud8"#.utf8), Data(#"{"data":{"#.utf8),
            Data(#"{"data":{"conversation_id":"#.utf8), Data(#"{"data":[[[[["#.utf8), Data(#"{"a":-"#.utf8), Data(#"{"a":1e"#.utf8),
            Data(#"{"a":tru"#.utf8), Data(#"{"a":n"#.utf8), Data(#"{"a":f}"#.utf8), Data(#"{"a"}"#.utf8), Data(#"{"a":1,,}"#.utf8),
            Data(#"{"a":}}}}]]]"#.utf8), Data([0xFF, 0xFE, 0x00]), Data([UInt8(ascii: "{"), 0x22, 0xC3]),
            Data(("{\"data\":" + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "}").utf8),
            Data(("{\"data\":" + String(repeating: "{\"a\":", count: 50_000) + "1" + String(repeating: "}", count: 50_000) + "}").utf8),
            Data(("{\"type\":\"" + String(repeating: "\\\"", count: 200_000) + "\"}").utf8),
            Data(("{\"type\":\"post_call_transcription\",\"n\":" + String(repeating: "9", count: 100_000) + "}").utf8),
            Data(("{\"n\":-" + String(repeating: "-", count: 1_000) + "}").utf8),
            Data(String(repeating: "\"", count: 10_001).utf8),
        ]
        for cut in stride(from: 0, to: fixture.count, by: 7) { inputs.append(fixture.prefix(cut)) }
        var rng = PayloadFuzzTests.SplitMix(state: 0xBAD_B17E5)
        for _ in 0..<2_000 {
            var bytes = Array(fixture)
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                let index = Int.random(in: 0..<bytes.count, using: &rng)
                bytes[index] = UInt8.random(in: 0...255, using: &rng)
            }
            inputs.append(Data(bytes))
        }
        for _ in 0..<500 {
            let length = Int.random(in: 0..<300, using: &rng)
            inputs.append(
                Data((0..<length).map { _ in [0x7B, 0x7D, 0x5B, 0x5D, 0x22, 0x3A, 0x2C, 0x5C, 0x31, 0x65, 0x2D].randomElement(using: &rng) ?? 0 }))
        }
        let intake = PostCallIntake(
            secrets: ["s"], tolerancePast: .seconds(60), toleranceFuture: .seconds(60), maxBodyBytes: 4 * 1024 * 1024,
            cipher: KeyRing(master: MasterKey.generate()).envelopeCipher, clock: .system)
        for input in inputs {
            let scanned = Self.scanned(input)
            let valid = (try? StrictJSON.check(input, maxDepth: PostCallWebhook.maxDepth)) != nil
            if valid, let scanned { #expect(scanned == Self.reference(input)) }
            // The intake answers with a decision or an IntakeError (a 400), never anything else.
            do {
                _ = try intake.classify(kept: input, oversize: false, tenant: "default", signatureHeader: "h")
            } catch is IntakeError {
            } catch {
                Issue.record("classify threw \(type(of: error)), not an IntakeError")
            }
        }
    }
}

import Crypto
import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore

/// Shortcuts taken on the post-call path must answer exactly as the code they replaced: hex by
/// table for `String(format: "%02x")`, ASCII trims for Foundation's, HMACs keyed once for HMACs
/// keyed per request, and an erasure-tag key derived once for one derived per tag.
@Suite("Ack path shortcuts answer as the code they replaced", .timeLimit(.minutes(1)))
struct AckPathEquivalenceTests {
    @Test("hex by table equals String(format:) per byte")
    func hex() {
        var rng = SystemRandomNumberGenerator()
        var inputs: [Data] = [Data(), Data([0]), Data([0xFF]), Data(0...255)]
        for _ in 0..<200 { inputs.append(Data((0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })) }
        for data in inputs {
            #expect(data.hexString == data.map { String(format: "%02x", $0) }.joined())
        }
        #expect(Data(hex: Data(0...255).hexString) == Data(0...255))
    }

    @Test("the ASCII trims equal Foundation's on ASCII and on any other text")
    func trims() {
        let samples = [
            "", " ", "\t", "\n\r\u{B}\u{C}", " +1 555 0100 ", "\t+15550100\n", "tel:+1555", "\u{85}+1555\u{A0}", "\u{2003}x\u{3000}", "x", "  a b  ",
            "\u{0}+1\u{0}", "é ", " 😀",
        ]
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array(" \t\n\r\u{B}\u{C}\u{85}\u{A0}\u{2028}+1a".unicodeScalars)
        var inputs = samples
        for _ in 0..<500 {
            inputs.append(
                String(String.UnicodeScalarView((0..<Int.random(in: 0...8, using: &rng)).map { _ in alphabet.randomElement(using: &rng) ?? " " })))
        }
        for text in inputs {
            #expect(trimmedWhitespaceAndNewlines(text) == text.trimmingCharacters(in: .whitespacesAndNewlines), "\(Array(text.unicodeScalars))")
            #expect(SignatureHeader.trimmed(Substring(text)) == text.trimmingCharacters(in: .whitespaces), "\(Array(text.unicodeScalars))")
        }
    }

    @Test("a verifier from HMACs keyed once accepts and refuses exactly what one keyed per request does")
    func keyedVerifier() throws {
        let secrets = ["wsec_current", "wsec_previous"]
        let keyed = StreamingSignatureVerifier.keyed(secrets)
        let body = Data(#"{"type":"post_call_transcription"}"#.utf8)
        for (secret, accepted) in [("wsec_current", true), ("wsec_previous", true), ("wsec_other", false)] {
            let header = try SignatureHeader(parsing: WebhookSigner.header(body: body, secret: secret, timestamp: 1_764_500_000))
            for _ in 0..<2 {  // the keyed HMACs are copied, never consumed
                var once = StreamingSignatureVerifier(header: header, keyed: keyed)
                var each = StreamingSignatureVerifier(header: header, secrets: secrets)
                body.withUnsafeBytes {
                    once.update($0)
                    each.update($0)
                }
                #expect(((try? once.finish()) != nil) == accepted)
                #expect(((try? each.finish()) != nil) == accepted)
            }
        }
    }

    @Test("erasure tags are those of a key derived per tag, under current and previous master keys")
    func userTags() throws {
        let current = MasterKey.generate()
        let previous = MasterKey.generate()
        let ring = KeyRing(master: current, previous: [previous])
        let user = try #require(UserKey("u_abcdefghijklmnopqrstuvwxyz"))
        func reference(_ key: MasterKey) -> String {
            let mac = HMAC<SHA256>.authenticationCode(for: Data("default\u{0}\(user.rawValue)".utf8), using: key.derived("engram-user-tag-v1"))
            return Data(mac).prefix(16).map { String(format: "%02x", $0) }.joined()
        }
        #expect(ring.userTag(tenant: "default", user: user) == reference(current))
        #expect(ring.userTags(tenant: "default", user: user) == [reference(current), reference(previous)])
    }
}

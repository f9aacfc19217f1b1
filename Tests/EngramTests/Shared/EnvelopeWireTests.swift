import Foundation
import Testing

@testable import EngramCore

/// The enqueue writes envelopes with `wireEncoded()` (no JSONEncoder on the ack path); the
/// worker reads them with `Envelope.decode`. Every envelope must come back equal.
@Suite("Envelope wire encoding", .timeLimit(.minutes(1)))
struct EnvelopeWireTests {
    @Test("odd strings, tags, trace fields and times decode back to the same envelope as JSONEncoder's output")
    func roundTrip() throws {
        let texts = [
            "", "default", "a\"b", "back\\slash", "line\nbreak\t\r", "\u{0}\u{1}\u{1F}", "😀 e\u{301} \u{202E}", "</script>", "/slash/",
            String(repeating: "x", count: 10_000),
        ]
        let cipher = KeyRing(master: MasterKey.generate()).envelopeCipher
        var envelopes: [Envelope] = []
        for (i, text) in texts.enumerated() {
            var envelope = try Envelope.seal(
                Data(text.utf8), tenant: text, type: text,
                receivedAt: Date(timeIntervalSince1970: [0, 1e-7, 1_764_500_000.123456, 253_402_300_799.999][i % 4]),
                cipher: cipher, id: text, userTags: i % 3 == 0 ? nil : Array(repeating: text, count: i % 3))
            envelope.attempt = [0, 1, -1, Int.max, Int.min][i % 5]
            envelope.deaths = [nil, 0, 2, Int.max, Int.min, -1][i % 6]
            envelope.trace = i % 2 == 0 ? nil : text
            envelope.traceState = i % 4 == 1 ? text : nil
            envelopes.append(envelope)
        }
        envelopes.append(Envelope(tenant: "t", type: EventType.postCallTranscription, receivedAt: Date(), userTags: [], body: ""))
        for envelope in envelopes {
            let wire = try envelope.wireEncoded()
            #expect(try Envelope.decode(wire) == envelope)
            #expect(try Envelope.decode(wire) == Envelope.decode(try envelope.encoded()))
            #expect(try JSONSerialization.jsonObject(with: wire) is [String: Any])
        }
    }

    @Test("a time that is not finite is refused, as JSONEncoder refuses it")
    func nonFinite() throws {
        var envelope = Envelope(tenant: "t", type: "x", receivedAt: Date(), body: "")
        envelope.receivedAt = .nan
        #expect(throws: (any Error).self) { try envelope.wireEncoded() }
        envelope.receivedAt = .infinity
        #expect(throws: (any Error).self) { try envelope.wireEncoded() }
    }
}

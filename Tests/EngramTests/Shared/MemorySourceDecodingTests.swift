import Foundation
import Testing

@testable import EngramCore

/// `MemorySource.decodeList` reads what Engram writes without `JSONDecoder` and hands anything
/// else to it: on every input both must give the same list (or both nothing).
@Suite("Memory source decoding", .timeLimit(.minutes(1)))
struct MemorySourceDecodingTests {
    static func reference(_ raw: String) -> [MemorySource] {
        (try? JSONDecoder().decode([MemorySource].self, from: Data(raw.utf8))) ?? []
    }

    static func encoded(_ sources: [MemorySource]) -> String {
        String(decoding: (try? JSONEncoder().encode(sources)) ?? Data(), as: UTF8.self)
    }

    /// Sources as the extractors write them: some without a conversation, up to 40 turns.
    static func generated(_ random: inout SplitMix64) -> [MemorySource] {
        let kinds = ["conversation", "tool", "summary", "data_collection"]
        return (0..<Int(random.next() % 4)).map { _ in
            MemorySource(
                conversationID: random.next() % 3 == 0 ? nil : "conv_\(random.next() % 1_000_000)",
                turns: (0..<Int(random.next() % 40)).map { _ in Int(random.next() % 2_000) },
                kind: kinds[Int(random.next() % 4)], extractor: random.next() % 2 == 0 ? "local-v3" : "openai:gpt-4o-mini")
        }
    }

    @Test("what Engram writes decodes to what was written")
    func roundTrip() {
        var random = SplitMix64(seed: 19)
        for _ in 0..<2_000 {
            let sources = Self.generated(&random)
            #expect(MemorySource.decodeList(Self.encoded(sources)) == sources)
        }
    }

    @Test("generated and mutated input: the same answer as JSONDecoder, never a crash")
    func agreesWithJSONDecoder() {
        var random = SplitMix64(seed: 7)
        let inserts: [String] = [
            " ", "\\", "\"", ",", "]", "}", "[", "{", "-", "0", "01", "1e2", ".5", "null", "é", "\\u0041", "\u{01}",
            "9999999999", #""extra":1,"#, #""turns":[1],"#, #""kind":"x","#,
        ]
        var checked = 0
        for _ in 0..<20_000 {
            var bytes = Array(Self.encoded(Self.generated(&random)).utf8)
            for _ in 0..<(1 + Int(random.next() % 3)) {
                let at = bytes.isEmpty ? 0 : Int(random.next() % UInt64(bytes.count + 1))
                switch random.next() % 3 {
                case 0 where !bytes.isEmpty && at < bytes.count: bytes.remove(at: at)
                case 1: bytes.insert(contentsOf: Array(inserts[Int(random.next() % UInt64(inserts.count))].utf8), at: at)
                default: if at < bytes.count { bytes[at] = UInt8(truncatingIfNeeded: random.next()) }
                }
            }
            let raw = String(decoding: bytes, as: UTF8.self)
            #expect(MemorySource.decodeList(raw) == Self.reference(raw), "\(raw)")
            checked += 1
        }
        #expect(checked == 20_000)
    }

    @Test("valid JSON outside the written form still decodes, through JSONDecoder")
    func outsideTheFastPath() {
        let cases = [
            #"[ {"turns": [1, 2], "kind": "tool", "extractor": "e"} ]"#,
            #"[{"conversation_id":null,"turns":[],"kind":"tool","extractor":"e"}]"#,
            #"[{"conversation_id":"caf\u00e9","turns":[3],"kind":"tool","extractor":"e","extra":[1]}]"#,
            #"[{"turns":[1234567890],"kind":"tool","extractor":"e"}]"#,
            #"[{"turns":[1],"kind":"a","kind":"b","extractor":"e"}]"#,
            "", "[]", "[", "not json", #"[{"turns":[1],"kind":"k"}]"#,
        ]
        for raw in cases { #expect(MemorySource.decodeList(raw) == Self.reference(raw), "\(raw)") }
        #expect(MemorySource.decodeList(cases[2]).first?.conversationID == "café")
        #expect(MemorySource.decodeList(cases[3]).first?.turns == [1_234_567_890])
    }
}

import Foundation

extension MemorySource {
    /// A memory's `sources` column, as stored (`JSONEncoder` of `[MemorySource]`); `[]` when it
    /// does not decode, as before.
    ///
    /// Every candidate row of a search is decoded, and `JSONDecoder` took about 7 µs a row (7 % of
    /// the gateway's CPU at 50 searches/s). What Engram writes is read here directly: ASCII
    /// strings without escapes, turn numbers of at most nine digits, each key at most once.
    /// Anything else, however valid as JSON, goes to `JSONDecoder`, so both always agree
    /// (`MemorySourceDecodingTests` compares them on generated and mutated input).
    public static func decodeList(_ raw: String) -> [MemorySource] {
        var raw = raw
        let fast = raw.withUTF8 { bytes -> [MemorySource]? in
            var parser = FastSources(bytes: bytes)
            return parser.list()
        }
        if let fast { return fast }
        return (try? JSONDecoder().decode([MemorySource].self, from: Data(raw.utf8))) ?? []
    }
}

/// The fast path of `MemorySource.decodeList`: nil as soon as the input leaves the subset.
private struct FastSources {
    let bytes: UnsafeBufferPointer<UInt8>
    var at = 0

    init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    mutating func list() -> [MemorySource]? {
        guard take(UInt8(ascii: "[")) else { return nil }
        var sources: [MemorySource] = []
        if take(UInt8(ascii: "]")) { return at == bytes.count ? sources : nil }
        repeat {
            guard let source = object() else { return nil }
            sources.append(source)
        } while take(UInt8(ascii: ","))
        guard take(UInt8(ascii: "]")), at == bytes.count else { return nil }
        return sources
    }

    mutating func object() -> MemorySource? {
        guard take(UInt8(ascii: "{")) else { return nil }
        var conversationID: String?
        var turns: [Int]?
        var kind: String?
        var extractor: String?
        repeat {
            guard let key = string(), take(UInt8(ascii: ":")) else { return nil }
            switch key {
            case "conversation_id" where conversationID == nil:
                guard let value = string() else { return nil }
                conversationID = value
            case "turns" where turns == nil:
                guard let value = numbers() else { return nil }
                turns = value
            case "kind" where kind == nil:
                guard let value = string() else { return nil }
                kind = value
            case "extractor" where extractor == nil:
                guard let value = string() else { return nil }
                extractor = value
            default:
                return nil  // an unknown or repeated key, or a null: JSONDecoder decides
            }
        } while take(UInt8(ascii: ","))
        guard take(UInt8(ascii: "}")), let turns, let kind, let extractor else { return nil }
        return MemorySource(conversationID: conversationID, turns: turns, kind: kind, extractor: extractor)
    }

    /// A string of printable ASCII without escapes.
    mutating func string() -> String? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        let start = at
        while at < bytes.count {
            let byte = bytes[at]
            if byte == UInt8(ascii: "\"") {
                let value = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<at]), as: UTF8.self)
                at += 1
                return value
            }
            guard byte >= 0x20, byte < 0x7F, byte != UInt8(ascii: "\\") else { return nil }
            at += 1
        }
        return nil
    }

    /// `[n, n, ...]` of non-negative integers of one to nine digits, no leading zero.
    mutating func numbers() -> [Int]? {
        guard take(UInt8(ascii: "[")) else { return nil }
        var values: [Int] = []
        if take(UInt8(ascii: "]")) { return values }
        repeat {
            let start = at
            var value = 0
            while at < bytes.count, bytes[at] >= UInt8(ascii: "0"), bytes[at] <= UInt8(ascii: "9"), at - start < 9 {
                value = value * 10 + Int(bytes[at] - UInt8(ascii: "0"))
                at += 1
            }
            let digits = at - start
            guard digits > 0, digits == 1 || bytes[start] != UInt8(ascii: "0") else { return nil }
            // A tenth digit, a fraction or an exponent: not in the subset.
            if at < bytes.count,
                [UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E")].contains(bytes[at]) || (bytes[at] >= 0x30 && bytes[at] <= 0x39)
            {
                return nil
            }
            values.append(value)
        } while take(UInt8(ascii: ","))
        return take(UInt8(ascii: "]")) ? values : nil
    }

    mutating func take(_ byte: UInt8) -> Bool {
        guard at < bytes.count, bytes[at] == byte else { return false }
        at += 1
        return true
    }
}

import Foundation

extension Envelope {
    /// The envelope's JSON, as `encoded()` writes it (the same keys, absent optionals left out,
    /// values that `JSONDecoder` reads back equal), written directly: the post-call enqueue does
    /// this on every acknowledgement, and `JSONEncoder` cost more than the rest of it together.
    /// A non-finite `receivedAt` (never from a clock) is left to `encoded()`, which refuses it.
    public func wireEncoded() throws -> Data { Data(try wireBytes()) }

    /// `wireEncoded()` as bytes (what a Redis argument holds, without another copy).
    public func wireBytes() throws -> [UInt8] {
        guard receivedAt.isFinite else { return Array(try encoded()) }
        var out: [UInt8] = []
        out.reserveCapacity(body.utf8.count + id.utf8.count + tenant.utf8.count + type.utf8.count + 160 + 70 * (userTags?.count ?? 0))
        out.append(UInt8(ascii: "{"))
        Self.appendKey("id", to: &out, first: true)
        Self.appendString(id, to: &out)
        Self.appendKey("tenant", to: &out)
        Self.appendString(tenant, to: &out)
        Self.appendKey("type", to: &out)
        Self.appendString(type, to: &out)
        Self.appendKey("received_at", to: &out)
        out.append(contentsOf: "\(receivedAt)".utf8)
        Self.appendKey("attempt", to: &out)
        out.append(contentsOf: String(attempt).utf8)
        if let deaths {
            Self.appendKey("deaths", to: &out)
            out.append(contentsOf: String(deaths).utf8)
        }
        if let trace {
            Self.appendKey("trace", to: &out)
            Self.appendString(trace, to: &out)
        }
        if let traceState {
            Self.appendKey("trace_state", to: &out)
            Self.appendString(traceState, to: &out)
        }
        if let userTags {
            Self.appendKey("user_tags", to: &out)
            out.append(UInt8(ascii: "["))
            for (i, tag) in userTags.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                Self.appendString(tag, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        }
        Self.appendKey("body", to: &out)
        Self.appendString(body, to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    private static func appendKey(_ key: StaticString, to out: inout [UInt8], first: Bool = false) {
        if !first { out.append(UInt8(ascii: ",")) }
        out.append(UInt8(ascii: "\""))
        key.withUTF8Buffer { out.append(contentsOf: $0) }
        out.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// A JSON string literal: quote, backslash and control characters escaped; the rest as UTF-8.
    static func appendString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Most text (the base64 body, ids, tags) needs no escape: copied whole.
        let copied =
            text.utf8.withContiguousStorageIfAvailable { bytes -> Bool in
                guard !bytes.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else { return false }
                out.append(contentsOf: bytes)
                return true
            } ?? false
        if copied {
            out.append(UInt8(ascii: "\""))
            return
        }
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0..<0x20:
                out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0x0F)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

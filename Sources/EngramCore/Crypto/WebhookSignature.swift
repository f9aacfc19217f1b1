@preconcurrency import Crypto
import Foundation

/// Why a webhook signature was refused. No secret or body in the description.
public enum SignatureError: Error, Equatable, Sendable {
    case missingHeader
    case malformedHeader
    case expired
    case fromTheFuture
    case mismatch
}

/// ElevenLabs' `ElevenLabs-Signature: t=<unix seconds>,v0=<hex>` header, parsed.
public struct SignatureHeader: Sendable, Equatable {
    public let timestamp: Int64
    public let signatures: [Data]

    public init(parsing header: String?) throws {
        guard let header, !header.isEmpty else { throw SignatureError.missingHeader }
        var timestamp: Int64?
        var signatures: [Data] = []
        for part in header.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1).map(Self.trimmed)
            guard pair.count == 2 else { continue }
            switch pair[0] {
            case "t": timestamp = Int64(pair[1])
            case "v0": if let bytes = Data(hex: pair[1]), bytes.count == 32 { signatures.append(bytes) }
            default: continue
            }
        }
        guard let timestamp, !signatures.isEmpty else { throw SignatureError.malformedHeader }
        self.timestamp = timestamp
        self.signatures = signatures
    }

    /// `trimmingCharacters(in: .whitespaces)`, without bridging to NSString for ASCII text (the
    /// header ElevenLabs sends), where that set is the space and the tab.
    static func trimmed(_ text: Substring) -> String {
        guard text.utf8.allSatisfy({ $0 < 0x80 }) else { return text.trimmingCharacters(in: .whitespaces) }
        let isBlank: (UInt8) -> Bool = { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
        let bytes = text.utf8
        guard let first = bytes.firstIndex(where: { !isBlank($0) }), let last = bytes.lastIndex(where: { !isBlank($0) }) else { return "" }
        return String(decoding: bytes[first...last], as: UTF8.self)
    }

    /// Checks the timestamp window: 30 minutes in the past (the SDKs' tolerance), 5 in the future.
    public func checkFreshness(now: Date, past: Duration, future: Duration) throws {
        let age = now.timeIntervalSince1970 - Double(timestamp)
        if age > past.seconds { throw SignatureError.expired }
        if -age > future.seconds { throw SignatureError.fromTheFuture }
    }
}

/// Verifies a body against the header while the body streams in: feed chunks, then `finish`.
/// One HMAC per configured secret (current and previous, for rotation).
public struct StreamingSignatureVerifier {
    private var macs: [HMAC<SHA256>]
    private let header: SignatureHeader

    public init(header: SignatureHeader, secrets: [String]) {
        self.init(header: header, keyed: Self.keyed(secrets))
    }

    /// With HMACs already keyed by the secrets (`keyed(_:)`, once per configuration): keying
    /// one costs as much as hashing a short body.
    public init(header: SignatureHeader, keyed: [HMAC<SHA256>]) {
        self.header = header
        let prefix = Data("\(header.timestamp).".utf8)
        macs = keyed.map { keyedMac in
            var mac = keyedMac
            mac.update(data: prefix)
            return mac
        }
    }

    public static func keyed(_ secrets: [String]) -> [HMAC<SHA256>] {
        secrets.map { HMAC<SHA256>(key: SymmetricKey(data: Data($0.utf8))) }
    }

    public mutating func update<Bytes: ContiguousBytes>(_ chunk: Bytes) {
        chunk.withUnsafeBytes { buffer in
            for index in macs.indices { macs[index].update(data: buffer) }
        }
    }

    /// Accepts if any `v0` matches any secret; every comparison is constant-time.
    public func finish() throws {
        var matched = false
        for mac in macs {
            let expected = Data(mac.finalize())
            for candidate in header.signatures where constantTimeEquals(expected, candidate) {
                matched = true
            }
        }
        guard matched else { throw SignatureError.mismatch }
    }
}

/// Signs bodies the way ElevenLabs does (tests, the benchmark and the evaluation use it).
public enum WebhookSigner {
    public static func header(body: Data, secret: String, timestamp: Int64) -> String {
        var mac = HMAC<SHA256>(key: SymmetricKey(data: Data(secret.utf8)))
        mac.update(data: Data("\(timestamp).".utf8))
        mac.update(data: body)
        return "t=\(timestamp),v0=\(Data(mac.finalize()).hexString)"
    }
}

private let hexDigitTable: [UInt8] = Array("0123456789abcdef".utf8)

/// `trimmingCharacters(in: .whitespacesAndNewlines)` without bridging to NSString for ASCII text
/// (where that set is U+0009 to U+000D and the space); other text goes through Foundation.
func trimmedWhitespaceAndNewlines(_ text: String) -> String {
    let bytes = text.utf8
    guard bytes.allSatisfy({ $0 < 0x80 }) else { return text.trimmingCharacters(in: .whitespacesAndNewlines) }
    let isBlank: (UInt8) -> Bool = { $0 == 0x20 || (0x09...0x0D).contains($0) }
    guard let first = bytes.firstIndex(where: { !isBlank($0) }), let last = bytes.lastIndex(where: { !isBlank($0) }) else { return "" }
    return String(decoding: bytes[first...last], as: UTF8.self)
}

/// Compares two byte strings in time that depends only on their lengths.
public func constantTimeEquals(_ a: Data, _ b: Data) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for (x, y) in zip(a, b) { difference |= x ^ y }
    return difference == 0
}

/// Compares secrets (API keys) without leaking their length or content through timing.
public func secretsEqual(_ presented: String, _ expected: String) -> Bool {
    constantTimeEquals(Data(SHA256.hash(data: Data(presented.utf8))), Data(SHA256.hash(data: Data(expected.utf8))))
}

extension Data {
    /// Hex text (from a header: untrusted) by UTF-8 bytes, so no character arithmetic can trap.
    public init?(hex: String) {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index + 1 < digits.count {
            guard let high = value(digits[index]), let low = value(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        self.init(bytes)
    }

    /// Lowercase hex, two digits a byte (a table, not `String(format:)` per byte: this runs for
    /// every dedupe mark and erasure tag on the post-call path).
    public var hexString: String {
        let count = self.count
        guard count > 0 else { return "" }
        return String(unsafeUninitializedCapacity: count * 2) { out in
            var index = 0
            for byte in self {
                out[index] = hexDigitTable[Int(byte >> 4)]
                out[index + 1] = hexDigitTable[Int(byte & 0x0F)]
                index += 2
            }
            return index
        }
    }
}

extension Duration {
    /// Whole and fractional seconds as a Double.
    public var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}

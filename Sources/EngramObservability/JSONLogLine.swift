import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One log line's JSON, written directly: keys sorted, strings escaped as `JSONSerialization`
/// escapes them (`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, other control characters as
/// `\u00XX`). `JSONSerialization` and `ISO8601DateFormatter` cost about 70 µs a line, as much as
/// the rest of a post-call acknowledgement, which logs two lines at the default level.
enum JSONLogLine {
    static func render(_ object: [String: String]) -> Data {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        out.append(UInt8(ascii: "{"))
        for (i, key) in orderedKeys(Array(object.keys)).enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            appendString(key, to: &out)
            out.append(UInt8(ascii: ":"))
            appendString(object[key] ?? "", to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return Data(out)
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// `JSONSerialization`'s `.sortedKeys` order (a locale-aware comparison with `.numeric`,
    /// `.caseInsensitive` and `.forcedOrdering`), worked out once per set of keys: a handler
    /// logs a few fixed sets of metadata keys, so the cache stays small (and is capped).
    static func orderedKeys(_ keys: [String]) -> [String] {
        let plain = keys.sorted()
        orderLock.lock()
        let cached = orderCache[plain]
        orderLock.unlock()
        if let cached { return cached }
        let locale = NSLocale.system as Locale
        let ordered = keys.sorted { a, b in
            a.compare(b, options: [.numeric, .caseInsensitive, .forcedOrdering], range: a.startIndex..<a.endIndex, locale: locale)
                == .orderedAscending
        }
        orderLock.lock()
        if orderCache.count < 1_024 { orderCache[plain] = ordered }
        orderLock.unlock()
        return ordered
    }

    private static let orderLock = NSLock()
    nonisolated(unsafe) private static var orderCache: [[String]: [String]] = [:]

    static func appendString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "/"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "/")])
            case 0x08: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
            case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0x0F)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// `2026-11-30T10:46:50.089Z`: UTC, milliseconds, as `ISO8601DateFormatter` with
    /// `.withInternetDateTime` and `.withFractionalSeconds` writes it.
    static func timestamp(_ date: Date) -> String {
        let interval = date.timeIntervalSince1970
        guard interval.isFinite, abs(interval) < 1e11 else { return ISO8601DateFormatter.shared.string(from: date) }
        let floored = interval.rounded(.down)
        var seconds = time_t(floored)
        var millis = Int(((interval - floored) * 1000).rounded())
        if millis >= 1000 {
            millis -= 1000
            seconds += 1
        }
        var parts = tm()
        guard gmtime_r(&seconds, &parts) != nil, parts.tm_year + 1900 >= 0, parts.tm_year + 1900 <= 9999 else {
            return ISO8601DateFormatter.shared.string(from: date)
        }
        var out: [UInt8] = []
        out.reserveCapacity(24)
        func digits(_ value: Int, _ width: Int) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            var rest = value
            while divisor > 0 {
                out.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: (rest / divisor) % 10))
                rest %= divisor
                divisor /= 10
            }
        }
        digits(Int(parts.tm_year) + 1900, 4)
        out.append(UInt8(ascii: "-"))
        digits(Int(parts.tm_mon) + 1, 2)
        out.append(UInt8(ascii: "-"))
        digits(Int(parts.tm_mday), 2)
        out.append(UInt8(ascii: "T"))
        digits(Int(parts.tm_hour), 2)
        out.append(UInt8(ascii: ":"))
        digits(Int(parts.tm_min), 2)
        out.append(UInt8(ascii: ":"))
        digits(Int(parts.tm_sec), 2)
        out.append(UInt8(ascii: "."))
        digits(millis, 3)
        out.append(UInt8(ascii: "Z"))
        return String(decoding: out, as: UTF8.self)
    }
}

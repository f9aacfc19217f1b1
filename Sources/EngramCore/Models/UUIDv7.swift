import Foundation

/// Time-ordered UUIDs (RFC 9562 version 7): memory and event ids sort by creation.
public enum UUIDv7 {
    public static func make(at date: Date = Date()) -> String {
        var bytes = [UInt8](repeating: 0, count: 16)
        // 48 bits of milliseconds; a date outside them (NaN, before 1970, past year 10889) is clamped.
        let millis = UInt64(clamping: max(0, min(SafeNumber.clampedInt64(date.timeIntervalSince1970 * 1000), (1 << 48) - 1)))
        for i in 0..<6 { bytes[i] = UInt8((millis >> (8 * (5 - UInt64(i)))) & 0xff) }
        var generator = SystemRandomNumberGenerator()
        for i in 6..<16 { bytes[i] = UInt8.random(in: 0...255, using: &generator) }
        bytes[6] = (bytes[6] & 0x0f) | 0x70
        bytes[8] = (bytes[8] & 0x3f) | 0x80
        let hex = bytes.map { String(format: "%02x", $0) }.joined()
        let parts = [hex.prefix(8), hex.dropFirst(8).prefix(4), hex.dropFirst(12).prefix(4), hex.dropFirst(16).prefix(4), hex.dropFirst(20)]
        return parts.joined(separator: "-")
    }
}

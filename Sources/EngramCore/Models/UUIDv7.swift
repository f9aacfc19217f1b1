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
        // Hex by table, dashes in place: one small allocation (it was 16 formatted strings and
        // three joins, on every memory and every envelope).
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var text = [UInt8]()
        text.reserveCapacity(36)
        for (i, byte) in bytes.enumerated() {
            if i == 4 || i == 6 || i == 8 || i == 10 { text.append(UInt8(ascii: "-")) }
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

import Foundation
import Testing

@testable import EngramObservability

/// Log lines are written without `JSONSerialization` and `ISO8601DateFormatter` (about 70 µs a
/// line, two lines per post-call acknowledgement): the bytes must stay what they were.
@Suite("JSON log lines", .timeLimit(.minutes(1)))
struct JSONLogLineTests {
    @Test("a line is byte for byte what JSONSerialization with sorted keys wrote, escapes and odd text included")
    func sameBytes() throws {
        var objects: [[String: String]] = [
            [:],
            ["message": "request", "route": "/v1/elevenlabs/post-call", "status": "200", "duration_ms": "1.25", "level": "info"],
            [
                "a": "\"quoted\" and \\ back\\slash", "b": "tab\tnew\nline\rfeed\u{8}\u{C}", "c": "\u{0}\u{1}\u{1F}\u{7F}",
                "d": "😀 é e\u{301} \u{202E}",
            ],
            ["zeta": "1", "alpha": "2", "Beta": "3", "_x": "4", "a_b": "5", "a-b": "6", "a.b": "7"],
        ]
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("ab/\\\"\n\t {}:,é😀\u{0}\u{1B}".unicodeScalars)
        for _ in 0..<300 {
            var object: [String: String] = [:]
            for _ in 0..<Int.random(in: 0...6, using: &rng) {
                let key = String(
                    String.UnicodeScalarView((0..<Int.random(in: 1...6, using: &rng)).map { _ in alphabet.randomElement(using: &rng) ?? "a" }))
                object[key] = String(
                    String.UnicodeScalarView((0..<Int.random(in: 0...12, using: &rng)).map { _ in alphabet.randomElement(using: &rng) ?? "a" }))
            }
            objects.append(object)
        }
        for object in objects {
            let expected = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            let rendered = JSONLogLine.render(object)
            #expect(
                rendered == expected,
                "\(String(decoding: rendered, as: UTF8.self)) != \(String(decoding: expected, as: UTF8.self))")
            #expect(try JSONSerialization.jsonObject(with: rendered) as? [String: String] == object)
        }
    }

    @Test("the time is what ISO8601DateFormatter wrote, within its millisecond rounding, far dates included")
    func sameTime() {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var dates = [0, 1, 1_764_500_810.089, 1_764_500_810.999_9, 951_782_400.5, 4_102_444_799.123, 253_402_300_799].map(
            Date.init(timeIntervalSince1970:))
        for _ in 0..<1_000 { dates.append(Date(timeIntervalSince1970: Double(Int.random(in: 0...4_102_444_800_000)) / 1000)) }
        for date in dates {
            let mine = JSONLogLine.timestamp(date)
            let theirs = formatter.string(from: date)
            #expect(mine.utf8.count == theirs.utf8.count, "\(mine) vs \(theirs)")
            guard let a = formatter.date(from: mine), let b = formatter.date(from: theirs) else {
                Issue.record("\(mine) or \(theirs) does not parse")
                continue
            }
            #expect(abs(a.timeIntervalSince1970 - b.timeIntervalSince1970) < 0.0015, "\(mine) vs \(theirs)")
        }
        // Nothing traps on times no clock gives.
        for odd in [Double.nan, .infinity, -.infinity, -1e300, 1e300, -62_135_596_800.5] {
            _ = JSONLogLine.timestamp(Date(timeIntervalSince1970: odd))
        }
    }
}

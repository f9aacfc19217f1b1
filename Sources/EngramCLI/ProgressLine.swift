import Foundation
import Synchronization

/// Progress of long work on stderr — done/total, rate, time left — rewritten in place at most
/// a few times a second. Silent unless stderr is a terminal, and with `--json`: scripts and
/// logs see only the result.
final class ProgressLine: Sendable {
    private struct State {
        var lastDraw: ContinuousClock.Instant?
        var drawn = false
    }

    private let label: String
    private let enabled: Bool
    private let started = ContinuousClock.now
    private let state = Mutex(State())

    init(_ label: String, json: Bool) {
        self.label = label
        self.enabled = !json && isatty(STDERR_FILENO) == 1
    }

    /// `total` nil: the amount of work is not known in advance (shown as a count and a rate).
    func update(done: Int, total: Int?) {
        guard enabled else { return }
        let now = ContinuousClock.now
        let due = state.withLock { s -> Bool in
            let finished = total.map { done >= $0 } ?? false
            if let last = s.lastDraw, now - last < .milliseconds(200), !finished { return false }
            s.lastDraw = now
            s.drawn = true
            return true
        }
        guard due else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[2K\(Self.text(label: label, done: done, total: total, elapsed: now - started))".utf8))
    }

    /// Ends the line so the result prints below it.
    func finish() {
        guard enabled, state.withLock({ $0.drawn }) else { return }
        FileHandle.standardError.write(Data("\n".utf8))
    }

    static func text(label: String, done: Int, total: Int?, elapsed: Duration) -> String {
        let seconds = max(0.001, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        let rate = Double(done) / seconds
        let rateText = rate >= 10 ? String(format: "%.0f/s", rate) : String(format: "%.1f/s", rate)
        guard let total, total > 0 else { return "\(label): \(done) done, \(rateText)" }
        let percent = min(100, Double(done) * 100 / Double(total))
        let left = rate > 0 ? duration(Double(max(0, total - done)) / rate) : "?"
        return "\(label): \(done)/\(total) (\(String(format: "%.0f", percent))%), \(rateText), \(left) left"
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds < 360_000 else { return "?" }
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
        return "\(s / 3600)h\(String(format: "%02d", (s % 3600) / 60))m"
    }
}

import Foundation
import Logging

/// One JSON object per line on stdout: level, time, service, message and fixed metadata keys.
/// Callers log ids, counts and error classes only; never content, transcripts or numbers.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let label: String
    let service: String
    let sink: LogSink

    public init(label: String, service: String, level: Logger.Level, sink: LogSink = .standardOutput) {
        self.label = label
        self.service = service
        self.logLevel = level
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var object: [String: String] = [
            "time": ISO8601DateFormatter.shared.string(from: Date()), "level": event.level.rawValue, "service": service,
            "logger": label, "message": event.message.description,
        ]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) { object[key] = "\(value)" }
        guard var line = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
        line.append(0x0a)
        sink.write(line)
    }
}

/// Where log lines go: stdout, or a capture buffer in tests.
public final class LogSink: @unchecked Sendable {
    private let lock = NSLock()
    private var captured = Data()
    private let toStandardOutput: Bool

    public static let standardOutput = LogSink(toStandardOutput: true)

    public init(toStandardOutput: Bool = false) { self.toStandardOutput = toStandardOutput }

    func write(_ line: Data) {
        lock.lock()
        defer { lock.unlock() }
        if toStandardOutput { FileHandle.standardOutput.write(line) } else { captured.append(line) }
    }

    public var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: captured, as: UTF8.self)
    }
}

extension ISO8601DateFormatter {
    nonisolated(unsafe) static let shared: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()
}

/// Process-wide logging set-up, once, at start.
public enum EngramLogging {
    public static func bootstrap(service: String, level: Logger.Level) {
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label, service: service, level: level) }
    }
}

import Foundation
import Logging

/// One JSON object per line on stdout: level, time, service, message and fixed metadata keys.
/// Callers log ids, counts and error classes only; never content, transcripts or numbers.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    /// Adds per-line metadata from the task (the active trace's ids when tracing is on).
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let service: String
    let sink: LogSink
    /// Keys never written, whoever sets them (a library's diagnostics that would dump headers).
    let droppedKeys: Set<String>

    public init(
        label: String, service: String, level: Logger.Level, sink: LogSink = .standardOutput,
        metadataProvider: Logger.MetadataProvider? = nil, droppingMetadataKeys droppedKeys: Set<String> = []
    ) {
        self.label = label
        self.service = service
        self.logLevel = level
        self.sink = sink
        self.metadataProvider = metadataProvider
        self.droppedKeys = droppedKeys
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var object: [String: String] = [
            "time": JSONLogLine.timestamp(Date()), "level": event.level.rawValue, "service": service,
            "logger": label, "message": event.message.description,
        ]
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided, uniquingKeysWith: { $1 }) }
        merged.merge(event.metadata ?? [:], uniquingKeysWith: { $1 })
        for (key, value) in merged where !droppedKeys.contains(key) { object[key] = "\(value)" }
        var line = JSONLogLine.render(object)
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
    /// `traceMetadata`: add `trace_id` and `span_id` of the active span to each line (tracing on).
    public static func bootstrap(service: String, level: Logger.Level, traceMetadata: Bool = false) {
        guard traceMetadata else {
            LoggingSystem.bootstrap { label in JSONLogHandler(label: label, service: service, level: level) }
            return
        }
        LoggingSystem.bootstrap(
            { label, provider in
                JSONLogHandler(label: label, service: service, level: level, metadataProvider: provider)
            }, metadataProvider: EngramTracing.loggingMetadataProvider)
    }
}

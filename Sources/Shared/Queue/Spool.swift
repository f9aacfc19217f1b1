import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// One spooled enqueue: the envelope and its dedupe marks, as `EventQueue.enqueue` takes them.
public struct SpoolRecord: Codable, Sendable, Equatable {
    public var envelope: Envelope
    public var dedupe: [String]
    public var ttlSeconds: Int
}

/// The gateway's local append-only spool for when Redis is down: each record is fsync'd before
/// the webhook is answered 200, and drained in order once Redis is back (also after a restart).
/// Record framing: 4-byte big-endian length, 4-byte CRC-32, JSON. A torn or corrupt tail is
/// detected, logged and skipped; it never crashes the gateway.
public final class Spool: @unchecked Sendable {
    private let lock = NSLock()
    private let logURL: URL
    private let offsetURL: URL
    private let logger: Logger
    private var pendingCount: Int

    public init(directory: String, logger: Logger) throws {
        let dir = URL(fileURLWithPath: directory)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        logURL = dir.appendingPathComponent("spool.log")
        offsetURL = dir.appendingPathComponent("spool.offset")
        self.logger = logger
        pendingCount = 0
        if !FileManager.default.fileExists(atPath: logURL.path) {
            _ = FileManager.default.createFile(atPath: logURL.path, contents: nil, attributes: [.posixPermissions: 0o600])
        }
        pendingCount = (try? readPending().records.count) ?? 0
    }

    /// Records waiting to be drained.
    public var depth: Int { lock.withLock { pendingCount } }

    /// True if a record can be written now (readiness).
    public var isWritable: Bool { FileManager.default.isWritableFile(atPath: logURL.path) }

    /// Appends and fsyncs one record; returns once it is durable.
    public func append(_ record: SpoolRecord) throws {
        let payload = try JSONEncoder().encode(record)
        var frame = Data()
        frame.append(contentsOf: withUnsafeBytes(of: UInt32(payload.count).bigEndian, Array.init))
        frame.append(contentsOf: withUnsafeBytes(of: CRC32.checksum(payload).bigEndian, Array.init))
        frame.append(payload)
        try lock.withLock {
            let fd = open(logURL.path, O_WRONLY | O_APPEND | O_CREAT, 0o600)
            guard fd >= 0 else { throw SpoolError.io("cannot open the spool") }
            defer { close(fd) }
            let written = frame.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard written == frame.count, fsync(fd) == 0 else { throw SpoolError.io("cannot write the spool") }
            pendingCount += 1
        }
    }

    /// Sends pending records in order through `send`; stops at the first failure (Redis still
    /// down) and resumes there next time. Returns how many were drained.
    @discardableResult
    public func drain(_ send: (SpoolRecord) async throws -> Void) async throws -> Int {
        let (records, _) = try lock.withLock { try readPending() }
        var drained = 0
        for (record, endOffset) in records {
            try await send(record)
            try lock.withLock {
                try writeOffset(endOffset)
                pendingCount = max(0, pendingCount - 1)
            }
            drained += 1
        }
        // Everything sent: reset both files, unless something was appended meanwhile.
        try lock.withLock {
            let (left, _) = try readPending()
            if left.isEmpty {
                try Data().write(to: logURL)
                try writeOffset(0)
                pendingCount = 0
            }
        }
        return drained
    }

    /// Records after the saved offset, each with the offset just past it. Caller holds the lock.
    private func readPending() throws -> (records: [(SpoolRecord, UInt64)], corruptTail: Bool) {
        let data = (try? Data(contentsOf: logURL)) ?? Data()
        // The offset file is on disk, so it is outside input: a value past Int or the log is 0.
        var offset = Int(exactly: readOffset()) ?? 0
        if offset > data.count { offset = 0 }
        var records: [(SpoolRecord, UInt64)] = []
        while offset < data.count {
            guard offset + 8 <= data.count else { return skipTail(records, at: offset, size: data.count) }
            let length = Int(data[offset..<offset + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
            let checksum = data[offset + 4..<offset + 8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            guard length > 0, offset + 8 + length <= data.count else { return skipTail(records, at: offset, size: data.count) }
            let payload = data[offset + 8..<offset + 8 + length]
            guard CRC32.checksum(Data(payload)) == checksum, let record = try? JSONDecoder().decode(SpoolRecord.self, from: payload) else {
                return skipTail(records, at: offset, size: data.count)
            }
            offset += 8 + length
            records.append((record, UInt64(offset)))
        }
        return (records, false)
    }

    private func skipTail(_ records: [(SpoolRecord, UInt64)], at offset: Int, size: Int) -> ([(SpoolRecord, UInt64)], Bool) {
        logger.error("spool tail is torn or corrupt; skipping it", metadata: ["offset": "\(offset)", "bytes": "\(size - offset)"])
        return (records, true)
    }

    private func readOffset() -> UInt64 {
        guard let text = try? String(contentsOf: offsetURL, encoding: .utf8) else { return 0 }
        return UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    private func writeOffset(_ offset: UInt64) throws {
        try Data(String(offset).utf8).write(to: offsetURL, options: .atomic)
    }
}

public enum SpoolError: Error, CustomStringConvertible {
    case io(String)
    public var description: String {
        switch self { case .io(let why): return "spool: \(why)" }
    }
}

/// CRC-32 (IEEE), for spool record integrity.
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 == 1 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum(_ data: Data) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in data { crc = table[Int((crc ^ UInt32(byte)) & 0xff)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}

extension NSLock {
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}

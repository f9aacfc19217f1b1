import EngramCore
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
    /// Bumped by `purge`, which rewrites the log: a drain that began before stops there.
    private var generation = 0

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
        let frame = try Self.frame(record)
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
        let (records, startGeneration) = try lock.withLock { (try readPending().records, generation) }
        var drained = 0
        for (record, endOffset) in records {
            try await send(record)
            let current = try lock.withLock { () -> Bool in
                guard generation == startGeneration else { return false }  // purged meanwhile: offsets moved
                try writeOffset(endOffset)
                pendingCount = max(0, pendingCount - 1)
                return true
            }
            guard current else { return drained }
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

    /// Removes every record `erased` matches, pending or already drained, and returns how many:
    /// the log is rewritten with only the pending records left (the drained prefix goes too), so
    /// no copy of an erased caller's event stays in the file. The new log is fsync'd before it
    /// replaces the old; the offset is reset first, so a crash in between only re-sends drained
    /// records (which their dedupe marks absorb).
    @discardableResult
    public func purge(where erased: (SpoolRecord) -> Bool) throws -> Int {
        try lock.withLock {
            let all = try readRecords(from: 0).records
            let removed = all.filter { erased($0.0) }.count
            guard removed > 0 else { return 0 }
            let drainedThrough = readOffset()
            let kept = all.filter { $0.1 > drainedThrough && !erased($0.0) }.map(\.0)
            var data = Data()
            for record in kept { data.append(try Self.frame(record)) }
            let temporary = logURL.deletingLastPathComponent().appendingPathComponent("spool.log.purge")
            try Self.writeDurably(data, to: temporary)
            try writeOffset(0)
            guard rename(temporary.path, logURL.path) == 0 else { throw SpoolError.io("cannot replace the spool") }
            let directory = open(logURL.deletingLastPathComponent().path, O_RDONLY)
            if directory >= 0 {
                _ = fsync(directory)
                close(directory)
            }
            pendingCount = kept.count
            generation += 1
            return removed
        }
    }

    /// Every record in the log, drained or not (to inspect what the file holds).
    public func allRecords() throws -> [SpoolRecord] {
        try lock.withLock { try readRecords(from: 0).records.map(\.0) }
    }

    static func frame(_ record: SpoolRecord) throws -> Data {
        let payload = try JSONEncoder().encode(record)
        var frame = Data()
        frame.append(contentsOf: withUnsafeBytes(of: UInt32(payload.count).bigEndian, Array.init))
        frame.append(contentsOf: withUnsafeBytes(of: CRC32.checksum(payload).bigEndian, Array.init))
        frame.append(payload)
        return frame
    }

    static func writeDurably(_ data: Data, to url: URL) throws {
        let fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw SpoolError.io("cannot open the spool") }
        defer { close(fd) }
        let written = data.isEmpty ? 0 : data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == data.count, fsync(fd) == 0 else { throw SpoolError.io("cannot write the spool") }
    }

    /// Records after the saved offset, each with the offset just past it. Caller holds the lock.
    private func readPending() throws -> (records: [(SpoolRecord, UInt64)], corruptTail: Bool) {
        try readRecords(from: readOffset())
    }

    private func readRecords(from start: UInt64) throws -> (records: [(SpoolRecord, UInt64)], corruptTail: Bool) {
        let data = (try? Data(contentsOf: logURL)) ?? Data()
        // The offset comes from a file on disk (outside input): a value past Int is treated as 0.
        var offset = Int(exactly: start) ?? 0
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
        switch self {
        case .io(let why): return "spool: \(why)"
        }
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

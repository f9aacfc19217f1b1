import CHiredis
import EngramCore
import Foundation

/// A Redis reply, copied out of hiredis' memory.
public enum RedisReply: Sendable, Equatable {
    case string(Data)
    case integer(Int64)
    case array([RedisReply])
    case null
    case status(String)
    case error(String)

    public var int: Int64? {
        if case .integer(let value) = self { return value }
        if case .string(let data) = self { return Int64(String(decoding: data, as: UTF8.self)) }
        return nil
    }

    public var data: Data? {
        if case .string(let data) = self { return data }
        return nil
    }

    public var array: [RedisReply]? {
        if case .array(let items) = self { return items }
        return nil
    }
}

/// Redis failures: the connection (down, timed out) or the server's own error reply.
public enum RedisError: Error, CustomStringConvertible, Sendable {
    case connection(String)
    case server(String)

    public var description: String {
        switch self {
        case .connection(let why): return "redis connection: \(why)"
        case .server(let why): return "redis: \(why)"
        }
    }
}

/// One hiredis context. Blocking: used only from its lane's own thread, never the event loop.
final class RedisConnection {
    private var context: UnsafeMutablePointer<redisContext>?
    let endpoint: RedisEndpoint
    let timeout: Duration

    init(endpoint: RedisEndpoint, timeout: Duration) {
        self.endpoint = endpoint
        self.timeout = timeout
    }

    deinit { if let context { redisFree(context) } }

    private static func timeval(_ duration: Duration) -> timeval {
        let (seconds, atto) = duration.components
        return Glibc.timeval(tv_sec: Int(seconds), tv_usec: Int(atto / 1_000_000_000_000))
    }

    /// Where a connection failure happened: the address (no password) and the variable to check.
    private var place: String { "\(endpoint.redacted) (ENGRAM_REDIS_URL)" }

    private func connect() throws {
        guard let ctx = redisConnectWithTimeout(endpoint.host, Int32(endpoint.port), Self.timeval(timeout)) else {
            throw RedisError.connection("\(place): cannot allocate a context")
        }
        if ctx.pointee.err != 0 {
            let message = Self.errorString(ctx)
            redisFree(ctx)
            throw RedisError.connection("\(place): \(message)")
        }
        redisSetTimeout(ctx, Self.timeval(timeout))
        context = ctx
        do {
            if let password = endpoint.password {
                // Redis 6 ACL: `AUTH user password`; without a user, the default user's password.
                let command: [RedisArgument] =
                    endpoint.username.map { ["AUTH", RedisArgument($0), RedisArgument(password)] } ?? ["AUTH", RedisArgument(password)]
                if case .error(let message) = try execute(command) {
                    // The server's reason (WRONGPASS ...) names neither the user's password nor anything else secret.
                    throw RedisError.connection("\(place): authentication refused (\(message.prefix(80)))")
                }
            }
            if endpoint.database != 0 {
                if case .error(let message) = try execute(["SELECT", RedisArgument(String(endpoint.database))]) { throw RedisError.server(message) }
            }
        } catch {
            // Never keep a context that is not authenticated and on its database.
            if let context { redisFree(context) }
            context = nil
            throw error
        }
    }

    private static func errorString(_ ctx: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: ctx.pointee.errstr) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }

    /// Runs one command; `blockingFor` extends the socket timeout for BLMOVE and the like.
    func execute(_ arguments: [RedisArgument], blockingFor: Duration? = nil) throws -> RedisReply {
        if context == nil { try connect() }
        guard let ctx = context else { throw RedisError.connection("\(place): not connected") }
        if let blockingFor { redisSetTimeout(ctx, Self.timeval(blockingFor + timeout)) }
        defer { if blockingFor != nil, let ctx = context { redisSetTimeout(ctx, Self.timeval(timeout)) } }

        let raw: UnsafeMutableRawPointer? = Self.withArgv(arguments) { argc, argv, lengths in
            redisCommandArgv(ctx, argc, argv, lengths)
        }
        guard let raw else {
            let message = ctx.pointee.err != 0 ? Self.errorString(ctx) : "no reply"
            redisFree(ctx)
            context = nil
            throw RedisError.connection("\(place): \(message)")
        }
        defer { freeReplyObject(raw) }
        return Self.convert(raw.assumingMemoryBound(to: redisReply.self))
    }

    /// Runs `commands` pipelined: all written at once, then the replies read in order, so a
    /// batch of concurrent callers costs one round trip and one write instead of one each. A
    /// connection failure fails every command not answered yet and drops the context (a command
    /// written but not answered may have run, as with `execute`: the enqueue's dedupe marks make
    /// a retry of it a duplicate).
    func executePipelined(_ commands: [[RedisArgument]]) -> [Result<RedisReply, any Error>] {
        do {
            if context == nil { try connect() }
        } catch {
            return commands.map { _ in .failure(error) }
        }
        guard let ctx = context else { return commands.map { _ in .failure(RedisError.connection("\(place): not connected")) } }
        var results: [Result<RedisReply, any Error>] = []
        results.reserveCapacity(commands.count)
        func dropConnection() -> RedisError {
            let message = ctx.pointee.err != 0 ? Self.errorString(ctx) : "no reply"
            redisFree(ctx)
            context = nil
            return RedisError.connection("\(place): \(message)")
        }
        for command in commands {
            let status = Self.withArgv(command) { argc, argv, lengths in redisAppendCommandArgv(ctx, argc, argv, lengths) }
            guard status == REDIS_OK else {
                let error = dropConnection()
                return commands.map { _ in .failure(error) }
            }
        }
        for _ in commands {
            var raw: UnsafeMutableRawPointer?
            guard redisGetReply(ctx, &raw) == REDIS_OK, let reply = raw else {
                if let raw { freeReplyObject(raw) }
                let error = dropConnection()
                while results.count < commands.count { results.append(.failure(error)) }
                return results
            }
            results.append(.success(Self.convert(reply.assumingMemoryBound(to: redisReply.self))))
            freeReplyObject(reply)
        }
        return results
    }

    /// hiredis' argv: every argument copied once into one buffer (hiredis copies them again
    /// into its output buffer while the call runs, so nothing outlives it).
    private static func withArgv<R>(
        _ arguments: [RedisArgument], _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R
    ) -> R {
        var total = 0
        for argument in arguments { total += argument.bytes.count }
        let storage = UnsafeMutablePointer<UInt8>.allocate(capacity: max(total, 1))
        defer { storage.deallocate() }
        let pointers = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: max(arguments.count, 1))
        defer { pointers.deallocate() }
        let lengths = UnsafeMutablePointer<Int>.allocate(capacity: max(arguments.count, 1))
        defer { lengths.deallocate() }
        lengths.initialize(to: 0)  // a valid length for hiredis even with no arguments
        var offset = 0
        for (i, argument) in arguments.enumerated() {
            let count = argument.bytes.count
            argument.bytes.withUnsafeBufferPointer { source in
                if let from = source.baseAddress, count > 0 { (storage + offset).update(from: from, count: count) }
            }
            pointers[i] = UnsafeRawPointer(storage + offset).assumingMemoryBound(to: CChar.self)
            lengths[i] = count
            offset += count
        }
        return body(Int32(clamping: arguments.count), pointers, UnsafePointer(lengths))
    }

    private static func convert(_ reply: UnsafeMutablePointer<redisReply>) -> RedisReply {
        let r = reply.pointee
        switch r.type {
        case REDIS_REPLY_STRING:
            return .string(r.str.map { Data(bytes: $0, count: Int(r.len)) } ?? Data())
        case REDIS_REPLY_STATUS:
            return .status(r.str.map { String(decoding: Data(bytes: $0, count: Int(r.len)), as: UTF8.self) } ?? "")
        case REDIS_REPLY_ERROR:
            return .error(r.str.map { String(decoding: Data(bytes: $0, count: Int(r.len)), as: UTF8.self) } ?? "error")
        case REDIS_REPLY_INTEGER:
            return .integer(r.integer)
        case REDIS_REPLY_ARRAY:
            var items: [RedisReply] = []
            // `element` is an implicitly unwrapped C pointer: checked, never trusted.
            let element: UnsafeMutablePointer<UnsafeMutablePointer<redisReply>?>? = r.element
            guard let element, r.elements > 0 else { return .array([]) }
            for i in 0..<Int(clamping: r.elements) {
                if let item = element[i] { items.append(convert(item)) } else { items.append(.null) }
            }
            return .array(items)
        default:
            return .null
        }
    }
}

/// A command argument: text or raw bytes, sent binary-safe.
public struct RedisArgument: ExpressibleByStringLiteral, Sendable {
    public let bytes: [UInt8]
    public init(_ string: String) { bytes = Array(string.utf8) }
    public init(_ data: Data) { bytes = Array(data) }
    public init(bytes: [UInt8]) { self.bytes = bytes }
    public init(stringLiteral value: String) { self.init(value) }
}

/// A small pool of hiredis connections, each on its own serial queue, so blocking calls never
/// run on an event loop. Reconnects lazily after a failure; every call has a timeout.
public final class RedisClient: Sendable {
    private let lanes: [Lane]
    private let next = NIOLockedCounter()

    /// One connection and the commands waiting for it. Commands that arrive while the lane is
    /// busy are sent together, pipelined, when it is free again: under concurrency the round
    /// trips are shared instead of queued one behind the other.
    final class Lane: @unchecked Sendable {
        let queue: DispatchQueue
        let connection: RedisConnection
        private let lock = NSLock()
        private var pending: [Job] = []
        private var draining = false
        /// The most commands written in one pipelined batch.
        static let maxBatch = 128

        struct Job {
            let arguments: [RedisArgument]
            let blockingFor: Duration?
            let continuation: CheckedContinuation<RedisReply, any Error>
        }

        init(index: Int, endpoint: RedisEndpoint, timeout: Duration) {
            queue = DispatchQueue(label: "engram.redis.\(index)")
            connection = RedisConnection(endpoint: endpoint, timeout: timeout)
        }

        func submit(_ job: Job) {
            lock.lock()
            pending.append(job)
            let start = !draining
            draining = true
            lock.unlock()
            if start { queue.async { self.drain() } }
        }

        /// On the lane's queue: runs what is pending, in arrival order, until nothing is.
        private func drain() {
            while true {
                lock.lock()
                let batch = pending
                pending.removeAll(keepingCapacity: true)
                if batch.isEmpty { draining = false }
                lock.unlock()
                if batch.isEmpty { return }
                var start = 0
                while start < batch.count {
                    // A blocking command (BLMOVE) runs alone, with its own timeout.
                    if batch[start].blockingFor != nil || start + 1 == batch.count {
                        let job = batch[start]
                        job.continuation.resume(with: Result { try connection.execute(job.arguments, blockingFor: job.blockingFor) })
                        start += 1
                        continue
                    }
                    var end = start
                    while end < batch.count, end - start < Self.maxBatch, batch[end].blockingFor == nil { end += 1 }
                    let jobs = batch[start..<end]
                    let results = connection.executePipelined(jobs.map(\.arguments))
                    for (job, result) in zip(jobs, results) { job.continuation.resume(with: result) }
                    start = end
                }
            }
        }
    }

    public init(endpoint: RedisEndpoint, timeout: Duration = .seconds(2), connections: Int = 4) {
        lanes = (0..<max(1, connections)).map { Lane(index: $0, endpoint: endpoint, timeout: timeout) }
    }

    /// Runs a command; Redis error replies are thrown as `RedisError.server`.
    @discardableResult
    public func command(_ arguments: [RedisArgument], blockingFor: Duration? = nil) async throws -> RedisReply {
        let lane = lanes[Int(UInt(bitPattern: next.increment()) % UInt(lanes.count))]
        let reply: RedisReply = try await withCheckedThrowingContinuation { continuation in
            lane.submit(Lane.Job(arguments: arguments, blockingFor: blockingFor, continuation: continuation))
        }
        if case .error(let message) = reply { throw RedisError.server(message) }
        return reply
    }

    public func command(_ arguments: RedisArgument...) async throws -> RedisReply {
        try await command(arguments)
    }

    public func ping() async throws {
        guard case .status("PONG") = try await command("PING") else { throw RedisError.connection("unexpected PING reply") }
    }
}

/// A thread-safe counter for lane round-robin.
final class NIOLockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func increment() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value &+= 1
        return value
    }
}

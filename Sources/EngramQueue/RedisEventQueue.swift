import EngramCore
import Foundation

/// `EventQueue` on Redis lists. Multi-step moves are single Lua scripts, so they are atomic.
public struct RedisEventQueue: EventQueue {
    public let client: RedisClient
    /// A separate connection for BLMOVE, so a blocked take never holds up other commands.
    public let blockingClient: RedisClient
    public let keys: QueueKeys

    public init(client: RedisClient, blockingClient: RedisClient? = nil, keys: QueueKeys = QueueKeys()) {
        self.client = client
        self.blockingClient = blockingClient ?? client
        self.keys = keys
    }

    public init(endpoint: RedisEndpoint, timeout: Duration, keys: QueueKeys = QueueKeys(), connections: Int = 4) {
        self.init(
            client: RedisClient(endpoint: endpoint, timeout: timeout, connections: connections),
            blockingClient: RedisClient(endpoint: endpoint, timeout: timeout, connections: 1), keys: keys)
    }

    /// KEYS: events, erased tags, dedupe marks; ARGV: envelope, TTL, received at, user tags. An
    /// event of a caller erased after it was received (a spool drained late) is dropped, as if
    /// it were a duplicate.
    static let enqueueScript = """
        for i = 4, #ARGV do
            local erased = redis.call('ZSCORE', KEYS[2], ARGV[i])
            if erased and tonumber(erased) >= tonumber(ARGV[3]) then return 0 end
        end
        for i = 3, #KEYS do
            if redis.call('EXISTS', KEYS[i]) == 1 then return 0 end
        end
        for i = 3, #KEYS do redis.call('SET', KEYS[i], '1', 'EX', ARGV[2]) end
        redis.call('LPUSH', KEYS[1], ARGV[1])
        return 1
        """

    static let enqueue = RedisScript(enqueueScript)

    public func enqueue(_ envelope: Envelope, dedupe: [String], ttlSeconds: Int) async throws -> Bool {
        var keyArguments: [RedisArgument] = [RedisArgument(keys.events), RedisArgument(keys.erased)]
        keyArguments += dedupe.map { RedisArgument(keys.seen($0)) }
        var arguments: [RedisArgument] = [
            RedisArgument(bytes: try envelope.wireBytes()), RedisArgument(String(ttlSeconds)),
            RedisArgument(String(format: "%.6f", envelope.receivedAt)),
        ]
        arguments += (envelope.userTags ?? []).map { RedisArgument($0) }
        return try await Self.enqueue.run(on: client, keys: keyArguments, arguments: arguments).int == 1
    }

    public func take(worker: String, timeout: Duration) async throws -> TakenEvent? {
        let seconds = String(format: "%.3f", max(0.01, timeout.seconds))
        let reply = try await blockingClient.command(
            ["BLMOVE", RedisArgument(keys.events), RedisArgument(keys.processing(worker)), "RIGHT", "LEFT", RedisArgument(seconds)],
            blockingFor: timeout)
        guard let raw = reply.data else { return nil }
        do {
            return TakenEvent(raw: raw, envelope: try Envelope.decode(raw), decodeError: nil)
        } catch {
            return TakenEvent(raw: raw, envelope: nil, decodeError: String(describing: type(of: error)))
        }
    }

    public func ack(worker: String, raw: Data) async throws {
        try await client.command(["LREM", RedisArgument(keys.processing(worker)), "1", RedisArgument(raw)])
    }

    /// Only an event still in flight is rescheduled: one an erasure purged meanwhile stays gone.
    static let retryScript = """
        if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
        redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
        return 1
        """

    public func scheduleRetry(worker: String, raw: Data, next: Envelope, dueAt: Date) async throws {
        try await client.command([
            "EVAL", RedisArgument(Self.retryScript), "2", RedisArgument(keys.processing(worker)), RedisArgument(keys.retry),
            RedisArgument(raw), RedisArgument(try next.encoded()), RedisArgument(String(format: "%.3f", dueAt.timeIntervalSince1970)),
        ])
    }

    static let deadScript = """
        if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
        redis.call('LPUSH', KEYS[2], ARGV[2])
        return 1
        """

    public func deadLetter(worker: String, raw: Data, letter: DeadLetter) async throws {
        try await client.command([
            "EVAL", RedisArgument(Self.deadScript), "2", RedisArgument(keys.processing(worker)), RedisArgument(keys.dead),
            RedisArgument(raw), RedisArgument(try JSONEncoder().encode(letter)),
        ])
    }

    public func heartbeat(worker: String, ttl: Duration) async throws {
        let millis = max(100, SafeNumber.clampedInt64(ttl.seconds * 1000))
        try await client.command([
            "SET", RedisArgument(keys.heartbeat(worker)), RedisArgument(String(Date().timeIntervalSince1970)), "PX", RedisArgument(String(millis)),
        ])
    }

    public func clearHeartbeat(worker: String) async throws {
        try await client.command(["DEL", RedisArgument(keys.heartbeat(worker))])
    }

    /// Moves one in-flight item back to the pending list (`ARGV[4]` = 'events', to its front,
    /// as it was taken first) or to the dead letters ('dead'); with `ARGV[3]` = '1' only while
    /// the worker's heartbeat is absent (-1 otherwise). 0 when another reaper moved it first.
    static let returnScript = """
        if ARGV[3] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
        if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
        if ARGV[4] == 'dead' then redis.call('LPUSH', KEYS[4], ARGV[2]) else redis.call('RPUSH', KEYS[3], ARGV[2]) end
        return 1
        """

    public func reap(maxAttempts: Int) async throws -> InFlightReturn {
        var result = InFlightReturn()
        for key in try await scan(keys.processingPattern) {
            let worker = String(key.dropFirst(keys.processing("").count))
            let returned = try await returnInFlight(worker: worker, onlyIfDead: true, maxAttempts: maxAttempts)
            result.requeued += returned.requeued
            result.deadLettered += returned.deadLettered
        }
        return result
    }

    public func requeueInFlight(worker: String, maxAttempts: Int) async throws -> InFlightReturn {
        try await returnInFlight(worker: worker, onlyIfDead: false, maxAttempts: maxAttempts)
    }

    /// Returns one worker's in-flight items, oldest first, each with its death count raised: the
    /// worker died holding it (or lost track of it). Its processing attempts (`attempt`, which
    /// LLM retries use) are left as they are, so a crash during an outage that used an event's
    /// retries does not dead-letter it; an event held by `maxAttempts` dying workers (a poison
    /// event) goes to the dead letters as `worker_died`. An item that is not an envelope goes
    /// back as it is (the next worker dead-letters it).
    private func returnInFlight(worker: String, onlyIfDead: Bool, maxAttempts: Int) async throws -> InFlightReturn {
        let list = keys.processing(worker)
        var result = InFlightReturn()
        let items = try await client.command("LRANGE", RedisArgument(list), "0", "-1").array ?? []
        for item in items.reversed() {
            guard let raw = item.data else { continue }
            var replacement = raw
            var toDead = false
            if var envelope = try? Envelope.decode(raw) {
                // `deaths` comes from Redis: compared without arithmetic that could overflow.
                let deaths = envelope.deaths ?? 0
                if deaths >= maxAttempts - 1 {
                    toDead = true
                    let letter = DeadLetter(
                        id: envelope.id, envelope: String(decoding: raw, as: UTF8.self), errorClass: workerDiedErrorClass,
                        errorMessage: "a worker stopped while holding the event, \(maxAttempts) times (ENGRAM_MAX_ATTEMPTS)",
                        failedAt: Date().timeIntervalSince1970, worker: worker)
                    replacement = try JSONEncoder().encode(letter)
                } else {
                    envelope.deaths = max(0, deaths) + 1
                    replacement = try envelope.encoded()
                }
            }
            let reply = try await client.command([
                "EVAL", RedisArgument(Self.returnScript), "4", RedisArgument(list), RedisArgument(keys.heartbeat(worker)),
                RedisArgument(keys.events), RedisArgument(keys.dead),
                RedisArgument(raw), RedisArgument(replacement), onlyIfDead ? "1" : "0", toDead ? "dead" : "events",
            ])
            switch reply.int {
            case -1: return result  // the worker is alive (again): its list is its own
            case 1: if toDead { result.deadLettered += 1 } else { result.requeued += 1 }
            default: continue
            }
        }
        return result
    }

    static let promoteScript = """
        local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
        for _, item in ipairs(items) do
            redis.call('ZREM', KEYS[1], item)
            redis.call('LPUSH', KEYS[2], item)
        end
        return #items
        """

    public func promoteDueRetries(now: Date, limit: Int = 100) async throws -> Int {
        let reply = try await client.command([
            "EVAL", RedisArgument(Self.promoteScript), "2", RedisArgument(keys.retry), RedisArgument(keys.events),
            RedisArgument(String(format: "%.3f", now.timeIntervalSince1970)), RedisArgument(String(limit)),
        ])
        return Self.count(reply.int)
    }

    public func stats() async throws -> QueueStats {
        let pending = try await client.command("LLEN", RedisArgument(keys.events)).int ?? 0
        var processing: Int64 = 0
        for key in try await scan(keys.processingPattern) {
            processing = processing.addingReportingOverflow(try await client.command("LLEN", RedisArgument(key)).int ?? 0).partialValue
        }
        let retry = try await client.command("ZCARD", RedisArgument(keys.retry)).int ?? 0
        let dead = try await client.command("LLEN", RedisArgument(keys.dead)).int ?? 0
        return QueueStats(pending: Self.count(pending), processing: Self.count(processing), retry: Self.count(retry), dead: Self.count(dead))
    }

    public func ping() async throws { try await client.ping() }

    /// Dead letters, newest first.
    public func deadLetters(limit: Int = 100) async throws -> [DeadLetter] {
        let reply = try await client.command("LRANGE", RedisArgument(keys.dead), "0", RedisArgument(String(max(1, limit) - 1)))
        return (reply.array ?? []).compactMap { $0.data.flatMap { try? JSONDecoder().decode(DeadLetter.self, from: $0) } }
    }

    /// The oldest `count` pending envelopes, next first (payloads stay encrypted).
    public func peek(_ count: Int) async throws -> [Envelope] {
        let reply = try await client.command("LRANGE", RedisArgument(keys.events), RedisArgument(String(-max(1, min(count, 1_000_000)))), "-1")
        return (reply.array ?? []).reversed().compactMap { $0.data.flatMap { try? Envelope.decode($0) } }
    }

    static let replayScript = """
        local n = redis.call('LREM', KEYS[1], 1, ARGV[1])
        if n > 0 then redis.call('LPUSH', KEYS[2], ARGV[2]) end
        return n
        """

    /// Moves dead letters back to the pending list with a fresh attempt count; `id` nil = all.
    /// A replay cannot resurrect an erased caller: the worker checks tombstones.
    public func replayDead(id: String?) async throws -> Int {
        let reply = try await client.command("LRANGE", RedisArgument(keys.dead), "0", "-1")
        var replayed = 0
        for item in reply.array ?? [] {
            guard let raw = item.data, let letter = try? JSONDecoder().decode(DeadLetter.self, from: raw), id == nil || letter.id == id,
                var envelope = try? Envelope.decode(Data(letter.envelope.utf8))
            else { continue }
            envelope.attempt = 0
            envelope.deaths = nil
            let moved = try await client.command([
                "EVAL", RedisArgument(Self.replayScript), "2", RedisArgument(keys.dead), RedisArgument(keys.events),
                RedisArgument(raw), RedisArgument(try envelope.encoded()),
            ])
            replayed += Self.count(moved.int)
        }
        return replayed
    }

    /// Workers whose heartbeat is alive.
    public func liveWorkers() async throws -> [String] {
        try await scan(keys.heartbeat("*")).map { String($0.dropFirst(keys.heartbeat("").count)) }
    }

    public func purgeDead() async throws -> Int {
        let count = try await client.command("LLEN", RedisArgument(keys.dead)).int ?? 0
        _ = try await client.command("DEL", RedisArgument(keys.dead))
        return Self.count(count)
    }

    /// A count from a Redis integer reply, never negative and never trapping.
    static func count(_ value: Int64?) -> Int { Int(clamping: max(0, value ?? 0)) }

    func scan(_ pattern: String) async throws -> [String] {
        var cursor = "0"
        var found: [String] = []
        repeat {
            let reply = try await client.command("SCAN", RedisArgument(cursor), "MATCH", RedisArgument(pattern), "COUNT", "200")
            guard let parts = reply.array, parts.count == 2, let next = parts[0].data else { break }
            cursor = String(decoding: next, as: UTF8.self)
            for item in parts[1].array ?? [] {
                if let data = item.data { found.append(String(decoding: data, as: UTF8.self)) }
            }
        } while cursor != "0"
        return found
    }
}

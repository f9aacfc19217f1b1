import EngramCore
import Foundation

/// Where a queued copy of an event sits: the lists and the retry schedule of docs/architecture.md.
public enum QueuedEventLocation: Sendable, Equatable {
    case pending
    case processing(String)
    case retry
    case dead
}

/// An envelope without a user tag (queued before tags existed), found by the erasure purge:
/// the purge decrypts it to learn whose it is.
public struct UntaggedQueuedEvent: Sendable {
    public let location: QueuedEventLocation
    /// The exact stored bytes (a dead letter's, for the dead list), to remove it.
    public let raw: Data
    public let envelope: Envelope
}

/// How many queued copies an erasure purge removed, by place.
public struct QueuePurgeCounts: Sendable, Equatable {
    public var pending = 0
    public var processing = 0
    public var retry = 0
    public var dead = 0
    public var total: Int { pending + processing + retry + dead }
    public init() {}
}

/// What `rewritePersistence` could start.
public struct PersistenceRewrite: Sendable, Equatable {
    /// An AOF rewrite was started (or scheduled), or AOF is off.
    public var appendOnlyFileDone: Bool
    /// An RDB snapshot was started, or snapshots are off.
    public var snapshotDone: Bool
    /// Redis refused a command outright (renamed or disabled, as managed services do): asking
    /// again will not help, and old copies stay in its files until it rewrites them itself.
    public var refused: [String] = []
    public var complete: Bool { appendOnlyFileDone && snapshotDone }
}

/// The queue's part of an erasure: tags of erased callers, purges of their queued events,
/// dead-letter expiry, and rewriting Redis' files so old copies leave the disk.
extension RedisEventQueue {
    /// Records erased callers' tags with their erasure time (kept `keepSeconds`), so the enqueue
    /// script drops their events received before it and `purgeErased` finds the queued ones.
    public func markErased(_ tags: [(tag: String, erasedAt: Date)], keepSeconds: Double, now: Date = Date()) async throws {
        for chunk in stride(from: 0, to: tags.count, by: 500).map({ Array(tags[$0..<min($0 + 500, tags.count)]) }) {
            var arguments: [RedisArgument] = ["ZADD", RedisArgument(keys.erased), "GT"]
            for (tag, erasedAt) in chunk {
                arguments += [RedisArgument(String(format: "%.6f", erasedAt.timeIntervalSince1970)), RedisArgument(tag)]
            }
            if !chunk.isEmpty { try await client.command(arguments) }
        }
        _ = try await client.command(
            "ZREMRANGEBYSCORE", RedisArgument(keys.erased), "-inf", RedisArgument(String(format: "(%.6f", now.timeIntervalSince1970 - keepSeconds)))
    }

    /// Lua that reads an envelope's `user_tags` and `received_at` without decoding the JSON
    /// (a backlog of large envelopes would block Redis): `tags(item, nested)` returns the tags
    /// (nil when the field is absent: an envelope from before tags) and the receive time.
    /// `nested`: the envelope is a JSON string inside a dead letter, its quotes escaped. The
    /// patterns cannot match inside a body (base64) or an escaped string of the other level.
    static let envelopeFieldsLua = """
        local function tags(item, nested)
            local q = nested and '\\\\"' or '"'
            local rs, re = string.find(item, q .. 'received_at' .. q .. ':', 1, true)
            if not rs then return nil, nil end
            local received = tonumber(string.match(item, '^[%d%.eE%+%-]+', re + 1)) or 0
            local s, e = string.find(item, q .. 'user_tags' .. q .. ':[', 1, true)
            if not s then return nil, received end
            local close = string.find(item, ']', e + 1, true)
            if not close then return nil, received end
            local found = {}
            for tag in string.gmatch(string.sub(item, e + 1, close - 1), '%x+') do found[#found + 1] = tag end
            return found, received
        end
        """

    /// KEYS: erased tags, pending, retry, dead, then every processing list. Removes each copy
    /// whose tag was erased at or after the event was received; returns the counts per place.
    static let purgeScript =
        envelopeFieldsLua + "\n" + """
            local function erased(item, nested)
                local found, received = tags(item, nested)
                if not found then return false end
                for _, tag in ipairs(found) do
                    local score = redis.call('ZSCORE', KEYS[1], tag)
                    if score and tonumber(score) >= received then return true end
                end
                return false
            end
            local function purgeList(key, nested)
                local n = 0
                for _, item in ipairs(redis.call('LRANGE', key, 0, -1)) do
                    if erased(item, nested) then n = n + redis.call('LREM', key, 1, item) end
                end
                return n
            end
            if redis.call('ZCARD', KEYS[1]) == 0 then return {0, 0, 0, 0} end
            local pending = purgeList(KEYS[2], false)
            local retry = 0
            for _, item in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
                if erased(item, false) then retry = retry + redis.call('ZREM', KEYS[3], item) end
            end
            local dead = purgeList(KEYS[4], true)
            local processing = 0
            for i = 5, #KEYS do processing = processing + purgeList(KEYS[i], false) end
            return {pending, processing, retry, dead}
            """

    /// KEYS: pending, retry, dead, then every processing list; ARGV: a receive time. Returns
    /// `key, item` pairs of the envelopes without `user_tags` received by then.
    static let untaggedScript =
        envelopeFieldsLua + "\n" + """
            local out = {}
            local cutoff = tonumber(ARGV[1])
            local function consider(key, item, nested)
                local found, received = tags(item, nested)
                if received and not found and received <= cutoff then
                    out[#out + 1] = key
                    out[#out + 1] = item
                end
            end
            for i = 1, #KEYS do
                if i == 2 then
                    for _, item in ipairs(redis.call('ZRANGE', KEYS[i], 0, -1)) do consider(KEYS[i], item, false) end
                else
                    for _, item in ipairs(redis.call('LRANGE', KEYS[i], 0, -1)) do consider(KEYS[i], item, i == 3) end
                end
            end
            return out
            """

    /// Removes every queued copy (pending, in flight, retry, dead) of the events of callers in
    /// the erased set, atomically per call.
    public func purgeErased() async throws -> QueuePurgeCounts {
        var arguments: [RedisArgument] = ["EVAL", RedisArgument(Self.purgeScript)]
        let processing = try await scan(keys.processingPattern)
        arguments.append(RedisArgument(String(4 + processing.count)))
        arguments += [keys.erased, keys.events, keys.retry, keys.dead].map { RedisArgument($0) }
        arguments += processing.map { RedisArgument($0) }
        let reply = try await client.command(arguments)
        let numbers = (reply.array ?? []).map { Int($0.int ?? 0) }
        var counts = QueuePurgeCounts()
        guard numbers.count == 4 else { return counts }
        counts.pending = numbers[0]
        counts.processing = numbers[1]
        counts.retry = numbers[2]
        counts.dead = numbers[3]
        return counts
    }

    /// Queued envelopes without a user tag that were received at or before `receivedBy` (only
    /// those can belong to a caller erased since): the purge decrypts them to find their owner.
    /// Selected inside Redis, so only those cross the network.
    public func untaggedEvents(receivedBy: Date) async throws -> [UntaggedQueuedEvent] {
        let processing = try await scan(keys.processingPattern)
        var arguments: [RedisArgument] = ["EVAL", RedisArgument(Self.untaggedScript), RedisArgument(String(3 + processing.count))]
        arguments += ([keys.events, keys.retry, keys.dead] + processing).map { RedisArgument($0) }
        arguments.append(RedisArgument(String(format: "%.6f", receivedBy.timeIntervalSince1970)))
        let items = try await client.command(arguments).array ?? []
        var found: [UntaggedQueuedEvent] = []
        for index in stride(from: 0, to: items.count - 1, by: 2) {
            guard let keyData = items[index].data, let raw = items[index + 1].data else { continue }
            let key = String(decoding: keyData, as: UTF8.self)
            let location: QueuedEventLocation
            switch key {
            case keys.events: location = .pending
            case keys.retry: location = .retry
            case keys.dead: location = .dead
            default: location = .processing(String(key.dropFirst(keys.processing("").count)))
            }
            let envelopeBytes: Data
            if location == .dead {
                guard let letter = try? JSONDecoder().decode(DeadLetter.self, from: raw) else { continue }
                envelopeBytes = Data(letter.envelope.utf8)
            } else {
                envelopeBytes = raw
            }
            guard let envelope = try? Envelope.decode(envelopeBytes), envelope.userTags == nil else { continue }
            found.append(UntaggedQueuedEvent(location: location, raw: raw, envelope: envelope))
        }
        return found
    }

    /// Removes one exact copy from where it was found (nothing if it has moved since).
    @discardableResult
    public func remove(_ event: UntaggedQueuedEvent) async throws -> Bool {
        let reply: RedisReply
        switch event.location {
        case .pending: reply = try await client.command("LREM", RedisArgument(keys.events), "0", RedisArgument(event.raw))
        case .processing(let worker): reply = try await client.command("LREM", RedisArgument(keys.processing(worker)), "0", RedisArgument(event.raw))
        case .retry: reply = try await client.command("ZREM", RedisArgument(keys.retry), RedisArgument(event.raw))
        case .dead: reply = try await client.command("LREM", RedisArgument(keys.dead), "0", RedisArgument(event.raw))
        }
        return (reply.int ?? 0) > 0
    }

    /// `failed_at` is read with a pattern, not a JSON decode (letters carry whole envelopes): the
    /// letter's own field, as the envelope inside is an escaped string with no such key.
    static let expireDeadScript = """
        local n = 0
        local cutoff = tonumber(ARGV[1])
        for _, item in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
            local _, e = string.find(item, '"failed_at":', 1, true)
            local failed = e and tonumber(string.match(item, '^[%d%.eE%+%-]+', e + 1)) or nil
            if failed == nil or failed < cutoff then n = n + redis.call('LREM', KEYS[1], 1, item) end
        end
        return n
        """

    /// Deletes dead letters that failed before `cutoff` (and unreadable ones). Returns how many.
    public func expireDeadLetters(failedBefore cutoff: Date) async throws -> Int {
        let reply = try await client.command([
            "EVAL", RedisArgument(Self.expireDeadScript), "1", RedisArgument(keys.dead),
            RedisArgument(String(format: "%.3f", cutoff.timeIntervalSince1970)),
        ])
        return Int(reply.int ?? 0)
    }

    /// The erasure time up to which purges have completed (nil before the first).
    public func erasurePurgedThrough() async throws -> Date? {
        guard let data = try await client.command("GET", RedisArgument(keys.erasurePurgedThrough)).data,
            let seconds = Double(String(decoding: data, as: UTF8.self))
        else { return nil }
        return Date(timeIntervalSince1970: seconds)
    }

    public func setErasurePurgedThrough(_ date: Date) async throws {
        _ = try await client.command(
            "SET", RedisArgument(keys.erasurePurgedThrough), RedisArgument(String(format: "%.6f", date.timeIntervalSince1970)))
    }

    /// Starts a rewrite of the append-only file and a new RDB snapshot (each only if Redis keeps
    /// one), so copies of purged events leave Redis' files. A rewrite already running may have
    /// started before the purge: then it reports not done, and the caller tries again later.
    public func rewritePersistence() async throws -> PersistenceRewrite {
        let appendOnly = try? await configValue("appendonly")
        let save = try? await configValue("save")
        var result = PersistenceRewrite(appendOnlyFileDone: true, snapshotDone: true)
        if appendOnly != "no" {  // unknown (CONFIG disabled) counts as on
            result.appendOnlyFileDone = await backgroundCommand(["BGREWRITEAOF"], refused: &result.refused)
        }
        if let save, !save.isEmpty {
            // SCHEDULE: while an AOF rewrite runs, the snapshot starts right after it.
            result.snapshotDone = await backgroundCommand(["BGSAVE", "SCHEDULE"], refused: &result.refused)
        }
        return result
    }

    /// True while Redis is writing a new append-only file or snapshot in the background.
    public func persistenceRewriteInProgress() async throws -> Bool {
        guard let data = try await client.command("INFO", "persistence").data else { return false }
        let text = String(decoding: data, as: UTF8.self)
        return ["aof_rewrite_in_progress:1", "aof_rewrite_scheduled:1", "rdb_bgsave_in_progress:1"].contains { text.contains($0) }
    }

    /// True when Redis' last AOF rewrite or snapshot failed (disk full, fork refused): the purge
    /// then asks for both again, as the old files still hold what it removed.
    public func lastPersistenceRewriteFailed() async throws -> Bool {
        guard let data = try await client.command("INFO", "persistence").data else { return false }
        let text = String(decoding: data, as: UTF8.self)
        return ["aof_last_bgrewrite_status:err", "rdb_last_bgsave_status:err"].contains { text.contains($0) }
    }

    private func configValue(_ name: String) async throws -> String? {
        let reply = try await client.command("CONFIG", "GET", RedisArgument(name))
        guard let items = reply.array, items.count == 2, let data = items[1].data else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    /// True once started. "Already in progress" (that one may predate the purge), a loading or
    /// busy server, a lost connection: false, ask again later. A refusal (unknown, disabled or
    /// not permitted command) counts as done and is reported.
    private func backgroundCommand(_ arguments: [RedisArgument], refused: inout [String]) async -> Bool {
        do {
            try await client.command(arguments)
            return true
        } catch RedisError.server(let message) where ["unknown command", "noperm", "disabled"].contains(where: message.lowercased().contains) {
            refused.append(String(decoding: arguments[0].bytes, as: UTF8.self))
            return true
        } catch {
            return false
        }
    }
}

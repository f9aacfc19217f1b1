import EngramCore
import Foundation

/// GCRA rate limiting per key, shared through Redis so it holds across gateway instances; an
/// in-process limiter with the same rule takes over while Redis is down.
public struct RateLimiter: Sendable {
    public struct Decision: Sendable, Equatable {
        public var allowed: Bool
        /// Seconds until a request would be allowed.
        public var retryAfter: Double
    }

    let client: RedisClient
    let keys: QueueKeys
    public let perMinute: Int
    public let burst: Int
    let local = LocalGCRA()
    /// Keys this process saw refused, until they may pass again.
    let refusals = RecentRefusals()

    public init(client: RedisClient, keys: QueueKeys, perMinute: Int, burst: Int) {
        self.client = client
        self.keys = keys
        self.perMinute = perMinute
        self.burst = burst
    }

    var interval: Double { 60.0 / Double(perMinute) }

    static let script = """
        local now = tonumber(ARGV[1])
        local interval = tonumber(ARGV[2])
        local burst = tonumber(ARGV[3])
        local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
        if tat < now then tat = now end
        local allow_at = tat - burst * interval
        if now < allow_at then return {0, tostring(allow_at - now)} end
        local new_tat = tat + interval
        redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
        return {1, '0'}
        """

    public func check(_ bucket: String, now: Date = Date()) async -> Decision {
        let t = now.timeIntervalSince1970
        do {
            let reply = try await client.command([
                "EVAL", RedisArgument(Self.script), "1", RedisArgument(keys.rateLimit(bucket)),
                RedisArgument(String(format: "%.6f", t)), RedisArgument(String(format: "%.6f", interval)), RedisArgument(String(burst)),
            ])
            guard let parts = reply.array, parts.count == 2 else { return local.check(bucket, now: t, interval: interval, burst: burst) }
            let allowed = parts[0].int == 1
            let after = parts[1].data.flatMap { Double(String(decoding: $0, as: UTF8.self)) } ?? 0
            return noted(Decision(allowed: allowed, retryAfter: after), bucket: bucket, now: t)
        } catch {
            return noted(local.check(bucket, now: t, interval: interval, burst: burst), bucket: bucket, now: t)
        }
    }

    /// Whether this process saw `bucket` refused and its wait is not over yet: a caller that runs
    /// work beside the check (the proxy) then asks first.
    public func refusedLately(_ bucket: String, now: Date = Date()) -> Bool {
        refusals.contains(bucket, now: now.timeIntervalSince1970)
    }

    private func noted(_ decision: Decision, bucket: String, now: Double) -> Decision {
        if !decision.allowed { refusals.note(bucket, until: now + max(0, decision.retryAfter.isFinite ? decision.retryAfter : 0) + 1, now: now) }
        return decision
    }
}

/// Buckets refused lately, with the time their wait ends (bounded: past 100,000 the ended ones go).
final class RecentRefusals: @unchecked Sendable {
    private let lock = NSLock()
    private var until: [String: Double] = [:]

    func note(_ bucket: String, until end: Double, now: Double) {
        lock.withLock {
            until[bucket] = end
            if until.count > 100_000 { until = until.filter { $0.value > now } }
        }
    }

    func contains(_ bucket: String, now: Double) -> Bool {
        lock.withLock {
            guard let end = until[bucket] else { return false }
            if end <= now { until[bucket] = nil }
            return end > now
        }
    }
}

/// The same GCRA, in process memory.
final class LocalGCRA: @unchecked Sendable {
    private let lock = NSLock()
    private var tats: [String: Double] = [:]

    func check(_ bucket: String, now: Double, interval: Double, burst: Int) -> RateLimiter.Decision {
        lock.withLock {
            var tat = max(tats[bucket] ?? now, now)
            let allowAt = tat - Double(burst) * interval
            if now < allowAt { return RateLimiter.Decision(allowed: false, retryAfter: allowAt - now) }
            tat += interval
            tats[bucket] = tat
            if tats.count > 100_000 { tats = tats.filter { $0.value > now } }
            return RateLimiter.Decision(allowed: true, retryAfter: 0)
        }
    }
}

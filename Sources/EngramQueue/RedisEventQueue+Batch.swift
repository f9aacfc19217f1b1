import EngramCore
import Foundation

/// The worker's batches (issue 14): the events already waiting taken in one round trip, and a
/// batch acknowledged in one, each as one atomic script.
extension RedisEventQueue {
    /// ARGV[1]: how many at most. Each item moves as `take` moves it (oldest first, to the
    /// front of the worker's in-flight list); stops at the first empty pop.
    static let takeReadyScript = RedisScript(
        """
        local out = {}
        for i = 1, tonumber(ARGV[1]) do
            local item = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
            if not item then break end
            out[#out + 1] = item
        end
        return out
        """)

    /// ARGV: the in-flight items to remove, one each (as `ack`).
    static let ackAllScript = RedisScript(
        """
        for i = 1, #ARGV do redis.call('LREM', KEYS[1], 1, ARGV[i]) end
        return #ARGV
        """)

    /// KEYS: in-flight list, pending list; ARGV: items, oldest first. Each goes back to the end
    /// `take` pops from, so the oldest is taken next, as if never taken.
    static let giveBackScript = RedisScript(
        """
        for i = #ARGV, 1, -1 do
            if redis.call('LREM', KEYS[1], 1, ARGV[i]) > 0 then redis.call('RPUSH', KEYS[2], ARGV[i]) end
        end
        return #ARGV
        """)

    public func giveBack(worker: String, raws: [Data]) async throws -> Bool {
        guard !raws.isEmpty else { return true }
        _ = try await Self.giveBackScript.run(
            on: client, keys: [RedisArgument(keys.processing(worker)), RedisArgument(keys.events)], arguments: raws.map { RedisArgument($0) })
        return true
    }

    public func takeReady(worker: String, limit: Int) async throws -> [TakenEvent] {
        guard limit > 0 else { return [] }
        let reply = try await Self.takeReadyScript.run(
            on: client, keys: [RedisArgument(keys.events), RedisArgument(keys.processing(worker))], arguments: [RedisArgument(String(limit))])
        return (reply.array ?? []).compactMap { item in
            guard let raw = item.data else { return nil }
            do {
                return TakenEvent(raw: raw, envelope: try Envelope.decode(raw), decodeError: nil)
            } catch {
                return TakenEvent(raw: raw, envelope: nil, decodeError: String(describing: type(of: error)))
            }
        }
    }

    public func ack(worker: String, raws: [Data]) async throws {
        guard !raws.isEmpty else { return }
        if raws.count == 1 { return try await ack(worker: worker, raw: raws[0]) }
        _ = try await Self.ackAllScript.run(on: client, keys: [RedisArgument(keys.processing(worker))], arguments: raws.map { RedisArgument($0) })
    }
}

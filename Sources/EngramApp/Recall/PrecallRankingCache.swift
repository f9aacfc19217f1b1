import EngramCore
import Foundation

/// The pre-call order of a caller's memories, kept for a minute: a call's first custom-LLM turn
/// (and a second pre-call of the same caller) comes seconds after its pre-call, and ranking a
/// caller's heads costs what the rest of the pre-call costs (at 20,000 memories, one salience per
/// head and a partial sort). It holds ids, saliences and heads, never content, and is valid for
/// one version of the caller, like every other cache of the caller's memories: a write shows at once.
final class PrecallRankingCache: @unchecked Sendable {  // state behind `lock`
    /// How long an order is reused: salience decays over days, so a minute does not reorder anything that matters.
    static let lifetime: TimeInterval = 60
    /// Orders kept at most (all are dropped past it: they are rebuilt on the next pre-call).
    static let maxEntries = 4096

    private struct Entry {
        var version: String
        var rankedAt: Date
        var ranking: PrecallRanking
    }

    private let lock = NSLock()
    private var entries: [String: Entry] = [:]
    private var sweptAt = Date.distantPast

    static func key(tenant: String, user: UserKey, includeSensitive: Bool) -> String { "\(tenant)|\(user.rawValue)|\(includeSensitive)" }

    /// The order ranked at `rankedAt` for this version, if younger than `lifetime` at `now`.
    func ranking(key: String, version: String, now: Date) -> (ranking: PrecallRanking, rankedAt: Date)? {
        lock.withLock {
            guard let entry = entries[key], entry.version == version else { return nil }
            let age = now.timeIntervalSince(entry.rankedAt)
            guard age >= 0, age < Self.lifetime else { return nil }
            return (entry.ranking, entry.rankedAt)
        }
    }

    /// Keeps `ranking` (as far as it was ranked) for the next pre-call of the same caller. Orders
    /// past their lifetime are dropped at most a lifetime later (swept here, once per lifetime):
    /// without it a caller who does not call again kept its order, and the heads it holds, until
    /// `maxEntries` others had called.
    func keep(_ ranking: PrecallRanking, key: String, version: String, rankedAt: Date, now: Date? = nil) {
        let now = now ?? rankedAt
        lock.withLock {
            if abs(now.timeIntervalSince(sweptAt)) >= Self.lifetime {
                entries = entries.filter { _, entry in
                    let age = now.timeIntervalSince(entry.rankedAt)
                    return age >= 0 && age < Self.lifetime
                }
                sweptAt = now
            }
            if entries.count >= Self.maxEntries, entries[key] == nil { entries.removeAll(keepingCapacity: true) }
            entries[key] = Entry(version: version, rankedAt: rankedAt, ranking: ranking)
        }
    }

    /// Drops a caller's orders (erasure: an erased caller's entries go at once, docs/privacy.md).
    func forget(tenant: String, user: UserKey) {
        lock.withLock {
            for includeSensitive in [false, true] {
                entries.removeValue(forKey: Self.key(tenant: tenant, user: user, includeSensitive: includeSensitive))
            }
        }
    }

    /// Orders held (tests).
    var count: Int { lock.withLock { entries.count } }
}

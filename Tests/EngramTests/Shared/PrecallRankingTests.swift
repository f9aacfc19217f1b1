import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramStore

/// Issue 14: pre-call ranks a heavy caller's heads lazily; the order must be exactly the one
/// sorting every head gave (slots by importance, the last summary, the others by salience with
/// ties in the heads' order).
@Suite("Pre-call ranking", .timeLimit(.minutes(1)))
struct PrecallRankingTests {
    /// The order as pre-call computed it before (sorting every visible head).
    static func reference(_ heads: [MemoryHead], includeSensitive: Bool, now: Date) -> [MemoryHead] {
        let visible = heads.filter { includeSensitive || !$0.sensitive }
        let slots = visible.filter { $0.slot != nil }.sorted {
            $0.importance > $1.importance || ($0.importance == $1.importance && $0.validFrom > $1.validFrom)
        }
        let lastSummary = visible.filter(\.isSummary).max { $0.validFrom < $1.validFrom }
        let others = visible.filter { $0.slot == nil && $0.id != lastSummary?.id }
            .map { ($0, Salience.at(now, salience0: $0.salience0, reinforcedAt: $0.reinforcedAt, sector: $0.sector)) }
            .sorted { $0.1 > $1.1 }.map(\.0)
        return slots + (lastSummary.map { [$0] } ?? []) + others
    }

    static func heads(_ count: Int, seed: UInt64) -> [MemoryHead] {
        var rng = SplitMix64(seed: seed)
        let base = Date(timeIntervalSince1970: 1_760_000_000)
        return (0..<count).map { i in
            // Few distinct values, so that many saliences tie.
            let sector: Sector = [.episodic, .semantic, .procedural][Int(rng.next() % 3)]
            let slot: String? = rng.next() % 40 == 0 ? "slot\(i % 7)" : nil
            let reinforced = base.addingTimeInterval(Double(rng.next() % 5) * 86_400)
            let valid = base.addingTimeInterval(Double(rng.next() % 4) * 3_600)
            return MemoryHead(
                id: "m\(i)", sector: sector, slot: slot, importance: Double(rng.next() % 3) / 2, salience0: [0.3, 0.6, 0.9][Int(rng.next() % 3)],
                reinforcedAt: reinforced, validFrom: valid, sensitive: rng.next() % 10 == 0, isSummary: rng.next() % 25 == 0)
        }
    }

    @Test("every page, read in any walk, is the page of the full sort", .timeLimit(.minutes(1)), arguments: [0, 1, 5, 70, 600, 3_000])
    func samePages(count: Int) {
        let now = Date(timeIntervalSince1970: 1_760_000_000 + 30 * 86_400)
        for seed in UInt64(1)...3 {
            let heads = Self.heads(count, seed: seed &* 7919 &+ UInt64(count))
            for includeSensitive in [false, true] {
                let expected = Self.reference(heads, includeSensitive: includeSensitive, now: now).map(\.id)
                // Short walks (pre-call's pages of 16), then one that jumps deep, then to the end.
                var ranking = PrecallRanking(heads: heads, includeSensitive: includeSensitive, now: now)
                #expect(ranking.count == expected.count)
                var walked: [String] = []
                var position = 0
                for size in [16, 16, 16, 500, 16, 100_000] where position < ranking.count {
                    let page = ranking.page(position..<min(ranking.count, position + size))
                    walked += page.map(\.id)
                    position += page.count
                }
                #expect(walked == expected, "count \(count), seed \(seed), sensitive \(includeSensitive)")
                #expect(ranking.page(ranking.count..<ranking.count + 5).isEmpty)
            }
        }
    }
}

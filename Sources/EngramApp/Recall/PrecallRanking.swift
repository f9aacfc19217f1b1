import EngramCore
import EngramStore
import Foundation

/// The pre-call order of a caller's memory heads (MEMORY-MODEL.md, "Pre-call has no question"):
/// current slot facts by importance, then the last call's summary, then the others by
/// `salience(now)`, equal saliences in the heads' order: exactly what sorting every head gives,
/// but ranked lazily. A caller can hold 20,000 memories while pre-call reads a few dozen, so the
/// others are selected a page at a time, and sorted whole only when the walk goes deep.
struct PrecallRanking: Sendable {
    let slots: [MemoryHead]
    let lastSummary: MemoryHead?
    private let heads: [MemoryHead]
    /// Positions in `heads` of the other visible memories; `others[..<ranked]` is in final order.
    private var others: [Int]
    private var ranked = 0
    private var salience: [Double]

    init(heads: [MemoryHead], includeSensitive: Bool, now: Date) {
        self.heads = heads
        // Every head is visited on every pre-call: read in place, field by field (copying a head
        // retains its strings), the summary recognised by position.
        var slots: [MemoryHead] = []
        var summaryPosition: Int?
        heads.withUnsafeBufferPointer { heads in
            for position in heads.indices where includeSensitive || !heads[position].sensitive {
                if heads[position].slot != nil { slots.append(heads[position]) }
                // The first of the latest, as `max(by:)` picks it.
                if heads[position].isSummary, summaryPosition.map({ heads[$0].validFrom < heads[position].validFrom }) ?? true {
                    summaryPosition = position
                }
            }
        }
        self.slots = slots.sorted { $0.importance > $1.importance || ($0.importance == $1.importance && $0.validFrom > $1.validFrom) }
        self.lastSummary = summaryPosition.map { heads[$0] }
        var others: [Int] = []
        others.reserveCapacity(heads.count)
        var salience = [Double](repeating: 0, count: heads.count)
        heads.withUnsafeBufferPointer { heads in
            for position in heads.indices
            where (includeSensitive || !heads[position].sensitive) && heads[position].slot == nil && position != summaryPosition {
                others.append(position)
                salience[position] = Salience.at(
                    now, salience0: heads[position].salience0, reinforcedAt: heads[position].reinforcedAt, sector: heads[position].sector)
            }
        }
        self.others = others
        self.salience = salience
    }

    /// Slots, the summary and the others.
    var count: Int { slots.count + (lastSummary == nil ? 0 : 1) + others.count }

    /// The heads at `range` of the whole order.
    mutating func page(_ range: Range<Int>) -> [MemoryHead] {
        let leading = slots + (lastSummary.map { [$0] } ?? [])
        let end = min(range.upperBound, count)
        guard range.lowerBound < end else { return [] }
        rank(upTo: end - leading.count)
        return (range.lowerBound..<end).map { $0 < leading.count ? leading[$0] : heads[others[$0 - leading.count]] }
    }

    /// Higher salience first; equal saliences in the heads' order (a stable sort's answer).
    private func before(_ a: Int, _ b: Int) -> Bool {
        salience[a] > salience[b] || (salience[a] == salience[b] && a < b)
    }

    /// Puts the best of the unranked others in final order until `n` are ranked.
    private mutating func rank(upTo n: Int) {
        guard n > ranked else { return }
        let remaining = others.count - ranked
        let want = min(remaining, max(n - ranked, 64))
        if want * 8 >= remaining {
            others[ranked...].sort(by: before)
            ranked = others.count
            return
        }
        // The best `want` of the rest in a small sorted buffer: one pass, O(n log k).
        var best: [Int] = []
        best.reserveCapacity(want + 1)
        for position in others[ranked...] {
            if best.count == want, let last = best.last, !before(position, last) { continue }
            let at = best.firstIndex { before(position, $0) } ?? best.count
            best.insert(position, at: at)
            if best.count > want { best.removeLast() }
        }
        let chosen = Set(best)
        let rest = others[ranked...].filter { !chosen.contains($0) }
        others.replaceSubrange(ranked..., with: best + rest)
        ranked += best.count
    }
}

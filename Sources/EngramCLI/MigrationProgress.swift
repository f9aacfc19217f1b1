import EngramStore
import Foundation
import Synchronization

/// The lines `engram migrate` prints while it copies (`StoreCopy.Progress`): one when a table is
/// done, at most one every `interval` in between, and one when the vector index build starts.
/// Counts and table names only: nothing of what the rows hold.
final class MigrationProgress: Sendable {
    private let interval: Duration
    private let lastLine = Mutex<ContinuousClock.Instant?>(nil)

    init(interval: Duration = .seconds(1)) { self.interval = interval }

    func line(for step: StoreCopy.Progress, now: ContinuousClock.Instant = .now) -> String? {
        let due: Bool
        switch step.phase {
        case .indexing: due = true
        case .copying:
            let tableDone = step.tableRows >= step.tableTotal
            due = lastLine.withLock { last in
                guard tableDone || last.map({ now - $0 >= interval }) ?? true else { return false }
                last = now
                return true
            }
        }
        return due ? Self.describe(step) : nil
    }

    static func describe(_ step: StoreCopy.Progress) -> String {
        let overall = step.total > 0 ? " (\(Self.percent(step.copied, of: step.total)) of all rows)" : ""
        switch step.phase {
        case .indexing:
            return "copied \(step.copied) rows; building the vector indexes (HNSW), the last step"
        case .copying:
            return "\(step.table): \(step.tableRows) of \(step.tableTotal) rows\(overall)"
        }
    }

    /// Whole percent, rounded down, without trapping on any count.
    static func percent(_ part: Int, of whole: Int) -> String {
        guard whole > 0 else { return "0%" }
        let (scaled, overflow) = max(0, part).multipliedReportingOverflow(by: 100)
        return "\(overflow ? 100 : min(100, scaled / whole))%"
    }
}

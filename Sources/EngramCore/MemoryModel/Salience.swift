import Foundation

/// Salience and decay, computed at read time; nothing rewrites salience on a schedule.
public enum Salience {
    public static func days(from start: Date, to end: Date) -> Double {
        max(0, end.timeIntervalSince(start) / 86_400)
    }

    /// `floor + (salience0 - floor) * exp(-lambda[sector] * days(now - reinforced_at))`
    public static func at(_ now: Date, salience0: Double, reinforcedAt: Date, sector: Sector) -> Double {
        let floor = MemoryModelConstants.salienceFloor
        return floor + (salience0 - floor) * exp(-MemoryModelConstants.lambda(sector) * days(from: reinforcedAt, to: now))
    }

    public static func of(_ memory: Memory, at now: Date) -> Double {
        at(now, salience0: memory.salience0, reinforcedAt: memory.reinforcedAt, sector: memory.sector)
    }

    /// Reinforcement: `s + 0.18 * (1 - s)` with `s = salience(now)`; the caller sets `reinforced_at = now`.
    public static func reinforced(_ memory: Memory, at now: Date) -> Double {
        let s = of(memory, at: now)
        return s + MemoryModelConstants.reinforcementGain * (1 - s)
    }

    /// The sweep's rule: faded and neither recalled nor ingested for the idle period.
    public static func shouldArchive(_ memory: Memory, at now: Date) -> Bool {
        guard memory.status == .active else { return false }
        let lastTouch = max(memory.createdAt, memory.lastRecalledAt ?? memory.createdAt, memory.reinforcedAt)
        return of(memory, at: now) < MemoryModelConstants.archiveBelowSalience
            && days(from: lastTouch, to: now) >= MemoryModelConstants.archiveIdleDays
    }
}

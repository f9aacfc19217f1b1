import EngramApp
import EngramCore
import Foundation
import Logging

/// The periodic sweep (`MemoryVault.sweep`): archives memories that have faded and were neither
/// recalled nor ingested for the idle period. It never rewrites salience (that would compound decay).
enum Sweeper {
    static func job(vault: MemoryVault, clock: WallClock, interval: Duration, logger: Logger) -> PeriodicJob {
        PeriodicJob(name: "sweeper", interval: interval, logger: logger) {
            let archived = try await vault.sweep(now: clock.now())
            if archived > 0 { logger.info("archived faded memories", metadata: ["count": "\(archived)"]) }
        }
    }
}

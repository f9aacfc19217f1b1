#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging

/// Reads first: on a machine the worker shares with a gateway, the worker runs at a lower CPU
/// priority (`ENGRAM_WORKER_NICE`), so a pre-call or a search never waits behind an extraction.
/// Linux keeps a nice value per thread and a new thread inherits its creator's, so every thread
/// that exists now is lowered; those started later follow.
enum CPUPriority {
    /// Raises the nice value of every thread of this process to `nice` (0 leaves it alone).
    /// Unprivileged: only ever lowers priority. Returns the threads lowered.
    @discardableResult
    static func lower(to nice: Int, logger: Logger) -> Int {
        guard nice > 0 else { return 0 }
        #if os(Linux)
        let value = Int32(clamping: min(nice, 19))
        let threads = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []).compactMap { UInt32($0) }
        var lowered = 0
        for thread in threads.isEmpty ? [0] : threads
        where setpriority(__priority_which_t(PRIO_PROCESS.rawValue), thread, value) == 0 {
            lowered += 1
        }
        if lowered == 0 {
            logger.warning("could not lower the worker's CPU priority", metadata: ["nice": "\(value)", "errno": "\(errno)"])
        } else {
            logger.info("worker CPU priority lowered", metadata: ["nice": "\(value)", "threads": "\(lowered)"])
        }
        return lowered
        #else
        return 0
        #endif
    }
}

import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// Reads first: on a machine the worker shares with a gateway, the worker runs at a lower CPU
/// priority (`ENGRAM_WORKER_NICE`), so a pre-call or a search never waits behind an extraction.
/// Linux keeps a nice value per thread: a new thread inherits its creator's, but libdispatch
/// sets its own on the workers it starts, so the worker's threads are lowered at start and then
/// again every second.
enum CPUPriority {
    /// Sets the nice value of every thread of this process to `nice` (0 leaves them alone).
    /// Returns the threads set.
    @discardableResult
    static func lower(to nice: Int, logger: Logger? = nil) -> Int {
        guard nice > 0 else { return 0 }
        #if os(Linux)
            let value = Int32(clamping: min(nice, 19))
            let threads = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []).compactMap { UInt32($0) }
            var lowered = 0
            for thread in threads.isEmpty ? [0] : threads
            where getpriority(__priority_which_t(PRIO_PROCESS.rawValue), thread) == value
                || setpriority(__priority_which_t(PRIO_PROCESS.rawValue), thread, value) == 0
            {
                lowered += 1
            }
            if lowered == 0 {
                logger?.warning("could not lower the worker's CPU priority", metadata: ["nice": "\(value)"])
            } else {
                logger?.info("worker CPU priority lowered", metadata: ["nice": "\(value)", "threads": "\(lowered)"])
            }
            return lowered
        #else
            return 0
        #endif
    }

    /// Lowers the process now and keeps its new threads lowered, once a second, for its lifetime.
    static func keepLowered(to nice: Int, logger: Logger) {
        guard nice > 0 else { return }
        lower(to: nice, logger: logger)
        Task.detached(priority: .background) {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                lower(to: nice)
            }
        }
    }
}

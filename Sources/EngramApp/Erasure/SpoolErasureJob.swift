import EngramQueue
import Foundation
import Logging
import ServiceLifecycle

/// The gateway's part of erasure propagation: every interval, removes erased callers' records
/// from its spool (`ErasurePurge.purgeSpool`). An empty spool costs one file read.
public struct SpoolErasureJob: Service {
    let purge: ErasurePurge
    let spool: Spool
    let interval: Duration
    let logger: Logger

    public init(purge: ErasurePurge, spool: Spool, interval: Duration, logger: Logger) {
        self.purge = purge
        self.spool = spool
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                let removed = try await purge.purgeSpool(spool)
                if removed > 0 { logger.info("erased callers' events removed from the spool", metadata: ["count": "\(removed)"]) }
            } catch {
                logger.warning("spool erasure purge failed; retrying next interval", metadata: ["error_class": "\(type(of: error))"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}

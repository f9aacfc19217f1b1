import EngramApp
import EngramCore
import EngramQueue
import Logging

/// Erases a caller through the gateway (management API, forget-me tool): the app layer's one
/// erasure rule (database, vector cache, audit), then the caller's queued events and spooled
/// records at once; the worker's purge run does Redis' files and backups.
struct ErasurePropagation: Sendable {
    let purge: ErasurePurge
    let spool: Spool

    func eraseUser(tenant: String, user: UserKey, actor: String, action: String, logger: Logger) async throws {
        try await purge.eraseUser(tenant: tenant, user: user, actor: actor, action: action, spool: spool, logger: logger)
    }
}

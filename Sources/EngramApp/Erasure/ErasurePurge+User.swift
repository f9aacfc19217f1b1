import EngramCore
import EngramQueue
import EngramStore
import Foundation
import Logging

/// Erasing one caller on request (management API, forget-me tool): one rule for every door.
extension ErasurePurge {
    /// Erases the caller in the database and the vector cache, carries the erasure to the queue
    /// and the spool at once (best effort: the worker's purge repeats it), then audits it.
    public func eraseUser(tenant: String, user: UserKey, actor: String, action: String, spool: Spool, logger: Logger) async throws {
        try await vault.erase(tenant: tenant, user: user)
        await propagateErasure(tenant: tenant, user: user, spool: spool, logger: logger)
        try await vault.audit(tenant: tenant, actor: actor, action: action, user: user)
    }

    /// After an erasure: drops the caller's queued events and spooled records now. Best effort:
    /// the erasure itself is done, and the worker's next purge run repeats this.
    public func propagateErasure(tenant: String, user: UserKey, spool: Spool, logger: Logger) async {
        do {
            guard let erasedAt = try await vault.erasedAt(tenant: tenant, user: user) else { return }
            _ = try await propagate(Tombstone(tenant: tenant, user: user, erasedAt: erasedAt))
            _ = try await purgeSpool(spool)
        } catch {
            logger.warning("erasure not yet propagated to the queue; the worker's purge will", metadata: ["error_class": "\(type(of: error))"])
        }
    }
}

import Logging
import Shared

/// Carries an erasure made through the gateway (management API, forget-me tool) to the queue and
/// the spool at once; the worker's purge run does Redis' files and backups.
struct ErasurePropagation: Sendable {
    let vault: MemoryVault
    let purge: ErasurePurge
    let spool: Spool

    /// After an erasure: drops the caller's queued events and spooled records now. Best effort:
    /// the erasure itself is done, and the worker's next purge run repeats this.
    func propagate(tenant: String, user: UserKey, logger: Logger) async {
        do {
            guard let erasedAt = try await vault.store.tombstone(tenant: tenant, user: user) else { return }
            _ = try await purge.propagate(Tombstone(tenant: tenant, user: user, erasedAt: erasedAt))
            _ = try await purge.purgeSpool(spool)
        } catch {
            logger.warning("erasure not yet propagated to the queue; the worker's purge will", metadata: ["error_class": "\(type(of: error))"])
        }
    }
}

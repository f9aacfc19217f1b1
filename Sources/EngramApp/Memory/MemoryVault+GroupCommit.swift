import EngramStore

extension MemoryVault {
    /// Runs `body` as one group commit (`GroupCommit`): the store writes it makes commit one by
    /// one but may not be on disk until one flush at the end. Returns `body`'s result once all
    /// of them are durable; throws if that cannot be confirmed, and then nothing `body` stored
    /// may be acknowledged (redelivered, it is found in the processed-event ledger). Writes on a
    /// store that does not defer (PostgreSQL) are durable at their own commit, as outside a group.
    public func withGroupCommit<T: Sendable>(_ body: () async -> T) async throws -> T {
        let group = GroupCommit()
        let result = await GroupCommit.$current.withValue(group) { await body() }
        if let store = store as? any GroupCommitStore { try await store.syncGroup(group) }
        return result
    }
}

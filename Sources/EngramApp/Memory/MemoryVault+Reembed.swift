import Foundation

extension MemoryVault {
    /// Re-embeds every memory of a tenant's callers (history included) with the tenant's current
    /// embedder: after the switch to the keyed local embedder (`local-keyed-384-v2`), vectors
    /// stored under `local-hash-384-v1` no longer match queries and, unkeyed, reveal words. Each
    /// memory's old vectors are replaced (`MemoryStore.replaceMemory`). Returns how many memories.
    public func reembed(tenant: String) async throws -> Int {
        var count = 0
        for secret in try await store.wrappedSecrets() where secret.kind == .userDataKey && secret.tenant == tenant {
            guard let user = secret.user, !secret.wrapped.allSatisfy({ $0 == 0 }) else { continue }  // erased
            for memory in try await memories(tenant: tenant, user: user, includeHistory: true) {
                try await replace(memory)
                count += 1
            }
            await vectorCache.invalidate(tenant: tenant, user: user)
        }
        return count
    }
}

import EngramApp
import Synchronization

/// A tenant the gateway holds from its start (the default tenant, whose keys are the
/// environment's), re-read from the store at most `maxAge` after the last read: a setting changed
/// with `engram tenant ...` while the gateway runs (trust of client ids, consent mode, sensitive
/// pre-call, retention) is seen by every request that starts `maxAge` plus one store read after
/// the change, with no restart. One request re-reads while the others use the copy in hand; a read
/// that fails keeps that copy until the next try. Other tenants are read per request
/// (`Authenticator`, `MemoryVault.webhookTenant`).
final class FreshTenant: Sendable {
    let id: String
    let vault: MemoryVault
    let maxAge: Duration
    private struct State {
        var tenant: TenantContext
        var readAt: ContinuousClock.Instant
        var reading: Bool
    }
    private let state: Mutex<State>

    init(_ tenant: TenantContext, vault: MemoryVault, maxAge: Duration = .seconds(1)) {
        id = tenant.id
        self.vault = vault
        self.maxAge = maxAge
        state = Mutex(State(tenant: tenant, readAt: .now, reading: false))
    }

    /// The tenant as last read, re-read first when that read is `maxAge` old.
    func current() async -> TenantContext {
        let now = ContinuousClock.now
        let (held, due) = state.withLock { state in
            guard !state.reading, now - state.readAt >= maxAge else { return (state.tenant, false) }
            state.reading = true
            return (state.tenant, true)
        }
        guard due else { return held }
        let fresh = try? await vault.tenant(id)
        state.withLock { state in
            if let fresh = fresh ?? nil { state.tenant = fresh }
            state.readAt = .now
            state.reading = false
        }
        return (fresh ?? nil) ?? held
    }
}

import Synchronization

/// A value read from the store at the gateway's start and read again at most `maxAge` after the
/// last read: what the environment's keys and the post-call path without a tenant know of the
/// `default` tenant (its record, its stored webhook secrets). A setting changed with
/// `engram tenant ...` while the gateway runs is seen by every request that starts `maxAge` plus
/// one store read after the change, with no restart. One request reads again while the others
/// use the value in hand; a read that fails (store unavailable) keeps that value and is tried
/// again `maxAge` later, so these paths do not come to depend on the store for each request.
/// Other tenants are read per request (`Authenticator`, `MemoryVault.webhookTenant`).
final class RecentValue<Value: Sendable>: Sendable {
    let maxAge: Duration
    private let read: @Sendable () async throws -> Value?
    private struct State {
        var value: Value
        var readAt: ContinuousClock.Instant
        var reading: Bool
    }
    private let state: Mutex<State>

    /// `initial`: the value just read; `read`: reads it again (nil keeps the value in hand).
    init(_ initial: Value, maxAge: Duration = .seconds(1), read: @escaping @Sendable () async throws -> Value?) {
        self.maxAge = maxAge
        self.read = read
        state = Mutex(State(value: initial, readAt: .now, reading: false))
    }

    /// The value as last read, read again first when that read is `maxAge` old.
    func current() async -> Value {
        let now = ContinuousClock.now
        let (held, due) = state.withLock { state in
            guard !state.reading, now - state.readAt >= maxAge else { return (state.value, false) }
            state.reading = true
            return (state.value, true)
        }
        guard due else { return held }
        let fresh = (try? await read()) ?? nil
        state.withLock { state in
            if let fresh { state.value = fresh }
            state.readAt = .now
            state.reading = false
        }
        return fresh ?? held
    }
}

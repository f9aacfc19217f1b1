import Synchronization

/// A value read from the store at the gateway's start and read again, in the background, at
/// most `maxAge` after the last read: what the environment's keys and the post-call path without
/// a tenant know of the `default` tenant (its record, its stored webhook secrets). A setting
/// changed with `engram tenant ...` while the gateway runs is seen by the requests that start
/// `maxAge` plus one store read after the change, with no restart.
///
/// No request waits for the read: the first request past `maxAge` starts it and goes on with the
/// value in hand, as do the others. So these paths never come to depend on the store, not even
/// once a second: the post-call acknowledgement stays a signature check and a Redis push while
/// the store is slow or down. A read that fails or finds nothing keeps the value in hand and is
/// tried again `maxAge` after it ended. Other tenants are read per request (`Authenticator`,
/// `MemoryVault.webhookTenant`).
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

    /// The value as last read; when that read is `maxAge` old, a new one starts in the background.
    func current() -> Value {
        let now = ContinuousClock.now
        let (held, due) = state.withLock { state in
            guard !state.reading, now - state.readAt >= maxAge else { return (state.value, false) }
            state.reading = true
            return (state.value, true)
        }
        if due { Task { await self.readAgain() } }
        return held
    }

    private func readAgain() async {
        let fresh = (try? await read()) ?? nil
        state.withLock { state in
            if let fresh { state.value = fresh }
            state.readAt = .now
            state.reading = false
        }
    }
}

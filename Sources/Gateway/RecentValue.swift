import Synchronization

/// A value read from the store at the gateway's start and read again at most `maxAge` after the
/// last read: what the environment's keys and the post-call path without a tenant know of the
/// `default` tenant (its record, its stored webhook secrets). A setting changed with
/// `engram tenant ...` while the gateway runs is seen by every request that starts `maxAge` plus
/// one store read after the change, with no restart. One request starts the read again while the
/// others use the value in hand; it waits for that read at most `waitAtMost` (a store that hangs
/// or is down costs it that, not the store's deadline), and the read goes on without it: its value
/// is taken when it comes, whether or not the request that started it is still there (cancelled
/// with its client). A read that fails (store unavailable) keeps the value in hand and is tried
/// again `maxAge` after it ends, so these paths do not come to depend on the store.
/// Other tenants are read per request (`Authenticator`, `MemoryVault.webhookTenant`).
final class RecentValue<Value: Sendable>: Sendable {
    let maxAge: Duration
    /// How long the request that starts a read waits for it before it answers with the value in hand.
    let waitAtMost: Duration
    private let read: @Sendable () async throws -> Value?
    private struct State {
        var value: Value
        var readAt: ContinuousClock.Instant
        var reading: Bool
    }
    private let state: Mutex<State>

    /// `initial`: the value just read; `read`: reads it again (nil keeps the value in hand).
    init(
        _ initial: Value, maxAge: Duration = .seconds(1), waitAtMost: Duration = .milliseconds(100),
        read: @escaping @Sendable () async throws -> Value?
    ) {
        self.maxAge = maxAge
        self.waitAtMost = waitAtMost
        self.read = read
        state = Mutex(State(value: initial, readAt: .now, reading: false))
    }

    /// The value as last read; when that read is `maxAge` old, the value of a new read if it
    /// comes within `waitAtMost`.
    func current() async -> Value {
        let now = ContinuousClock.now
        let (held, due) = state.withLock { state in
            guard !state.reading, now - state.readAt >= maxAge else { return (state.value, false) }
            state.reading = true
            return (state.value, true)
        }
        guard due else { return held }
        let answer = FirstAnswer<Value>()
        // Unstructured on purpose: neither the wait's end nor the request's cancellation stops the
        // read (the store's own deadline bounds it), and its value is kept for the next requests.
        Task {
            let fresh = (try? await self.read()) ?? nil
            self.state.withLock { state in
                if let fresh { state.value = fresh }
                state.readAt = .now
                state.reading = false
            }
            answer.give(fresh)
        }
        let timer = Task {
            try? await Task.sleep(for: self.waitAtMost)
            answer.give(nil)
        }
        let fresh = await answer.value()
        timer.cancel()
        return fresh ?? held
    }
}

/// The first of several answers, to one waiter: a read or the end of the wait for it.
private final class FirstAnswer<Value: Sendable>: Sendable {
    private struct State {
        var given: Value??
        var waiter: CheckedContinuation<Value?, Never>?
    }
    private let state = Mutex(State(given: nil, waiter: nil))

    /// Gives `value` unless an answer was given already.
    func give(_ value: Value?) {
        let waiter: CheckedContinuation<Value?, Never>? = state.withLock { state in
            guard state.given == nil else { return nil }
            state.given = .some(value)
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: value)
    }

    /// The first answer given, waiting for it.
    func value() async -> Value? {
        await withCheckedContinuation { continuation in
            let given: Value?? = state.withLock { state in
                if let given = state.given { return .some(given) }
                state.waiter = continuation
                return nil
            }
            if let given { continuation.resume(returning: given) }
        }
    }
}

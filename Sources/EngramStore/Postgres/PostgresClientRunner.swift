import EngramCore
import PostgresNIO

/// Runs a `PostgresClient`'s `run()` (its connection pool) for as long as the store that owns it
/// is open. `close()` cancels `run()` and returns only once the pool has closed its connections,
/// so a closed store leaves nothing behind.
///
/// `init` returns once the task that calls `run()` has started: postgres-nio gives no signal that
/// `run()` has begun, but a lease made before that is queued, not lost, so no sleep is needed.
final class PostgresClientRunner: Sendable {
    private let task: Task<Void, Never>

    init(_ client: PostgresClient) async {
        let (started, signal) = AsyncStream.makeStream(of: Void.self)
        task = Task {
            signal.finish()
            await client.run()
        }
        for await _ in started {}
    }

    /// Cancels the pool and waits for it to close its connections, for `limit` at most: in the full
    /// test suite, with hundreds of connections opened at once, postgres-nio's `run()` did not
    /// always end after cancellation (three full runs in a row, one store of about 150 each), and a store's close must not
    /// hold a shutdown for ever. Past the limit the pool goes on closing in the background.
    /// True when it closed in time.
    @discardableResult
    func close(within limit: Duration = .seconds(10)) async -> Bool {
        task.cancel()
        let task = self.task
        do {
            try await withTimeout(limit) { await task.value }
            return true
        } catch {
            return false
        }
    }
}

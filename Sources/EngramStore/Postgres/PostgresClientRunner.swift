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

    func close() async {
        task.cancel()
        await task.value
    }
}

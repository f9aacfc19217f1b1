import Foundation

/// Runs blocking work (file locks, fsync, migrations) on a thread of its own and awaits its
/// result, so that it does not hold one of the Swift concurrency pool's threads. The pool is as
/// wide as the cores: two blocked threads stall every task of the process (in the test process,
/// a hundred SQLite stores opened at once held it for seconds and other tests' deadlines ran out).
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.name = "engram-blocking"
        thread.start()
    }
}

import Foundation

/// The work did not finish within its budget.
public struct TimeoutError: Error {
    public init() {}
}

/// Runs `body`, answering after at most `budget`. Unstructured on purpose: a stalled database
/// call cannot be interrupted, so the answer must not wait for it; it is cancelled and left.
public func withTimeout<T: Sendable>(_ budget: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let claimed = ClaimFlag()
    return try await withCheckedThrowingContinuation { continuation in
        let work = Task {
            do {
                let value = try await body()
                if claimed.claim() { continuation.resume(returning: value) }
            } catch {
                if claimed.claim() { continuation.resume(throwing: error) }
            }
        }
        Task {
            try? await Task.sleep(for: budget)
            if claimed.claim() {
                work.cancel()
                continuation.resume(throwing: TimeoutError())
            }
        }
    }
}

/// Set once, by whichever of the racers finishes first.
public final class ClaimFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var taken = false
    public init() {}
    public func claim() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if taken { return false }
        taken = true
        return true
    }
}

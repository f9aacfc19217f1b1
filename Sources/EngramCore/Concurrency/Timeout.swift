import Foundation

/// The work did not finish within its budget.
public struct TimeoutError: Error, CustomStringConvertible {
    public init() {}
    public var description: String { "timed out" }
}

/// Runs `body`, answering after at most `budget`. Unstructured on purpose: a stalled database
/// call cannot be interrupted, so the answer must not wait for it; it is cancelled and left.
///
/// Whichever ends first answers: the work (its value or error), the budget (`TimeoutError`, and
/// the work is cancelled), or the caller's own cancellation (`CancellationError`, and the work is
/// cancelled). The loser is cancelled at once, so a finished call leaves no timer sleeping.
public func withTimeout<T: Sendable>(_ budget: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let race = DeadlineRace<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            race.start(continuation, budget: budget, body)
        }
    } onCancel: {
        race.finish(.failure(CancellationError()))
    }
}

/// The shared state of one `withTimeout`: the caller's continuation (resumed once) and the two
/// racing tasks (cancelled once the answer is known).
final class DeadlineRace<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, any Error>?
    /// An answer that came before the continuation (a caller cancelled before it suspended).
    private var early: Result<T, any Error>?
    private var answered = false
    private var tasks: [Task<Void, Never>] = []

    private struct Claimed {
        var continuation: CheckedContinuation<T, any Error>?
        var tasks: [Task<Void, Never>]
    }

    func start(_ continuation: CheckedContinuation<T, any Error>, budget: Duration, _ body: @escaping @Sendable () async throws -> T) {
        let early: Result<T, any Error>? = lock.withLock { () -> Result<T, any Error>? in
            if answered { return self.early }
            self.continuation = continuation
            return nil
        }
        if let early {
            continuation.resume(with: early)
            return
        }
        let work = Task {
            do { self.finish(.success(try await body())) } catch { self.finish(.failure(error)) }
        }
        let timer = Task {
            do { try await Task.sleep(for: budget) } catch { return }
            self.finish(.failure(TimeoutError()))
        }
        let alreadyAnswered = lock.withLock { () -> Bool in
            if answered { return true }
            tasks = [work, timer]
            return false
        }
        if alreadyAnswered {
            work.cancel()
            timer.cancel()
        }
    }

    func finish(_ result: Result<T, any Error>) {
        let claimed: Claimed? = lock.withLock { () -> Claimed? in
            if answered { return nil }
            answered = true
            if continuation == nil { early = result }
            let claimed = Claimed(continuation: continuation, tasks: tasks)
            continuation = nil
            tasks = []
            return claimed
        }
        guard let claimed else { return }
        for task in claimed.tasks { task.cancel() }
        claimed.continuation?.resume(with: result)
    }
}

/// Work started at once in a task of its own and awaited later (`value()`), within a deadline
/// counted from its start: whichever of the work and the deadline ends first resumes the waiter
/// itself. Awaiting `Task.value` under `withTimeout` instead cost two hops between threads after
/// the work ended (the racing task woke, then the waiter), on the custom-LLM proxy's path. Past
/// the deadline the work goes on to its end; `cancel()` stops it.
public final class StartedWork<T: Sendable>: @unchecked Sendable {  // state under `lock`
    private let lock = NSLock()
    private var result: Result<T, any Error>?
    private var waiter: CheckedContinuation<T, any Error>?
    private var work: Task<Void, Never>?
    private var timer: Task<Void, Never>?

    private init() {}

    /// Starts `body` now; `value()` throws `TimeoutError` once `deadline` has passed without it.
    public static func start(deadline: Duration, _ body: @escaping @Sendable () async throws -> T) -> StartedWork {
        let started = StartedWork()
        let work = Task {
            do { started.settle(.success(try await body()), endsWork: true) } catch { started.settle(.failure(error), endsWork: true) }
        }
        let timer = Task {
            do { try await Task.sleep(for: deadline) } catch { return }
            started.settle(.failure(TimeoutError()), endsWork: false)
        }
        started.lock.withLock {
            started.work = work
            started.timer = timer
        }
        return started
    }

    /// The work's value, its error, `TimeoutError` past the deadline, or `CancellationError` after `cancel()`.
    public func value() async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let ready = lock.withLock { () -> Result<T, any Error>? in
                if let result { return result }
                waiter = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }

    /// Stops the work (and the deadline): a waiter gets `CancellationError`.
    public func cancel() {
        let work = lock.withLock { self.work }
        work?.cancel()
        settle(.failure(CancellationError()), endsWork: true)
    }

    /// The first answer wins. The work's end stops the timer; the deadline leaves the work running.
    private func settle(_ answer: Result<T, any Error>, endsWork: Bool) {
        let (waiter, timer) = lock.withLock { () -> (CheckedContinuation<T, any Error>?, Task<Void, Never>?) in
            guard result == nil else { return (nil, nil) }
            result = answer
            defer { self.waiter = nil }
            return (self.waiter, endsWork ? self.timer : nil)
        }
        timer?.cancel()
        waiter?.resume(with: answer)
    }
}

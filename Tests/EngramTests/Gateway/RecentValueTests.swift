import Synchronization
import Testing

@testable import Gateway

/// `RecentValue`, which holds the default tenant for the environment's keys and the post-call
/// path without a tenant: it reads again only when its value is old enough, and a failed or
/// empty read keeps the value in hand (a store outage does not refuse those requests).
@Suite("RecentValue: read again when old, keep the value in hand when a read fails", .timeLimit(.minutes(1)))
struct RecentValueTests {
    struct ReadFailed: Error {}

    @Test("a young value is not read again; an old one is; a failed or empty read keeps the value in hand")
    func readsAgainOnlyWhenOld() async {
        let reads = Mutex(0)
        let next = Mutex<Result<Int?, ReadFailed>>(.success(2))
        let young = RecentValue(1, maxAge: .seconds(3600)) {
            reads.withLock { $0 += 1 }
            return try next.withLock { $0 }.get()
        }
        #expect(await young.current() == 1)
        #expect(reads.withLock { $0 } == 0, "no read before maxAge")

        // Waits for every read (however slow the machine), so each answer is that read's.
        let old = RecentValue(1, maxAge: .zero, waitAtMost: .seconds(3600)) {
            reads.withLock { $0 += 1 }
            return try next.withLock { $0 }.get()
        }
        #expect(await old.current() == 2)
        next.withLock { $0 = .failure(ReadFailed()) }
        #expect(await old.current() == 2, "a failed read keeps the value")
        next.withLock { $0 = .success(nil) }
        #expect(await old.current() == 2, "an empty read keeps the value")
        next.withLock { $0 = .success(3) }
        #expect(await old.current() == 3)
        #expect(reads.withLock { $0 } == 4)
    }

    /// Review 22: the request that read again waited for the read, so with the store hanging or
    /// down, a post-call without a tenant (or a pre-call with the environment's key) waited the
    /// store's deadline (10 s by default) about once every 11 s, where it used to need no store.
    @Test("a read that hangs does not hold the request that started it; its value is taken when it comes")
    func hangingReadDoesNotHoldTheRequest() async throws {
        let (gate, open) = AsyncStream<Void>.makeStream()
        let reads = Mutex(0)
        let value = RecentValue(1, maxAge: .zero, waitAtMost: .milliseconds(10)) {
            guard
                reads.withLock({
                    $0 += 1
                    return $0
                }) == 1
            else { return nil }
            for await _ in gate { break }
            return 2
        }
        // Returns (with the value in hand) although the read cannot finish: the old code hung here.
        #expect(await value.current() == 1)
        #expect(await value.current() == 1, "one read at a time: the others use the value in hand")
        #expect(reads.withLock { $0 } <= 1, "the read may not have started yet, but only one")
        open.yield()
        open.finish()
        try await waitUntil(timeout: .seconds(30), "the hanging read's value is taken when it comes") { await value.current() == 2 }
    }

    /// Review 22: a request cancelled (its client gone) while it read again cancelled the read,
    /// which then kept the old value for another `maxAge`.
    @Test("a request cancelled while it reads again does not cancel the read")
    func cancelledRequestDoesNotCancelTheRead() async throws {
        let reads = Mutex(0)
        let value = RecentValue(1, maxAge: .zero, waitAtMost: .seconds(3600)) {
            guard
                reads.withLock({
                    $0 += 1
                    return $0
                }) == 1
            else { return nil }
            try Task.checkCancellation()
            return 2
        }
        let request = Task {
            // Cancelled before it asks: `current()` runs in a cancelled task.
            try? await Task.sleep(for: .seconds(3600))
            return await value.current()
        }
        request.cancel()
        #expect(await request.value == 2)
        #expect(await value.current() == 2)
    }
}

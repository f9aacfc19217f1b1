import Synchronization
import Testing

@testable import Gateway

/// `RecentValue`, which holds the default tenant for the environment's keys and the post-call
/// path without a tenant: it reads again only when its value is old enough, never while a
/// request waits, and a failed or empty read keeps the value in hand (a store outage does not
/// refuse or slow those requests).
@Suite("RecentValue: read again in the background when old, keep the value in hand when a read fails", .timeLimit(.minutes(1)))
struct RecentValueTests {
    struct ReadFailed: Error {}

    @Test("a young value is not read again; an old one is, in the background; a failed or empty read keeps the value in hand")
    func readsAgainOnlyWhenOld() async throws {
        let reads = Mutex(0)
        let next = Mutex<Result<Int?, ReadFailed>>(.success(2))
        let young = RecentValue(1, maxAge: .seconds(3600)) {
            reads.withLock { $0 += 1 }
            return try next.withLock { $0 }.get()
        }
        #expect(young.current() == 1)
        #expect(young.current() == 1)
        #expect(reads.withLock { $0 } == 0, "no read before maxAge")

        let old = RecentValue(1, maxAge: .zero) {
            reads.withLock { $0 += 1 }
            return try next.withLock { $0 }.get()
        }
        try await waitUntil("the old value is read again") { old.current() == 2 }
        next.withLock { $0 = .failure(ReadFailed()) }
        var before = reads.withLock { $0 }
        try await waitUntil("a failed read is made") {
            _ = old.current()
            return reads.withLock { $0 } > before + 1
        }
        #expect(old.current() == 2, "a failed read keeps the value")
        next.withLock { $0 = .success(nil) }
        before = reads.withLock { $0 }
        try await waitUntil("an empty read is made") {
            _ = old.current()
            return reads.withLock { $0 } > before + 1
        }
        #expect(old.current() == 2, "an empty read keeps the value")
        next.withLock { $0 = .success(3) }
        try await waitUntil("the new value is read") { old.current() == 3 }
    }

    @Test("a read that hangs (the store down) delays no caller, and no second read starts while it runs")
    func hangingReadDelaysNobody() async throws {
        let gate = Gate()
        let reads = Mutex(0)
        let value = RecentValue("held", maxAge: .zero) {
            reads.withLock { $0 += 1 }
            await gate.wait()
            return "fresh"
        }
        // Each call answers at once with the value in hand; only one read is in flight.
        for _ in 0..<100 { #expect(value.current() == "held") }
        try await waitUntil("the one read started") { reads.withLock { $0 } == 1 }
        for _ in 0..<100 { #expect(value.current() == "held") }
        #expect(reads.withLock { $0 } == 1)
        gate.open()
        try await waitUntil("the read's value is taken once it ends") { value.current() == "fresh" }
    }
}

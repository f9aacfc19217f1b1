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

        let old = RecentValue(1, maxAge: .zero) {
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
}

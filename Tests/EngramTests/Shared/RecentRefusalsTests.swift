import Foundation
import Testing

@testable import EngramQueue

/// The proxy asks the rate limiter beside retrieval, except for a key refused lately: that one
/// waits for the answer first, so a key over its limit starts no retrieval work (no paid query
/// embedding). `RecentRefusals` is that memory of refusals.
@Suite("Keys refused lately", .timeLimit(.minutes(1)))
struct RecentRefusalsTests {
    @Test("a refused key counts as refused until its wait ends, then no longer")
    func untilTheWaitEnds() {
        let refusals = RecentRefusals()
        #expect(!refusals.contains("k", now: 100))
        refusals.note("k", until: 105, now: 100)
        #expect(refusals.contains("k", now: 100))
        #expect(refusals.contains("k", now: 104.9))
        #expect(!refusals.contains("k", now: 105))
        #expect(!refusals.contains("k", now: 101), "an ended wait is forgotten")
        #expect(!refusals.contains("other", now: 100))
    }

    @Test("past 100,000 keys the ended waits are dropped, the running ones kept")
    func bounded() {
        let refusals = RecentRefusals()
        for n in 0..<100_001 { refusals.note("old-\(n)", until: 10, now: 5) }
        refusals.note("new", until: 50, now: 20)
        #expect(refusals.contains("new", now: 21))
        #expect(!refusals.contains("old-1", now: 21))
    }
}

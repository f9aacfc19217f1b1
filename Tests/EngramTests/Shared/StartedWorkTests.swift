import Synchronization
import Testing

@testable import EngramCore

/// Work started now and awaited later within a deadline from its start (the custom-LLM proxy's
/// retrieval): the first of the work and the deadline answers; past the deadline the work still
/// runs to its end; `cancel()` stops it.
@Suite("Started work under a deadline", .timeLimit(.minutes(1)))
struct StartedWorkTests {
    struct Failed: Error {}

    @Test("the work's value or error answers, whether it ends before or after the waiter asks")
    func valueAndError() async throws {
        let quick = StartedWork.start(deadline: .seconds(30)) { 42 }
        try await waitUntil("the work ended") { (try? await quick.value()) == 42 }
        #expect(try await quick.value() == 42)
        let gate = Gate()
        let later = StartedWork.start(deadline: .seconds(30)) { () async throws -> Int in
            await gate.wait()
            throw Failed()
        }
        let waiting = Task { try await later.value() }
        gate.open()
        await #expect(throws: Failed.self) { try await waiting.value }
    }

    @Test("past the deadline the waiter gets TimeoutError and the work still runs to its end")
    func deadlinePassesWorkGoesOn() async throws {
        let gate = Gate()
        let ended = Atomic<Bool>(false)
        let work = StartedWork.start(deadline: .milliseconds(50)) { () async -> Int in
            await gate.wait()
            ended.store(true, ordering: .sequentiallyConsistent)
            return 1
        }
        await #expect(throws: TimeoutError.self) { try await work.value() }
        gate.open()
        try await waitUntil("the work ran to its end") { ended.load(ordering: .sequentiallyConsistent) }
        await #expect(throws: TimeoutError.self) { try await work.value() }  // the first answer stays
    }

    @Test("cancel stops the work and answers the waiter with CancellationError")
    func cancelStops() async throws {
        let sawCancellation = Atomic<Bool>(false)
        let work = StartedWork.start(deadline: .seconds(30)) { () async -> Int in
            while !Task.isCancelled { await Task.yield() }
            sawCancellation.store(true, ordering: .sequentiallyConsistent)
            return 0
        }
        let waiting = Task { try await work.value() }
        work.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
        try await waitUntil("the work saw its cancellation") { sawCancellation.load(ordering: .sequentiallyConsistent) }
    }
}

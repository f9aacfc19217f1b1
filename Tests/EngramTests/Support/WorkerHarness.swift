import Foundation

@testable import EngramCore
@testable import Worker

extension WorkerRuntime {
    /// Processes until the queue (pending and due retries) is empty.
    func drain(maxEvents: Int = 100) async throws {
        for _ in 0..<maxEvents {
            _ = try await queue.promoteDueRetries(now: Date().addingTimeInterval(3600), limit: 100)
            if await !processor.processNext(wait: .milliseconds(100)) {
                let stats = try await queue.stats()
                if stats.pending == 0 && stats.retry == 0 { return }
            }
        }
    }

    func userKey(phone: String) async throws -> UserKey {
        try await vault.tenant("default", create: true)!.userKeys.key(for: .phone(phone))
    }
}

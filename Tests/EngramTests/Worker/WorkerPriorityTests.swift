import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramStore

/// Issue 14: reads must not queue behind the worker's CPU on the same machine. The worker lowers
/// its own priority (`ENGRAM_WORKER_NICE`) on every thread.
@Suite("The worker yields the CPU to reads", .timeLimit(.minutes(2)))
struct WorkerPriorityTests {
    /// The nice value of each thread of a process (field 19 of /proc/<pid>/task/<tid>/stat).
    static func niceValues(pid: Int32) -> [Int] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.compactMap { tid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return nil }
            // After "pid (comm) ": field 3 (state) is index 0, so field 19 (nice) is index 16.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 16 ? Int(fields[16]) : nil
        }
    }

    @Test("every thread of the engram-worker process comes to run at ENGRAM_WORKER_NICE", .timeLimit(.minutes(1)))
    func workerThreadsAreNiced() async throws {
        let env = try TestEnvironment()
        var environment = env.processEnvironment(httpPort: try freePort())
        environment["ENGRAM_WORKER_NICE"] = "7"
        let worker = try ServiceProcess("engram-worker", environment: environment, directory: env.directory)
        defer { worker.kill9() }
        try await waitUntil(timeout: .seconds(30), "the worker started") { worker.output.contains("worker started") }
        // Threads made later (libdispatch sets its own values on its workers) are lowered within a second.
        var values: [Int] = []
        try await waitUntil(timeout: .seconds(20), "every worker thread at nice 7") {
            values = Self.niceValues(pid: worker.process.processIdentifier)
            return values.count > 1 && values.allSatisfy { $0 == 7 }
        }
        #expect(values.count > 1 && values.allSatisfy { $0 == 7 }, "nice values \(values)")
        _ = await worker.terminate()
        await env.cleanUp()
    }
}

import EngramApp
import EngramCore
import EngramQueue
import EngramStore
import EngramTools
import Foundation

/// The worker's own throughput (issue 14): a burst of requests sent faster than one worker stores
/// them, then the time until the queue is empty. Post-calls come from regular callers (one
/// generated call each, as in the mixed load); `remember` calls all name the heavy caller, so
/// their rate is what one caller with `--heavy` memories sustains from `remember` to searchable
/// (a stored memory is searchable at its commit). The burst starts on an empty queue.
struct WorkerBurstResult: Encodable {
    var label: String
    var sent: Int
    var acknowledged: Int
    var offeredRate: Double
    /// From the first request's due time until the queue was empty.
    var seconds: Double
    var storedPerSecond: Double
    /// Events still queued when the senders stopped, and how fast the worker stored those alone.
    var leftAfterSend: Int
    var drainSeconds: Double
    var drainPerSecond: Double
    var drained: Bool

    enum CodingKeys: String, CodingKey {
        case label, sent, acknowledged
        case offeredRate = "offered_rate"
        case seconds
        case storedPerSecond = "stored_per_second"
        case leftAfterSend = "left_after_send"
        case drainSeconds = "drain_seconds"
        case drainPerSecond = "drain_per_second"
        case drained
    }

    var line: String {
        func f(_ x: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", x) }
        return "\(label): \(acknowledged) of \(sent) acknowledged at \(f(offeredRate, 0))/s; queue "
            + (drained ? "empty" : "NOT empty") + " \(f(seconds)) s after the first send: \(f(storedPerSecond)) events/s stored; "
            + "\(leftAfterSend) left when the senders stopped, stored in \(f(drainSeconds)) s: \(f(drainPerSecond)) events/s (worker alone)"
    }
}

extension BenchCommand {
    static let burstDrainDeadline = Duration.seconds(120)

    func workerBurst(_ load: LoadGenerator, queue: RedisEventQueue, path: BenchPath, label: String, count: Int, rate: Double) async
        -> WorkerBurstResult
    {
        _ = await Self.waitForDrain(queue, deadline: Self.drainDeadline)
        note("worker burst: \(count) \(label) at \(Int(rate))/s, then until the queue is empty")
        let requests = load.prepareRun(path, label: "burst-\(label)", rate: rate, duration: Double(count) / rate)
        let start = ContinuousClock.now + .milliseconds(50)
        let recorded = await load.drive(requests, rate: rate, start: start, tracker: nil)
        let summary = recorded.summary(path: label, offered: rate, start: start, targetMs: 5)
        let stats = try? await queue.stats()
        let left = stats.map { $0.pending + $0.processing } ?? 0
        let drain = await Self.waitForDrain(queue, deadline: Self.burstDrainDeadline)
        let seconds = max(0.001, (ContinuousClock.now - start).seconds)
        // Not drained by the deadline: only what left the queue counts as stored.
        let remaining = drain.drained ? 0 : ((try? await queue.stats()).map { $0.pending + $0.processing } ?? left)
        return WorkerBurstResult(
            label: label, sent: count, acknowledged: summary.ok, offeredRate: rate, seconds: seconds,
            storedPerSecond: Double(max(0, summary.ok - remaining)) / seconds, leftAfterSend: left, drainSeconds: drain.seconds,
            drainPerSecond: drain.seconds > 0 ? Double(max(0, left - remaining)) / drain.seconds : 0, drained: drain.drained)
    }
}

import EngramCore
import Foundation

/// An envelope taken from the queue: the exact bytes (to remove it later) and its decoding.
public struct TakenEvent: Sendable {
    public let raw: Data
    /// nil when the bytes are not a valid envelope (it will be dead-lettered).
    public let envelope: Envelope?
    public let decodeError: String?
}

/// A dead letter: the envelope as it was, and the error class and message; never a payload.
public struct DeadLetter: Codable, Sendable {
    public var id: String
    public var envelope: String
    public var errorClass: String
    public var errorMessage: String
    public var failedAt: Double
    public var worker: String

    enum CodingKeys: String, CodingKey {
        case id, envelope
        case errorClass = "error_class"
        case errorMessage = "error_message"
        case failedAt = "failed_at"
        case worker
    }

    public init(id: String, envelope: String, errorClass: String, errorMessage: String, failedAt: Double, worker: String) {
        self.id = id
        self.envelope = envelope
        self.errorClass = errorClass
        self.errorMessage = errorMessage
        self.failedAt = failedAt
        self.worker = worker
    }
}

/// What returning in-flight events did: how many went back to the pending list, and how many
/// had used their attempts and went to the dead letters as `worker_died`.
public struct InFlightReturn: Sendable, Equatable {
    public var requeued = 0
    public var deadLettered = 0
    public var total: Int { requeued + deadLettered }
    public init(requeued: Int = 0, deadLettered: Int = 0) {
        self.requeued = requeued
        self.deadLettered = deadLettered
    }
}

/// The dead-letter error class of an event whose workers stopped while holding it, `maxAttempts` times.
public let workerDiedErrorClass = "worker_died"

/// Queue depths for `engram queue stats`.
public struct QueueStats: Codable, Sendable, Equatable {
    public var pending: Int
    public var processing: Int
    public var retry: Int
    public var dead: Int
}

/// The reliable queue of docs/architecture.md: pending list, per-worker processing lists, a retry
/// schedule, dead letters and dedupe marks.
public protocol EventQueue: Sendable {
    /// Enqueues unless any dedupe mark exists; the marks are written atomically with the push.
    /// Returns false for a duplicate.
    func enqueue(_ envelope: Envelope, dedupe: [String], ttlSeconds: Int) async throws -> Bool
    func take(worker: String, timeout: Duration) async throws -> TakenEvent?
    /// Takes up to `limit` events that are already waiting, without blocking, in the order
    /// `take` would (the worker's batch after its first event).
    func takeReady(worker: String, limit: Int) async throws -> [TakenEvent]
    func ack(worker: String, raw: Data) async throws
    /// Acknowledges several in-flight events (`ack` for each).
    func ack(worker: String, raws: [Data]) async throws
    /// Returns in-flight events not started (a worker shutting down mid-batch) to the front of
    /// the pending list, oldest next, their attempt unchanged. False if this queue cannot.
    func giveBack(worker: String, raws: [Data]) async throws -> Bool
    func scheduleRetry(worker: String, raw: Data, next: Envelope, dueAt: Date) async throws
    func deadLetter(worker: String, raw: Data, letter: DeadLetter) async throws
    func heartbeat(worker: String, ttl: Duration) async throws
    func clearHeartbeat(worker: String) async throws
    /// Returns the in-flight events of workers whose heartbeat expired. Each return counts as a
    /// death (`Envelope.deaths`, apart from the processing attempts that LLM retries use): an
    /// event whose workers died `maxAttempts` times holding it goes to the dead letters
    /// (`worker_died`) instead of back to the queue, so one event that kills its worker cannot
    /// kill every worker after it.
    func reap(maxAttempts: Int) async throws -> InFlightReturn
    /// Returns this worker's own in-flight events to the pending list: those stranded when a
    /// queue call failed mid-event, or left by an earlier process under the same id (a worker
    /// restarted in place after a crash). Counted as deaths, as in `reap`. The reaper never
    /// takes them while this worker heartbeats. Call only while the worker holds no event.
    func requeueInFlight(worker: String, maxAttempts: Int) async throws -> InFlightReturn
    /// Moves due retries back to the pending list. Returns how many moved.
    func promoteDueRetries(now: Date, limit: Int) async throws -> Int
    func stats() async throws -> QueueStats
    /// Dead letters, newest first.
    func deadLetters(limit: Int) async throws -> [DeadLetter]
    func ping() async throws
}

/// Queues without batch support take one event at a time and acknowledge one by one.
extension EventQueue {
    public func takeReady(worker: String, limit: Int) async throws -> [TakenEvent] { [] }

    public func ack(worker: String, raws: [Data]) async throws {
        for raw in raws { try await ack(worker: worker, raw: raw) }
    }

    /// Left in flight: the worker's in-flight check or the reaper returns them.
    public func giveBack(worker: String, raws: [Data]) async throws -> Bool { false }
}

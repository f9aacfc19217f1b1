import EngramApp
import EngramCore
import EngramObservability
import EngramProviders
import EngramQueue
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Tracing

/// pop → decrypt → extract → embed → resolve → store → ack. Failures go to the retry schedule
/// with backoff, or to the dead letters with their error class once attempts run out or the
/// event can never succeed.
///
/// Events already waiting are taken together, up to `batchLimit` (issue 14): each is handled in
/// turn exactly as alone (its own store transaction, so it sees the ones before it and a failure
/// rolls back only itself; its own retry or dead letter at once), under one group commit: one
/// disk flush makes the batch's writes durable, then the stored events are acknowledged together.
struct EventProcessor: Service {
    let queue: any EventQueue
    let ingestor: EventIngestor
    let worker: String
    let maxAttempts: Int
    let retryBase: Duration
    let retryMax: Duration
    let logger: Logger
    /// Most events taken and stored together (`ENGRAM_WORKER_BATCH`); 1: one at a time.
    var batchLimit = 1
    /// Lanes a batch runs in side by side (`ENGRAM_WORKER_CONCURRENCY`); each caller's events
    /// stay in one lane, in queue order.
    var lanes = 1
    /// Set while this worker's in-flight list may hold an event it is not handling: at start (an
    /// earlier process may have used the same id, e.g. a container restarted in place) and after
    /// a queue call failed mid-event (Redis down: the ack, retry or dead letter was not written).
    /// The reaper leaves that list alone while this worker heartbeats, so the worker returns
    /// such events to the pending list itself, before it takes the next one.
    let inFlightCheck = InFlightCheck()
    /// Redis down: the first failure, then one line per 30 s with a count (not one per loop).
    let queueFailures = RepeatingFailureLog("cannot use the queue")

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            _ = await processNext(wait: .seconds(1))
        }
    }

    /// Takes and handles one event, with those waiting behind it up to `batchLimit`; false when
    /// none came within `wait` or the queue failed.
    @discardableResult
    func processNext(wait: Duration) async -> Bool {
        if inFlightCheck.isNeeded {
            do {
                let returned = try await queue.requeueInFlight(worker: worker, maxAttempts: maxAttempts)
                inFlightCheck.isNeeded = false
                Reaper.report(returned, logger: logger, source: "previous run of this worker or a failed queue call")
            } catch {
                queueFailures.failed(error, logger: logger, metadata: ["step": "check the in-flight list"])
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
                return false
            }
        }
        let taken: TakenEvent?
        do {
            taken = try await queue.take(worker: worker, timeout: wait)
        } catch {
            // The move may have happened with only its reply lost.
            inFlightCheck.isNeeded = true
            queueFailures.failed(error, logger: logger, metadata: ["step": "take"])
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) }
            return false
        }
        queueFailures.succeeded(logger: logger)
        guard let taken else { return false }
        var batch = [taken]
        if batchLimit > 1, !Self.isSuspect(taken) {
            do {
                batch += try await queue.takeReady(worker: worker, limit: batchLimit - 1)
            } catch {
                // Items may have moved with only the reply lost: returned on the next turn.
                inFlightCheck.isNeeded = true
                queueFailures.failed(error, logger: logger, metadata: ["step": "take the waiting events"])
            }
            // An event a worker died holding is handled alone: if it is what kills workers, its
            // next death is its own, not one more for every event of a batch (which would send
            // them all to the dead letters with it). It and the events after it go back, in order
            // (one caller's events stay in queue order); the next take starts with it.
            if let first = batch.firstIndex(where: Self.isSuspect) {
                let later = batch[first...].map(\.raw)
                batch.removeSubrange(first...)
                await giveBack(later, order: later, reason: "events a worker died holding are handled alone")
            }
        }
        await handle(batch)
        return true
    }

    /// An event some worker stopped while holding (`Envelope.deaths`): it may be what stops them.
    static func isSuspect(_ taken: TakenEvent) -> Bool { (taken.envelope?.deaths ?? 0) > 0 }

    /// Handles one taken event (a batch of one).
    func handle(_ taken: TakenEvent) async { await handle([taken]) }

    /// Handles a batch in order under one group commit, then acknowledges what it stored. If the
    /// flush fails, nothing is acknowledged: the events stay in flight and are returned on the
    /// next turn, where the processed-event ledger finds those whose writes did land. Once a
    /// graceful shutdown has begun, events not yet started are given back to the queue.
    func handle(_ batch: [TakenEvent]) async {
        let result: BatchResult
        do {
            let lanes = await self.split(batch)
            result = try await ingestor.vault.withGroupCommit {
                await withTaskGroup(of: BatchResult.self) { group in
                    for lane in lanes {
                        group.addTask {
                            var result = BatchResult()
                            for taken in lane {
                                if Task.isShuttingDownGracefully {
                                    result.unstarted.append(taken.raw)
                                } else if let event = await handleOne(taken) {
                                    result.processed.append(event)
                                }
                            }
                            return result
                        }
                    }
                    var result = BatchResult()
                    for await done in group {
                        result.processed += done.processed
                        result.unstarted += done.unstarted
                    }
                    return result
                }
            }
        } catch {
            inFlightCheck.isNeeded = true
            logger.error(
                "cannot make the batch's writes durable; its events are returned to the queue",
                metadata: ["error_class": "\(type(of: error))", "events": "\(batch.count)"])
            return
        }
        await acknowledge(result.processed)
        if !result.unstarted.isEmpty {
            await giveBack(result.unstarted, order: batch.map(\.raw), reason: "shutting down: events not started were returned to the queue")
        }
    }

    /// What a batch's lanes did: events to acknowledge, and events not started (shutdown).
    struct BatchResult: Sendable {
        var processed: [ProcessedEvent] = []
        var unstarted: [Data] = []
    }

    /// Returns events not started to the front of the queue, in their order, as if never taken.
    private func giveBack(_ unstarted: [Data], order: [Data], reason: Logger.Message) async {
        let unstartedSet = Set(unstarted)
        let inOrder = order.filter { unstartedSet.contains($0) }
        do {
            let returned = try await queue.giveBack(worker: worker, raws: inOrder)
            if !returned { inFlightCheck.isNeeded = true }
            logger.info(reason, metadata: ["events": "\(inOrder.count)"])
        } catch {
            inFlightCheck.isNeeded = true
            logger.error(
                "cannot return events not started; they are returned by the next start or the reaper",
                metadata: ["error_class": "\(type(of: error))", "events": "\(inOrder.count)"])
        }
    }

    /// The batch in at most `lanes` lanes: events of one caller (`EventIngestor.laneKey`) in one
    /// lane, in queue order; events whose caller cannot be told all in the first lane.
    func split(_ batch: [TakenEvent]) async -> [[TakenEvent]] {
        guard lanes > 1, batch.count > 1 else { return [batch] }
        var result = [[TakenEvent]](repeating: [], count: lanes)
        var laneOf: [String: Int] = [:]
        for taken in batch {
            guard let envelope = taken.envelope, let key = await ingestor.laneKey(envelope) else {
                result[0].append(taken)
                continue
            }
            // A new caller goes to the shortest lane.
            let lane = laneOf[key] ?? result.indices.min { result[$0].count < result[$1].count } ?? 0
            laneOf[key] = lane
            result[lane].append(taken)
        }
        return result.filter { !$0.isEmpty }
    }

    /// An event whose effect is committed; acknowledged once the batch is durable.
    struct ProcessedEvent: Sendable {
        let raw: Data
        let envelope: Envelope
        let outcome: IngestOutcome
        let started: ContinuousClock.Instant
        let logger: Logger
        /// The event's span context: its log line, written after the batch's ack, carries its trace.
        let context: ServiceContext
    }

    private func acknowledge(_ processed: [ProcessedEvent]) async {
        guard !processed.isEmpty else { return }
        do {
            try await withRetries { try await queue.ack(worker: worker, raws: processed.map(\.raw)) }
        } catch {
            // Stored, but not acknowledged: not a failure of the events (no retry, no dead
            // letter). They are returned on this worker's next turn and found already processed.
            inFlightCheck.isNeeded = true
            logger.error(
                "cannot acknowledge processed events; they will be redelivered as duplicates",
                metadata: ["error_class": "\(type(of: error))", "events": "\(processed.count)"])
        }
        for event in processed {
            // `received_at` comes from Redis: a time that is not a plausible date gives no lag.
            let now = Date().timeIntervalSince1970
            let lag = now - (Date(checkedUnixSeconds: event.envelope.receivedAt)?.timeIntervalSince1970 ?? now)
            EngramMetrics.eventProcessed(outcome: Self.label(event.outcome), lag: lag)
            ServiceContext.withValue(event.context) {
                event.logger.info(
                    "event processed",
                    metadata: [
                        "outcome": "\(event.outcome)", "attempt": "\(event.envelope.attempt)",
                        "duration_ms": "\(String(format: "%.1f", (ContinuousClock.now - event.started).seconds * 1000))",
                        "lag_ms": "\(String(format: "%.1f", lag * 1000))",
                    ])
            }
        }
    }

    /// Processes one event of a batch; the processed event if it is to be acknowledged (a failed
    /// one is retried or dead-lettered here).
    private func handleOne(_ taken: TakenEvent) async -> ProcessedEvent? {
        guard let envelope = taken.envelope else {
            // Not an envelope: its bytes are not known to be encrypted, so only their digest is kept.
            await deadLetter(
                taken.raw, id: "unknown", errorClass: taken.decodeError ?? "DecodingError",
                message: "queue item is not a valid envelope (sha256 prefix \(PostCallIntake.digest(String(decoding: taken.raw, as: UTF8.self))))",
                keepBytes: false, reason: "invalid_envelope")
            return nil
        }
        // A child of the gateway's "enqueue event" span when the envelope carries its context, so
        // one trace runs from the webhook through Redis to the store.
        let span = startSpan("process event", context: envelope.traceContext, ofKind: .consumer)
        defer { span.end() }
        span.updateAttributes { attributes in
            attributes["messaging.system"] = "redis"
            attributes["messaging.operation.type"] = "process"
            attributes["messaging.message.id"] = envelope.id
            attributes["engram.tenant"] = envelope.tenant
            attributes["engram.event.type"] = envelope.type
            attributes["engram.attempt"] = envelope.attempt
            attributes["engram.worker"] = worker
        }
        return await ServiceContext.withValue(span.context) { await process(envelope, taken: taken, span: span) }
    }

    private func process(_ envelope: Envelope, taken: TakenEvent, span: any Span) async -> ProcessedEvent? {
        var logger = self.logger
        logger[metadataKey: "event_id"] = "\(envelope.id)"
        logger[metadataKey: "tenant"] = "\(envelope.tenant)"
        let started = ContinuousClock.now
        do {
            let outcome = try await ingestor.ingest(envelope, logger: logger)
            // `received_at` comes from Redis: a time that is not a plausible date gives no lag.
            let now = Date().timeIntervalSince1970
            let lag = now - (Date(checkedUnixSeconds: envelope.receivedAt)?.timeIntervalSince1970 ?? now)
            span.updateAttributes { attributes in
                attributes["engram.outcome"] = Self.label(outcome)
                attributes["engram.lag_ms"] = SafeNumber.clampedInt(lag * 1000)
                if case .stored(let memories, let reinforced, let superseded) = outcome {
                    attributes["engram.memories.stored"] = memories
                    attributes["engram.memories.reinforced"] = reinforced
                    attributes["engram.memories.superseded"] = superseded
                }
            }
            return ProcessedEvent(
                raw: taken.raw, envelope: envelope, outcome: outcome, started: started, logger: logger, context: span.context)
        } catch let error as PermanentEventError {
            span.attributes["engram.outcome"] = "dead_letter"
            span.attributes["error.type"] = error.errorClass
            span.setStatus(SpanStatus(code: .error, message: error.errorClass))
            EngramMetrics.eventProcessed(outcome: "dead_letter", lag: nil)
            await deadLetter(taken.raw, id: envelope.id, errorClass: error.errorClass, message: error.message, reason: "permanent")
            return nil
        } catch {
            let errorClass = String(describing: type(of: error))
            let message = (error as? ExtractionError)?.description ?? (error as? RedisError)?.description ?? errorClass
            EngramMetrics.eventProcessed(outcome: "failed", lag: nil)
            span.recordFailure(error)
            // `attempt` comes from Redis: compared without arithmetic that could overflow.
            let lastAttempt = envelope.attempt >= maxAttempts - 1
            span.attributes["engram.outcome"] = lastAttempt ? "dead_letter" : "retry"
            if lastAttempt {
                await deadLetter(taken.raw, id: envelope.id, errorClass: errorClass, message: message, reason: "attempts_exhausted")
                return nil
            }
            var next = envelope
            next.attempt = max(0, envelope.attempt) + 1
            var retryAfter: Double?
            if case .rateLimited(let after)? = error as? ExtractionError { retryAfter = after }
            let delay = RetryScheduler.delay(attempt: envelope.attempt, base: retryBase, cap: retryMax, retryAfter: retryAfter)
            do {
                try await withRetries {
                    try await queue.scheduleRetry(worker: worker, raw: taken.raw, next: next, dueAt: Date().addingTimeInterval(delay.seconds))
                }
                logger.warning(
                    "event failed; retry scheduled",
                    metadata: [
                        "error_class": "\(errorClass)", "attempt": "\(envelope.attempt)",
                        "delay_ms": "\(SafeNumber.clampedInt64(delay.seconds * 1000))",
                    ])
            } catch {
                inFlightCheck.isNeeded = true
                logger.error("cannot schedule retry; the event is returned on the next turn", metadata: ["error_class": "\(type(of: error))"])
            }
            return nil
        }
    }

    static func label(_ outcome: IngestOutcome) -> String {
        switch outcome {
        case .stored: return "stored"
        case .duplicate: return "duplicate"
        case .noUser: return "no_user"
        case .noConsent: return "no_consent"
        case .tombstoned: return "tombstoned"
        case .recorded: return "recorded"
        case .ignored: return "ignored"
        }
    }

    private func deadLetter(_ raw: Data, id: String, errorClass: String, message: String, keepBytes: Bool = true, reason: String) async {
        let letter = DeadLetter(
            id: id, envelope: keepBytes ? String(decoding: raw, as: UTF8.self) : "", errorClass: errorClass, errorMessage: message,
            failedAt: Date().timeIntervalSince1970, worker: worker)
        do {
            try await withRetries { try await queue.deadLetter(worker: worker, raw: raw, letter: letter) }
            EngramMetrics.eventDeadLettered(reason: reason)
            logger.error("event dead-lettered", metadata: ["event_id": "\(id)", "error_class": "\(errorClass)"])
        } catch {
            inFlightCheck.isNeeded = true
            logger.error("cannot dead-letter; the event is returned on the next turn", metadata: ["error_class": "\(type(of: error))"])
        }
    }

    /// Queue bookkeeping after the work is done is retried briefly: losing an ack only means a
    /// harmless redelivery, but it is better avoided.
    private func withRetries(_ body: () async throws -> Void) async throws {
        var attempt = 0
        while true {
            do { return try await body() } catch {
                attempt += 1
                if attempt >= 5 { throw error }
                try? await Task.sleep(for: .milliseconds(100 * attempt))
            }
        }
    }
}

/// A flag shared by the copies of a processor (a struct) and its tests.
final class InFlightCheck: Sendable {
    private let needed = Atomic<Bool>(true)

    var isNeeded: Bool {
        get { needed.load(ordering: .acquiring) }
        set { needed.store(newValue, ordering: .releasing) }
    }
}

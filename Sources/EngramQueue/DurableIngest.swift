import EngramCore
import EngramObservability
import Foundation
import Logging
import ServiceLifecycle
import Tracing

/// What the gateway calls to make an event durable: Redis first, the local spool when Redis
/// cannot take it. Either way the caller may answer 200.
public struct DurableIngest: Sendable {
    public enum Outcome: String, Sendable { case queued, duplicate, spooled }

    public let queue: any EventQueue
    public let spool: Spool
    public let ttlSeconds: Int

    public init(queue: any EventQueue, spool: Spool, ttlSeconds: Int) {
        self.queue = queue
        self.spool = spool
        self.ttlSeconds = ttlSeconds
    }

    /// Enqueues, or spools when Redis fails; throws only if neither can keep the event. The
    /// envelope carries the context of this "enqueue event" span, so the worker's spans continue
    /// the request's trace.
    public func accept(_ envelope: Envelope, dedupe: [String], logger: Logger) async throws -> Outcome {
        try await EngramTracing.withSpan("enqueue event", ofKind: .producer) { span in
            var envelope = envelope
            envelope.attachTraceContext()
            span.attributes["messaging.system"] = "redis"
            span.attributes["messaging.operation.type"] = "send"
            span.attributes["messaging.message.id"] = envelope.id
            span.attributes["engram.tenant"] = envelope.tenant
            span.attributes["engram.event.type"] = envelope.type
            let outcome = try await keep(envelope, dedupe: dedupe, logger: logger)
            span.attributes["engram.outcome"] = outcome.rawValue
            return outcome
        }
    }

    private func keep(_ envelope: Envelope, dedupe: [String], logger: Logger) async throws -> Outcome {
        // Older spooled events go first, so a recovered Redis sees them in order.
        if spool.depth == 0 {
            do {
                return try await queue.enqueue(envelope, dedupe: dedupe, ttlSeconds: ttlSeconds) ? .queued : .duplicate
            } catch {
                logger.warning("redis unavailable; spooling the event", metadata: ["error_class": "\(type(of: error))"])
            }
        }
        try spool.append(SpoolRecord(envelope: envelope, dedupe: dedupe, ttlSeconds: ttlSeconds))
        return .spooled
    }
}

/// Drains the spool into Redis whenever it is non-empty and Redis answers.
public struct SpoolDrainer: Service {
    let ingest: DurableIngest
    let interval: Duration
    let logger: Logger

    public init(ingest: DurableIngest, interval: Duration = .milliseconds(500), logger: Logger) {
        self.ingest = ingest
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            await drainOnce()
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
        await drainOnce()  // a last try on shutdown; whatever is left stays on disk for the next start
    }

    public func drainOnce() async {
        guard ingest.spool.depth > 0 else { return }
        do {
            let drained = try await ingest.spool.drain { record in
                _ = try await ingest.queue.enqueue(record.envelope, dedupe: record.dedupe, ttlSeconds: record.ttlSeconds)
            }
            if drained > 0 { logger.info("spool drained into redis", metadata: ["count": "\(drained)"]) }
        } catch {
            logger.debug("spool not drained yet", metadata: ["error_class": "\(type(of: error))"])
        }
    }
}

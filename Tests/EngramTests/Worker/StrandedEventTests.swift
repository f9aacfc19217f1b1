import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramQueue
@testable import EngramStore
@testable import Worker

/// The queue as Redis looks from a worker while Redis is down: every call fails, except that
/// `take` still works (it happened just before the outage).
final class OutageQueue: EventQueue, @unchecked Sendable {  // `down` only under `lock`
    let base: RedisEventQueue
    private let lock = NSLock()
    private var _down = false

    init(_ base: RedisEventQueue) { self.base = base }

    var down: Bool {
        get { lock.withLock { _down } }
        set { lock.withLock { _down = newValue } }
    }

    private func check() throws { if down { throw RedisError.connection("Connection refused") } }

    func enqueue(_ envelope: Envelope, dedupe: [String], ttlSeconds: Int) async throws -> Bool {
        try check()
        return try await base.enqueue(envelope, dedupe: dedupe, ttlSeconds: ttlSeconds)
    }
    func take(worker: String, timeout: Duration) async throws -> TakenEvent? { try await base.take(worker: worker, timeout: timeout) }
    func ack(worker: String, raw: Data) async throws {
        try check()
        try await base.ack(worker: worker, raw: raw)
    }
    func scheduleRetry(worker: String, raw: Data, next: Envelope, dueAt: Date) async throws {
        try check()
        try await base.scheduleRetry(worker: worker, raw: raw, next: next, dueAt: dueAt)
    }
    func deadLetter(worker: String, raw: Data, letter: DeadLetter) async throws {
        try check()
        try await base.deadLetter(worker: worker, raw: raw, letter: letter)
    }
    func heartbeat(worker: String, ttl: Duration) async throws {
        try check()
        try await base.heartbeat(worker: worker, ttl: ttl)
    }
    func clearHeartbeat(worker: String) async throws {
        try check()
        try await base.clearHeartbeat(worker: worker)
    }
    func reap(maxAttempts: Int) async throws -> InFlightReturn {
        try check()
        return try await base.reap(maxAttempts: maxAttempts)
    }
    func requeueInFlight(worker: String, maxAttempts: Int) async throws -> InFlightReturn {
        try check()
        return try await base.requeueInFlight(worker: worker, maxAttempts: maxAttempts)
    }
    func promoteDueRetries(now: Date, limit: Int) async throws -> Int {
        try check()
        return try await base.promoteDueRetries(now: now, limit: limit)
    }
    func stats() async throws -> QueueStats {
        try check()
        return try await base.stats()
    }
    func deadLetters(limit: Int) async throws -> [DeadLetter] {
        try check()
        return try await base.deadLetters(limit: limit)
    }
    func ping() async throws {
        try check()
        try await base.ping()
    }
}

@Suite("Events stranded by a Redis outage mid-event", .timeLimit(.minutes(3)))
struct StrandedEventTests {
    @Test("an event whose ack was lost to a Redis outage is taken up again by the same live worker once Redis is back, and applied once")
    func strandedByLostAck() async throws {
        let env = try TestEnvironment()
        let configuration = env.configuration()
        let runtime = try await buildWorker(configuration: configuration, logger: testLogger)
        let redis = env.queue()
        let queue = OutageQueue(redis)
        let processor = EventProcessor(
            queue: queue, ingestor: runtime.processor.ingestor, worker: configuration.workerID, maxAttempts: configuration.maxAttempts,
            retryBase: configuration.retryBase, retryMax: configuration.retryMax, logger: testLogger)
        // The worker is alive throughout: the reaper must leave its in-flight list alone.
        try await redis.heartbeat(worker: configuration.workerID, ttl: .seconds(60))

        let envelope = try Envelope.seal(
            try fixtureTranscript(), tenant: "default", type: EventType.postCallTranscription, receivedAt: Date(),
            cipher: KeyRing(master: env.masterKey).envelopeCipher)
        #expect(try await redis.enqueue(envelope, dedupe: [], ttlSeconds: 60))
        #expect(await processor.processNext(wait: .milliseconds(200)))  // clears the start-up check

        let second = try Envelope.seal(
            try fixtureTranscript(phone: "+14155550166"), tenant: "default", type: EventType.postCallTranscription, receivedAt: Date(),
            cipher: KeyRing(master: env.masterKey).envelopeCipher)
        #expect(try await redis.enqueue(second, dedupe: [], ttlSeconds: 60))
        // Taken, stored, then Redis goes away before the ack (and the retry scheduling) can be written.
        let taken = try #require(try await redis.take(worker: configuration.workerID, timeout: .seconds(1)))
        queue.down = true
        await processor.handle(taken)
        queue.down = false
        #expect(try await redis.stats().processing == 1)
        #expect(try await redis.reap(maxAttempts: configuration.maxAttempts).total == 0)  // alive: not the reaper's to return

        // Redis is back: the worker's next turn returns its stranded event and finishes it.
        try await waitUntil("the stranded event is finished") {
            _ = await processor.processNext(wait: .milliseconds(100))
            let stats = try await redis.stats()
            return stats.processing == 0 && stats.pending == 0 && stats.retry == 0
        }
        let store = runtime.vault.store as! SQLiteMemoryStore
        let processed = try await store.database.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM processed_events") }
        #expect(processed == 2)
        let user = try await runtime.userKey(phone: "+14155550166")
        let memories = try await runtime.vault.memories(tenant: "default", user: user, includeHistory: true)
        let once = LocalExtractor().extractNow(
            Conversation(try JSONDecoder().decode(PostCallWebhook.self, from: try fixtureTranscript()).data!, fallbackStart: Date()))
        #expect(memories.count == once.memories.count, "applied once")
        #expect(try await redis.stats().dead == 0)
        await env.cleanUp()
    }

    @Test("a worker restarted under the same id (a container restarted in place) returns what its previous life left in flight")
    func sameIDAfterRestart() async throws {
        let env = try TestEnvironment()
        let configuration = env.configuration()
        let redis = env.queue()
        let envelope = try Envelope.seal(
            try fixtureTranscript(), tenant: "default", type: EventType.postCallTranscription, receivedAt: Date(),
            cipher: KeyRing(master: env.masterKey).envelopeCipher)
        #expect(try await redis.enqueue(envelope, dedupe: [], ttlSeconds: 60))
        // The previous process took it and died; the new one heartbeats under the same id at once.
        _ = try #require(try await redis.take(worker: configuration.workerID, timeout: .seconds(1)))
        try await redis.heartbeat(worker: configuration.workerID, ttl: .seconds(60))

        let runtime = try await buildWorker(configuration: configuration, logger: testLogger)
        #expect(await runtime.processor.processNext(wait: .milliseconds(200)))
        #expect(try await redis.stats() == QueueStats(pending: 0, processing: 0, retry: 0, dead: 0))
        let store = runtime.vault.store as! SQLiteMemoryStore
        #expect(try await store.database.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM processed_events") } == 1)
        let user = try await runtime.userKey(phone: Fixtures.fixturePhone)
        #expect(try await !runtime.vault.memories(tenant: "default", user: user).isEmpty)
        await env.cleanUp()
    }
}

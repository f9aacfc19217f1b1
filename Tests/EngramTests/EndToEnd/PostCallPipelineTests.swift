import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramQueue
@testable import EngramStore
@testable import Gateway
@testable import Worker

@Suite("Signed post-call → Redis → worker → SQLite", .timeLimit(.minutes(2)))
struct PostCallPipelineTests {
    @Test("the fixture, signed, becomes memories that cite its turns, readable by phone number", arguments: Backend.available)
    func fixtureBecomesMemories(backend: Backend) async throws {
        let env = try await TestEnvironment.make(backend)
        let configuration = env.configuration()
        let app = try await buildApplication(configuration: configuration, logger: testLogger)
        let worker = try await buildWorker(configuration: configuration, logger: testLogger)
        let body = try fixtureTranscript()
        try await app.test(.router) { client in
            try await client.execute(
                uri: "/v1/elevenlabs/post-call", method: .post, headers: postCallHeaders(body, secret: env.webhookSecret),
                body: ByteBuffer(data: body)
            ) {
                #expect($0.status == .ok)
            }
        }
        try await worker.drain()
        let user = try await worker.userKey(phone: Fixtures.fixturePhone)
        let memories = try await worker.vault.memories(tenant: "default", user: user)
        // Each episode is the turn with the turns around it, one line each (tool turns 2 and 3 carry no words).
        #expect(
            memories.contains {
                $0.content
                    == "On 21 November 2025:\nagent: Hi Dana, welcome back! Last time we talked about moving your cleaning to Friday. How can I help today (21 November 2025)?\ncaller: Yeah, can you check if I still have the Friday slot?\nagent: Yes, you're booked for Friday at 10 a.m."
                    && $0.sourceTurns == [0, 1, 4]
            })
        #expect(
            memories.contains {
                $0.content
                    == "On 21 November 2025:\ncaller: Yeah, can you check if I still have the Friday slot?\nagent: Yes, you're booked for Friday at 10 a.m."
                    && $0.sourceTurns == [1, 4]
            })
        // The booking, stated once and dated, citing the turns whose words it carries.
        #expect(
            memories.contains {
                $0.content == "On 21 November 2025 the caller confirmed a cleaning on Friday (28 November 2025) at 10 a.m."
                    && $0.sourceTurns == [0, 1, 4] && $0.slot == "booking"
            })
        #expect(memories.contains { $0.sources.first?.kind == "summary" })
        #expect(memories.contains { $0.slot == "reason" })
        #expect(memories.allSatisfy { $0.status == .active && $0.validFrom == Date(timeIntervalSince1970: 1_763_759_979) })
        let stats = try await worker.queue.stats()
        #expect(stats == QueueStats(pending: 0, processing: 0, retry: 0, dead: 0))
        await env.cleanUp()
    }

    @Test("the same event delivered three times past the dedupe marks yields one set of memories", arguments: Backend.available)
    func redeliveryIsANoOp(backend: Backend) async throws {
        let env = try await TestEnvironment.make(backend)
        let configuration = env.configuration()
        let worker = try await buildWorker(configuration: configuration, logger: testLogger)
        let cipher = KeyRing(master: env.masterKey).envelopeCipher
        let body = try fixtureTranscript()
        for _ in 0..<3 {
            let envelope = try Envelope.seal(body, tenant: "default", type: EventType.postCallTranscription, receivedAt: Date(), cipher: cipher)
            #expect(try await worker.queue.enqueue(envelope, dedupe: [], ttlSeconds: 60))
        }
        try await worker.drain()
        let user = try await worker.userKey(phone: Fixtures.fixturePhone)
        let memories = try await worker.vault.memories(tenant: "default", user: user, includeHistory: true)
        let once = LocalExtractor().extractNow(Conversation(try JSONDecoder().decode(PostCallWebhook.self, from: body).data!, fallbackStart: Date()))
        #expect(memories.count == once.memories.count)
        #expect(try await worker.queue.stats().dead == 0)
        await env.cleanUp()
    }

    @Test("an event taken by a worker that died is returned by the reaper and processed exactly once by another")
    func deadWorkerIsReaped() async throws {
        let env = try TestEnvironment()
        var configuration = env.configuration()
        configuration.workerID = "survivor"
        let survivor = try await buildWorker(configuration: configuration, logger: testLogger)
        let cipher = KeyRing(master: env.masterKey).envelopeCipher
        let body = try fixtureTranscript()
        let envelope = try Envelope.seal(body, tenant: "default", type: EventType.postCallTranscription, receivedAt: Date(), cipher: cipher)
        #expect(try await survivor.queue.enqueue(envelope, dedupe: [], ttlSeconds: 60))

        // The victim takes the event while its heartbeat is alive, then dies: the heartbeat key expires.
        let queue = env.queue()
        try await queue.heartbeat(worker: "victim", ttl: .seconds(30))
        let taken = try #require(try await queue.take(worker: "victim", timeout: .seconds(1)))
        #expect(taken.envelope?.id == envelope.id)
        #expect(try await queue.reap(maxAttempts: configuration.maxAttempts).total == 0)  // still alive: nothing moves
        try await queue.heartbeat(worker: "victim", ttl: .milliseconds(100))  // its last beat
        try await waitUntil("victim's heartbeat expires") { try await queue.reap(maxAttempts: configuration.maxAttempts).requeued == 1 }

        try await survivor.drain()
        let user = try await survivor.userKey(phone: Fixtures.fixturePhone)
        let first = try await survivor.vault.memories(tenant: "default", user: user, includeHistory: true)
        #expect(!first.isEmpty)

        // Died after storing but before the ack: the redelivery changes nothing.
        let again = try await queue.enqueue(envelope, dedupe: [], ttlSeconds: 60)
        #expect(again)
        try await survivor.drain()
        #expect(try await survivor.vault.memories(tenant: "default", user: user, includeHistory: true).count == first.count)
        #expect(try await queue.stats() == QueueStats(pending: 0, processing: 0, retry: 0, dead: 0))
        await env.cleanUp()
    }

    @Test("a caller with a withheld number is acknowledged and nothing is stored", arguments: ["anonymous", "Restricted", "", "0000000"])
    func withheldCaller(_ number: String) async throws {
        let env = try TestEnvironment()
        let worker = try await buildWorker(configuration: env.configuration(), logger: testLogger)
        let body = try fixtureTranscript(phone: number)
        let envelope = try Envelope.seal(
            body, tenant: "default", type: EventType.postCallTranscription, receivedAt: Date(), cipher: KeyRing(master: env.masterKey).envelopeCipher)
        _ = try await worker.queue.enqueue(envelope, dedupe: [], ttlSeconds: 60)
        try await worker.drain()
        let store = worker.vault.store as! SQLiteMemoryStore
        let count = try await store.database.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM memories") }
        #expect(count == 0)
        #expect(try await worker.queue.stats() == QueueStats(pending: 0, processing: 0, retry: 0, dead: 0))
        await env.cleanUp()
    }

    @Test("a queue item that is not an envelope is dead-lettered with its error class, never its bytes")
    func garbageEnvelope() async throws {
        let env = try TestEnvironment()
        let worker = try await buildWorker(configuration: env.configuration(), logger: testLogger)
        try await env.redisClient().command("LPUSH", RedisArgument(env.keys.events), "not an envelope: secret words")
        try await worker.drain()
        let letters = try await worker.queue.deadLetters(limit: 10)
        #expect(letters.count == 1)
        #expect(letters.first?.errorClass.isEmpty == false)
        #expect(letters.first?.errorMessage.contains("secret words") == false)
        #expect(letters.first?.envelope.contains("secret words") == false)
        await env.cleanUp()
    }
}

import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramQueue
@testable import EngramStore
@testable import Worker

/// The local extractor, except that a conversation whose id starts with `conv_fail_` fails as an
/// unavailable LLM would (a transient error: the event is retried).
struct SometimesFailingExtractor: Extractor {
    let id = "local-sometimes-failing"

    func extract(_ conversation: Conversation) async throws -> Extraction {
        if conversation.conversationID?.hasPrefix("conv_fail_") == true { throw ExtractionError.server(status: 503) }
        return LocalExtractor().extractNow(conversation)
    }
}

/// The batch path of `OutageQueue` (StrandedEventTests): events already waiting are taken as
/// `take` takes them, before the outage.
extension OutageQueue {
    func takeReady(worker: String, limit: Int) async throws -> [TakenEvent] { try await base.takeReady(worker: worker, limit: limit) }
}

@Suite("Worker batches: one group commit per batch, each event on its own", .timeLimit(.minutes(2)))
struct WorkerBatchTests {
    static let rememberedFact = "my gate code is 4471"

    static func postCall(_ env: TestEnvironment, phone: String, conversationID: String) throws -> Envelope {
        try Envelope.seal(
            try fixtureTranscript(conversationID: conversationID, phone: phone), tenant: "default", type: EventType.postCallTranscription,
            receivedAt: Date(), cipher: KeyRing(master: env.masterKey).envelopeCipher)
    }

    static func remember(_ env: TestEnvironment, user: UserKey) throws -> Envelope {
        try Envelope.seal(
            try JSONEncoder().encode(RememberEvent(user: user, fact: rememberedFact, conversationID: nil, saidAt: Date())), tenant: "default",
            type: EventType.remember, receivedAt: Date(), cipher: KeyRing(master: env.masterKey).envelopeCipher)
    }

    /// What the local extractor makes of the fixture call: the memories one stored call leaves.
    static func fixtureMemoryCount() throws -> Int {
        LocalExtractor().extractNow(
            Conversation(try JSONDecoder().decode(PostCallWebhook.self, from: try fixtureTranscript()).data!, fallbackStart: Date())
        ).memories.count
    }

    @Test(
        "a batch with a poisoned and a failing event stores the others exactly once, in order, and dead-letters or retries only those two",
        arguments: Backend.available)
    func poisonedBatch(backend: Backend) async throws {
        let env = try await TestEnvironment.make(backend)
        var configuration = env.configuration()
        configuration.workerBatch = 16
        configuration.workerConcurrency = 2
        let runtime = try await buildWorker(configuration: configuration, extractor: SometimesFailingExtractor(), logger: testLogger)
        let queue = env.queue()
        let phones = ["+14155550101", "+14155550102"]
        let caller = try await runtime.userKey(phone: phones[0])
        // A body sealed with another master key: it can never be opened (a permanent failure).
        let poison = try Envelope.seal(
            try fixtureTranscript(phone: "+14155550109"), tenant: "default", type: EventType.postCallTranscription, receivedAt: Date(),
            cipher: KeyRing(master: MasterKey.generate()).envelopeCipher)
        let good = [
            try Self.postCall(env, phone: phones[0], conversationID: "conv_batch_a"),
            try Self.postCall(env, phone: phones[1], conversationID: "conv_batch_b"),
        ]
        let failing = try Self.postCall(env, phone: "+14155550103", conversationID: "conv_fail_c")
        // The same fact twice for one caller in one batch: the second must see the first's write.
        let remembers = [try Self.remember(env, user: caller), try Self.remember(env, user: caller)]
        for envelope in [good[0], poison, failing, remembers[0], good[1], remembers[1]] {
            #expect(try await queue.enqueue(envelope, dedupe: [], ttlSeconds: 60))
        }

        // All six waiting: one turn of the worker takes and finishes them as one batch.
        #expect(await runtime.processor.processNext(wait: .seconds(1)))
        #expect(try await queue.stats() == QueueStats(pending: 0, processing: 0, retry: 1, dead: 1))
        let dead = try await queue.deadLetters(limit: 10)
        #expect(dead.map(\.id) == [poison.id])
        #expect(dead.first?.errorClass == "DecryptionError")

        let store = runtime.vault.store
        for key in ["post_call_transcription:conv_batch_a", "post_call_transcription:conv_batch_b"] + remembers.map({ "event:\($0.id)" }) {
            #expect(try await store.isProcessed(tenant: "default", idempotencyKey: key), "\(key) recorded")
        }
        #expect(try await !store.isProcessed(tenant: "default", idempotencyKey: "post_call_transcription:conv_fail_c"))
        let perCall = try Self.fixtureMemoryCount()
        let first = try await runtime.vault.memories(tenant: "default", user: caller, includeHistory: true)
        #expect(first.filter { $0.content == Self.rememberedFact }.count == 1, "the second remember reinforced the first")
        #expect(first.count == perCall + 1)
        let second = try await runtime.vault.memories(tenant: "default", user: try await runtime.userKey(phone: phones[1]), includeHistory: true)
        #expect(second.count == perCall)

        // The same calls again (a redelivery, as after a crash before the ack): nothing stored twice.
        for envelope in [
            try Self.postCall(env, phone: phones[0], conversationID: "conv_batch_a"),
            try Self.postCall(env, phone: phones[1], conversationID: "conv_batch_b"),
        ] {
            #expect(try await queue.enqueue(envelope, dedupe: [], ttlSeconds: 60))
        }
        #expect(await runtime.processor.processNext(wait: .seconds(1)))
        #expect(try await queue.stats() == QueueStats(pending: 0, processing: 0, retry: 1, dead: 1))
        #expect(try await runtime.vault.memories(tenant: "default", user: caller, includeHistory: true).count == perCall + 1)
        await env.cleanUp()
    }

    @Test("a batch splits into lanes by caller: each caller's events in one lane, in queue order; unreadable events in the first")
    func lanesKeepEachCallerInOrder() async throws {
        let env = try TestEnvironment()
        var configuration = env.configuration()
        configuration.workerConcurrency = 3
        let runtime = try await buildWorker(configuration: configuration, logger: testLogger)
        _ = try await runtime.vault.tenant("default", create: true)
        let phones = ["+14155550121", "+14155550122", "+14155550123", "+14155550124"]
        var envelopes: [(caller: String?, envelope: Envelope)] = []
        for round in 0..<3 {
            for phone in phones {
                envelopes.append((phone, try Self.postCall(env, phone: phone, conversationID: "conv_lane_\(round)_\(phone)")))
            }
            envelopes.append((phones[1], try Self.remember(env, user: try await runtime.userKey(phone: phones[1]))))
            let unreadable = try Envelope.seal(
                try fixtureTranscript(phone: phones[2]), tenant: "default", type: EventType.postCallTranscription, receivedAt: Date(),
                cipher: KeyRing(master: MasterKey.generate()).envelopeCipher)
            envelopes.append((nil, unreadable))
        }
        let batch = try envelopes.map { TakenEvent(raw: try $0.envelope.encoded(), envelope: $0.envelope, decodeError: nil) }
        let processor = EventProcessor(
            queue: runtime.queue, ingestor: runtime.processor.ingestor, worker: configuration.workerID, maxAttempts: configuration.maxAttempts,
            retryBase: configuration.retryBase, retryMax: configuration.retryMax, logger: testLogger, batchLimit: 32, lanes: 3)
        let lanes = await processor.split(batch)
        #expect(lanes.count == 3)
        #expect(lanes.map(\.count).reduce(0, +) == batch.count)
        let callerOf = Dictionary(uniqueKeysWithValues: envelopes.map { ($0.envelope.id, $0.caller) })
        let order = Dictionary(uniqueKeysWithValues: envelopes.enumerated().map { ($1.envelope.id, $0) })
        var laneOfCaller: [String: Int] = [:]
        for (index, lane) in lanes.enumerated() {
            let positions = lane.compactMap { $0.envelope.flatMap { order[$0.id] } }
            #expect(positions == positions.sorted(), "queue order within a lane")
            for taken in lane {
                guard let id = taken.envelope?.id, let owner = callerOf[id] else { continue }
                guard let caller = owner else {
                    #expect(index == 0, "an unreadable event goes to the first lane")
                    continue
                }
                #expect(laneOfCaller[caller, default: index] == index, "one lane per caller")
                laneOfCaller[caller] = index
            }
        }
        #expect(laneOfCaller.count == phones.count)
        await env.cleanUp()
    }

    @Test("a worker process given SIGTERM mid-batch finishes the events it started, gives the others back to the queue in order, and exits 0")
    func sigtermMidBatch() async throws {
        let env = try TestEnvironment()
        try await withFakeOpenAI { server in
            // Each extraction takes a while, so SIGTERM lands while a batch is in flight.
            server.setDefault(.slow(.milliseconds(200)))
            let cipher = KeyRing(master: env.masterKey).envelopeCipher
            let queue = env.queue()
            var conversations: [String] = []
            for i in 0..<40 {
                let conversation = "conv_bterm_\(i)_\(UUID().uuidString.prefix(6))"
                let envelope = try Envelope.seal(
                    try fixtureTranscript(conversationID: conversation, phone: "+1415555\(String(format: "%04d", 2000 + i))"), tenant: "default",
                    type: EventType.postCallTranscription, receivedAt: Date(), cipher: cipher)
                #expect(try await queue.enqueue(envelope, dedupe: [], ttlSeconds: 60))
                conversations.append(conversation)
            }
            let workerID = "sigterm-batch-\(UUID().uuidString.prefix(6))"
            var environment = env.processEnvironment(httpPort: try freePort())
            environment["ENGRAM_WORKER_ID"] = workerID
            environment["ENGRAM_EXTRACTOR"] = "openai"
            environment["ENGRAM_EMBEDDER"] = "local"
            environment["OPENAI_API_KEY"] = "sk-test"
            environment["ENGRAM_LLM_BASE_URL"] = server.baseURL
            environment["ENGRAM_LLM_TIMEOUT_MS"] = "5000"
            environment["ENGRAM_WORKER_BATCH"] = "32"
            environment["ENGRAM_WORKER_CONCURRENCY"] = "2"
            let worker = try ServiceProcess("engram-worker", environment: environment, directory: env.directory)
            defer { worker.kill9() }

            let store = try await openSQLiteStore(path: env.databasePath)
            let redis = env.redisClient()
            let processingKey = RedisArgument(env.keys.processing(workerID))
            try await waitUntil(timeout: .seconds(60), "the worker is mid-batch after finishing a few") {
                guard try await ShutdownUnderLoadTests.processedCount(store) >= 2 else { return false }
                return try await redis.command("LLEN", processingKey).int ?? 0 > 1
            }
            let status = await worker.terminate(within: .seconds(30))
            #expect(status == 0, "worker exit status; log: \(worker.output.suffix(2000))")

            // Nothing stranded in its in-flight list, and its heartbeat is gone.
            #expect(try await redis.command("LLEN", processingKey).int == 0)
            #expect(try await redis.command("EXISTS", RedisArgument(env.keys.heartbeat(workerID))).int == 0)
            // Every event is either processed or back in the queue, never both, never neither.
            var processed: Set<String> = []
            for conversation in conversations {
                if try await store.isProcessed(tenant: "default", idempotencyKey: "post_call_transcription:\(conversation)") {
                    processed.insert(conversation)
                }
            }
            let pending = try await ShutdownUnderLoadTests.durableConversations(env)
            #expect(processed.isDisjoint(with: pending))
            #expect(processed.union(pending) == Set(conversations))
            #expect(processed.count < conversations.count, "SIGTERM came before the queue was empty")

            // A new worker takes the rest; each event is recorded exactly once.
            let runtime = try await buildWorker(configuration: env.configuration(), logger: testLogger)
            try await runtime.drain()
            #expect(try await ShutdownUnderLoadTests.processedCount(store) == conversations.count)
        }
        await env.cleanUp()
    }

    @Test("a batch stored but not acknowledged (Redis gone before the ack) comes back whole and is stored once", arguments: Backend.available)
    func lostBatchAck(backend: Backend) async throws {
        let env = try await TestEnvironment.make(backend)
        var configuration = env.configuration()
        configuration.workerBatch = 16
        let runtime = try await buildWorker(configuration: configuration, logger: testLogger)
        let redis = env.queue()
        let queue = OutageQueue(redis)
        let processor = EventProcessor(
            queue: queue, ingestor: runtime.processor.ingestor, worker: configuration.workerID, maxAttempts: configuration.maxAttempts,
            retryBase: configuration.retryBase, retryMax: configuration.retryMax, logger: testLogger, batchLimit: 16)
        try await redis.heartbeat(worker: configuration.workerID, ttl: .seconds(60))
        #expect(await !processor.processNext(wait: .milliseconds(50)))  // clears the start-up check on an empty queue

        let phones = ["+14155550111", "+14155550112", "+14155550113"]
        for (index, phone) in phones.enumerated() {
            #expect(try await redis.enqueue(try Self.postCall(env, phone: phone, conversationID: "conv_lost_\(index)"), dedupe: [], ttlSeconds: 60))
        }
        // Taken and stored as one batch; the acknowledgement cannot be written.
        queue.down = true
        #expect(await processor.processNext(wait: .seconds(1)))
        queue.down = false
        #expect(try await redis.stats() == QueueStats(pending: 0, processing: 3, retry: 0, dead: 0))

        // The next turn returns the batch to the queue and finds each event already processed.
        try await waitUntil("the stranded batch is finished") {
            _ = await processor.processNext(wait: .milliseconds(100))
            return try await redis.stats() == QueueStats(pending: 0, processing: 0, retry: 0, dead: 0)
        }
        let perCall = try Self.fixtureMemoryCount()
        for phone in phones {
            let memories = try await runtime.vault.memories(tenant: "default", user: try await runtime.userKey(phone: phone), includeHistory: true)
            #expect(memories.count == perCall, "stored once")
        }
        await env.cleanUp()
    }
}

@Suite("Group commit on SQLite", .timeLimit(.minutes(1)))
struct GroupCommitTests {
    @Test("writes under a group commit are flushed by one sync, and the connection keeps its synchronous level")
    func deferredThenSynced() async throws {
        let env = try TestEnvironment()
        let store = try await openSQLiteStore(path: env.databasePath)
        let level = { try await store.database.pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") } }
        let before = try await level()

        let group = GroupCommit()
        let recorded = try await GroupCommit.$current.withValue(group) {
            try await store.recordEvent(tenant: "t", idempotencyKey: "event:1", eventID: "1", eventType: "x", user: nil, at: Date())
        }
        #expect(recorded)
        #expect(group.hasUnsyncedWrites)
        #expect(try await level() == before, "the deferred write restored the connection's level")
        // Visible at once to other connections (committed), durable after the sync.
        #expect(try await store.isProcessed(tenant: "t", idempotencyKey: "event:1"))
        try await store.syncGroup(group)
        #expect(!group.hasUnsyncedWrites)

        // A write outside the group is durable at its own commit and leaves the group alone.
        #expect(try await store.recordEvent(tenant: "t", idempotencyKey: "event:2", eventID: "2", eventType: "x", user: nil, at: Date()))
        #expect(!group.hasUnsyncedWrites)
        #expect(try await level() == before)
        await store.close()
        await env.cleanUp()
    }
}

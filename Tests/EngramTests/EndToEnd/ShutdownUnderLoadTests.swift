import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

@testable import EngramCore
@testable import EngramQueue
@testable import EngramStore
@testable import Worker

#if canImport(Glibc)
    import Glibc
#endif

/// A value shared by concurrent tasks.
final class Locked<Value>: @unchecked Sendable {  // state only under `lock`
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) -> R) -> R { lock.withLock { body(&value) } }
}

/// SIGTERM to the real executables while they work: nothing acknowledged is lost, nothing
/// answers 5xx, and both exit 0.
@Suite("SIGTERM under load", .timeLimit(.minutes(3)))
struct ShutdownUnderLoadTests {
    /// What the senders saw.
    struct Tally {
        var accepted: [String] = []  // conversation ids answered 200
        var otherStatus: [Int] = []
        var connectionErrors = 0
    }

    /// The conversation id of every envelope in the pending list and the spool, decrypted.
    static func durableConversations(_ env: TestEnvironment) async throws -> Set<String> {
        let cipher = KeyRing(master: env.masterKey).envelopeCipher
        var envelopes: [Envelope] = []
        let reply = try await env.redisClient().command("LRANGE", RedisArgument(env.keys.events), "0", "-1")
        for item in reply.array ?? [] { if let data = item.data { envelopes.append(try Envelope.decode(data)) } }
        let spool = try Spool(directory: env.directory.appendingPathComponent("spool").path, logger: testLogger)
        try await spool.drain { envelopes.append($0.envelope) }
        return Set(try envelopes.map { try conversationID(of: $0.openBody(cipher: cipher)) })
    }

    static func conversationID(of body: Data) throws -> String {
        let object = try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])
        return try #require((object["data"] as? [String: Any])?["conversation_id"] as? String)
    }

    static func processedCount(_ store: SQLiteMemoryStore) async throws -> Int {
        try await store.database.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM processed_events") ?? 0 }
    }

    @Test(
        "the gateway process under a stream of signed webhooks stops on SIGTERM without a 5xx, and every event it answered 200 is in Redis or the spool"
    )
    func gatewayUnderLoad() async throws {
        let env = try TestEnvironment()
        let port = try freePort()
        let gateway = try ServiceProcess("engram-gateway", environment: env.processEnvironment(httpPort: port), directory: env.directory)
        defer { gateway.kill9() }
        try await waitForGatewayReady(port: port)

        let tally = Locked(Tally())
        let exited = Locked(false)
        let senders = (0..<8).map { sender in
            Task {
                var index = 0
                // Each sender keeps posting until the gateway has exited and it has seen it refuse.
                while true {
                    index += 1
                    let conversation = "conv_term_\(sender)_\(index)_\(UUID().uuidString.prefix(6))"
                    let body = try fixtureTranscript(conversationID: conversation)
                    var post = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/elevenlabs/post-call")
                    post.method = .POST
                    post.headers.add(name: "ElevenLabs-Signature", value: signedHeader(body, secret: env.webhookSecret))
                    post.headers.add(name: "Content-Type", value: "application/json")
                    post.body = .bytes(ByteBuffer(bytes: body))
                    do {
                        let response = try await HTTPClient.shared.execute(post, timeout: .seconds(5))
                        _ = try await response.body.collect(upTo: 64 * 1024)
                        tally.withLock {
                            response.status == .ok ? $0.accepted.append(conversation) : $0.otherStatus.append(Int(response.status.code))
                        }
                    } catch {
                        tally.withLock { $0.connectionErrors += 1 }
                        if exited.withLock({ $0 }) { return }
                        try await Task.sleep(for: .milliseconds(5))
                    }
                }
            }
        }
        // A count, not a rate: on a loaded machine the stream is slower, and that is not what this test is about.
        try await waitUntil(timeout: .seconds(120), "a steady stream is being acknowledged") { tally.withLock { $0.accepted.count } >= 60 }
        let status = await gateway.terminate(within: .seconds(20))
        exited.withLock { $0 = true }
        for sender in senders { try await sender.value }

        let seen = tally.withLock { $0 }
        #expect(status == 0, "gateway exit status; log: \(gateway.output.suffix(2000))")
        #expect(seen.otherStatus.filter { $0 >= 500 }.isEmpty, "5xx answers during shutdown: \(seen.otherStatus)")
        #expect(seen.otherStatus.isEmpty, "non-200 answers: \(seen.otherStatus)")
        #expect(seen.accepted.count >= 60)
        // Refused or cut connections after the listener closed are expected; each sender sees at least one.
        #expect(seen.connectionErrors >= senders.count)
        let durable = try await Self.durableConversations(env)
        let lost = Set(seen.accepted).subtracting(durable)
        #expect(lost.isEmpty, "\(lost.count) of \(seen.accepted.count) acknowledged events are neither in Redis nor in the spool")
        await env.cleanUp()
    }

    @Test("a worker process given SIGTERM mid-event finishes that event, leaves the rest queued, clears its heartbeat and exits 0")
    func workerMidBatch() async throws {
        let env = try TestEnvironment()
        try await withFakeOpenAI { server in
            // Each extraction takes a while, so SIGTERM lands while an event is in flight.
            server.setDefault(.slow(.milliseconds(200)))
            let cipher = KeyRing(master: env.masterKey).envelopeCipher
            let queue = env.queue()
            var conversations: [String] = []
            for i in 0..<20 {
                let conversation = "conv_wterm_\(i)_\(UUID().uuidString.prefix(6))"
                let envelope = try Envelope.seal(
                    try fixtureTranscript(conversationID: conversation), tenant: "default", type: EventType.postCallTranscription,
                    receivedAt: Date(), cipher: cipher)
                #expect(try await queue.enqueue(envelope, dedupe: [], ttlSeconds: 60))
                conversations.append(conversation)
            }
            let workerID = "sigterm-worker-\(UUID().uuidString.prefix(6))"
            var environment = env.processEnvironment(httpPort: try freePort())
            environment["ENGRAM_WORKER_ID"] = workerID
            environment["ENGRAM_EXTRACTOR"] = "openai"
            environment["ENGRAM_EMBEDDER"] = "local"
            environment["OPENAI_API_KEY"] = "sk-test"
            environment["ENGRAM_LLM_BASE_URL"] = server.baseURL
            environment["ENGRAM_LLM_TIMEOUT_MS"] = "5000"
            // One event at a time, so one is in flight at SIGTERM (batches: WorkerBatchTests).
            environment["ENGRAM_WORKER_BATCH"] = "1"
            let worker = try ServiceProcess("engram-worker", environment: environment, directory: env.directory)
            defer { worker.kill9() }

            let store = try await openSQLiteStore(path: env.databasePath)
            let redis = env.redisClient()
            let processingKey = RedisArgument(env.keys.processing(workerID))
            var inFlight: [Data] = []
            try await waitUntil(timeout: .seconds(30), "the worker is mid-event after finishing a few") {
                let processed = try await Self.processedCount(store)
                guard processed >= 3 else { return false }
                inFlight = (try await redis.command("LRANGE", processingKey, "0", "-1").array ?? []).compactMap(\.data)
                return inFlight.count == 1
            }
            let status = await worker.terminate(within: .seconds(20))
            #expect(status == 0, "worker exit status; log: \(worker.output.suffix(2000))")

            // Nothing stranded in its in-flight list, and its heartbeat is gone (no reaper delay).
            #expect(try await redis.command("LLEN", processingKey).int == 0)
            #expect(try await redis.command("EXISTS", RedisArgument(env.keys.heartbeat(workerID))).int == 0)
            // The event in flight at SIGTERM was finished, not abandoned.
            let interrupted = try Self.conversationID(of: try Envelope.decode(try #require(inFlight.first)).openBody(cipher: cipher))
            #expect(try await store.isProcessed(tenant: "default", idempotencyKey: "post_call_transcription:\(interrupted)"))
            // Every event is either processed or still pending, never both, never neither.
            var processed: Set<String> = []
            for conversation in conversations {
                if try await store.isProcessed(tenant: "default", idempotencyKey: "post_call_transcription:\(conversation)") {
                    processed.insert(conversation)
                }
            }
            let pending = try await Self.durableConversations(env)
            #expect(processed.isDisjoint(with: pending))
            #expect(processed.union(pending) == Set(conversations))
            #expect(processed.count < conversations.count, "SIGTERM came before the queue was empty")

            // A new worker takes the rest; each event is recorded exactly once.
            let runtime = try await buildWorker(configuration: env.configuration(), logger: testLogger)
            try await runtime.drain()
            #expect(try await Self.processedCount(store) == conversations.count)
        }
        await env.cleanUp()
    }
}

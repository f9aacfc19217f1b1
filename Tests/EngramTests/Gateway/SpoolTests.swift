import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramQueue
@testable import EngramStore
@testable import Gateway
@testable import Worker

@Suite("Redis outage: the local spool", .timeLimit(.minutes(3)))
struct SpoolTests {
    @Test("events arriving while Redis is down are answered 200, spooled, and stored once after it returns")
    func outage() async throws {
        let env = try TestEnvironment()
        let redis = try OwnRedis(directory: env.directory)
        try await redis.start()
        var configuration = env.configuration()
        configuration.redis = redis.endpoint
        configuration.redisTimeout = .milliseconds(300)
        let app = try await buildApplication(configuration: configuration, logger: testLogger)
        let worker = try await buildWorker(configuration: configuration, logger: testLogger)
        let bodies = try (0..<5).map { _ in try fixtureTranscript() }
        let spoolDirectory = configuration.spoolDirectory
        try await app.test(.router) { client in
            try await client.execute(
                uri: "/v1/elevenlabs/post-call", method: .post, headers: postCallHeaders(bodies[0], secret: env.webhookSecret),
                body: ByteBuffer(data: bodies[0])
            ) { #expect($0.status == .ok) }
            await redis.stop()
            for body in bodies[1...] + [bodies[1]] {  // the last one is a retry of an already-spooled event
                try await client.execute(
                    uri: "/v1/elevenlabs/post-call", method: .post, headers: postCallHeaders(body, secret: env.webhookSecret),
                    body: ByteBuffer(data: body)
                ) {
                    #expect($0.status == .ok)
                }
            }
            try await client.execute(uri: "/health/ready", method: .get) { response in
                #expect(response.status == .ok)  // still in rotation: the spool keeps events
                #expect(response.body.json["redis"] as? String == "unavailable")
                #expect(response.body.json["spool_depth"] as? String == "5")
            }
            try await redis.start()
            let drainer = SpoolDrainer(
                ingest: DurableIngest(
                    queue: env.queue(redis: redis.endpoint), spool: try Spool(directory: spoolDirectory, logger: testLogger), ttlSeconds: 60),
                logger: testLogger)
            await drainer.drainOnce()
        }
        try await worker.drain()
        let user = try await worker.userKey(phone: Fixtures.fixturePhone)
        let memories = try await worker.vault.memories(tenant: "default", user: user, includeHistory: true)
        let conversations = Set(memories.flatMap { $0.sources.compactMap(\.conversationID) })
        #expect(conversations.count == 5)
        let processed = try await (worker.vault.store as! SQLiteMemoryStore).database.pool.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM processed_events")
        }
        #expect(processed == 5)
        await redis.stop()
        await env.cleanUp()
    }

    @Test("a torn or corrupt spool tail is skipped with an error, and the records before it survive a restart")
    func corruptTail() async throws {
        let env = try TestEnvironment()
        let directory = env.directory.appendingPathComponent("spool").path
        let cipher = KeyRing(master: env.masterKey).envelopeCipher
        let spool = try Spool(directory: directory, logger: testLogger)
        for i in 0..<3 {
            let envelope = try Envelope.seal(Data("body \(i)".utf8), tenant: "default", type: "t", receivedAt: Date(), cipher: cipher)
            try spool.append(SpoolRecord(envelope: envelope, dedupe: ["d\(i)"], ttlSeconds: 60))
        }
        // A crash mid-write leaves half a frame.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: directory + "/spool.log"))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data([0, 0, 1, 0, 9, 9]))
        try handle.close()

        let reopened = try Spool(directory: directory, logger: testLogger)
        #expect(reopened.depth == 3)
        var seen: [[String]] = []
        let drained = try await reopened.drain { seen.append($0.dedupe) }
        #expect(drained == 3)
        #expect(seen == [["d0"], ["d1"], ["d2"]])
        #expect(reopened.depth == 0)
        // A drain that fails part-way resumes where it stopped.
        for i in 0..<2 {
            try reopened.append(
                SpoolRecord(
                    envelope: try Envelope.seal(Data(), tenant: "default", type: "t", receivedAt: Date(), cipher: cipher), dedupe: ["e\(i)"],
                    ttlSeconds: 60))
        }
        struct Down: Error {}
        _ = try? await reopened.drain { record in if record.dedupe == ["e1"] { throw Down() } }
        #expect(reopened.depth == 1)
        var rest: [[String]] = []
        try await Spool(directory: directory, logger: testLogger).drain { rest.append($0.dedupe) }
        #expect(rest == [["e1"]])
        await env.cleanUp()
    }
}

extension TestEnvironment {
    func queue(redis endpoint: RedisEndpoint) -> RedisEventQueue { RedisEventQueue(endpoint: endpoint, timeout: .seconds(2), keys: keys) }
}

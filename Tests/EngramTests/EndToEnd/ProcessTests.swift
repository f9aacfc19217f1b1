import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramStore

@Suite("The real executables", .timeLimit(.minutes(3)))
struct ProcessTests {
    @Test("gateway and worker started at the same instant on a new database both come up, store a signed call, and stop cleanly on SIGTERM")
    func startTogetherAndStop() async throws {
        let env = try TestEnvironment()
        let port = try freePort()
        let environment = env.processEnvironment(httpPort: port)
        let gateway = try ServiceProcess("engram-gateway", environment: environment, directory: env.directory)
        let worker = try ServiceProcess("engram-worker", environment: environment, directory: env.directory)
        defer {
            gateway.kill9()
            worker.kill9()
        }

        try await waitForGatewayReady(port: port)
        #expect(worker.process.isRunning, "worker log: \(worker.output)")
        try await postFixtureAndWaitForMemories(env, port: port)

        #expect(await gateway.terminate() == 0)
        #expect(await worker.terminate() == 0)
        // Logs never carry the caller's number or what was said.
        for log in [gateway.output, worker.output] {
            #expect(!log.contains("2523960448"))
            #expect(!log.contains("Friday slot"))
            #expect(!log.contains(env.webhookSecret) && !log.contains(env.apiKey))
        }
        await env.cleanUp()
    }

    @Test(
        "three worker processes on one queue and one PostgreSQL: every event stored exactly once, through a kill -9 and duplicate deliveries",
        .enabled(if: TestPostgres.serverURL != nil, "needs ENGRAM_TEST_POSTGRES_URL (make test starts one)"))
    func threeWorkersExactlyOnce() async throws {
        let env = try await TestEnvironment.make(.postgres)
        let queue = env.queue()
        let cipher = KeyRing(master: env.masterKey).envelopeCipher
        // 40 callers, one call each; every call is delivered twice past the dedupe marks, so two
        // workers may hold copies of the same event at once and only the database can tell.
        let phones = (0..<40).map { String(format: "+1415555%04d", $0) }
        var expected: [String: Int] = [:]
        for phone in phones {
            let body = try fixtureTranscript(phone: phone)
            let webhook = try JSONDecoder().decode(PostCallWebhook.self, from: body)
            expected[phone] = LocalExtractor().extractNow(Conversation(webhook.data!, fallbackStart: Date())).memories.count
            for _ in 0..<2 {
                let envelope = try Envelope.seal(body, tenant: "default", type: EventType.postCallTranscription, receivedAt: Date(), cipher: cipher)
                #expect(try await queue.enqueue(envelope, dedupe: [], ttlSeconds: 60))
            }
        }

        let environment = env.processEnvironment(httpPort: 0)
        // Each worker process has a metrics port of its own.
        func startWorker() throws -> ServiceProcess {
            var own = environment
            own["ENGRAM_METRICS_PORT"] = String(try freePort())
            return try ServiceProcess("engram-worker", environment: own, directory: env.directory)
        }
        var workers = try (0..<3).map { _ in try startWorker() }
        defer { for worker in workers { worker.kill9() } }

        let store = try #require(try await env.openStore() as? PostgresMemoryStore)
        func processedCount() async throws -> Int {
            let rows = try await store.client.query("SELECT count(*) FROM processed_events")
            for try await (count) in rows.decode(Int.self) { return count }
            return 0
        }
        // One worker dies mid-stream; its heartbeat lapses and the reaper hands its event to another.
        try await waitUntil(timeout: .seconds(60), "the first events processed") { try await processedCount() >= 5 }
        workers[0].kill9()
        workers.append(try startWorker())

        try await waitUntil(timeout: .seconds(90), "all events processed") {
            let stats = try await queue.stats()
            return try await processedCount() == phones.count && stats.pending == 0 && stats.processing == 0 && stats.retry == 0
        }
        #expect(try await queue.stats().dead == 0)

        let vault = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder())
        let users = try #require(try await vault.tenant("default")).userKeys
        for phone in phones {
            let memories = try await vault.memories(tenant: "default", user: users.key(for: .phone(phone)), includeHistory: true)
            #expect(memories.count == expected[phone], "memories of caller \(phone)")
        }
        for worker in workers.dropFirst() { #expect(await worker.terminate() == 0, "worker log: \(worker.output)") }
        await store.close()
        await env.cleanUp()
    }
}

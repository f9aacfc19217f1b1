import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramQueue
@testable import EngramStore

/// Issue 11 with the real executables: a signed call carrying one number that does not fit an
/// integer killed every worker that took it (SIGILL), and nothing else was stored.
@Suite("Poison events against the real executables", .timeLimit(.minutes(3)))
struct PoisonProcessTests {
    func post(_ body: Data, env: TestEnvironment, port: Int) async throws -> UInt {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/elevenlabs/post-call")
        request.method = .POST
        request.headers.add(name: "ElevenLabs-Signature", value: signedHeader(body, secret: env.webhookSecret))
        request.body = .bytes(ByteBuffer(bytes: body))
        return try await HTTPClient.shared.execute(request, timeout: .seconds(5)).status.code
    }

    @Test("the five poison calls of issue 11, then a normal call for another caller: the same worker process stores the normal call")
    func poisonThenNormal() async throws {
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
        let pid = worker.process.processIdentifier

        for variant in PoisonPayloads.variants {
            let body = try fixtureTranscript(mutate: variant.mutate)
            #expect(try await post(body, env: env, port: port) == 200, "\(variant.name)")
        }
        let other = "+14155550199"
        #expect(try await post(try fixtureTranscript(phone: other), env: env, port: port) == 200)

        let vault = MemoryVault(
            store: try await openSQLiteStore(path: env.databasePath), keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder())
        try await waitUntil(timeout: .seconds(60), "the normal call stored by the worker process") {
            guard let tenant = try await vault.tenant("default") else { return false }
            return try await !vault.memories(tenant: "default", user: tenant.userKeys.key(for: .phone(other))).isEmpty
        }
        #expect(worker.process.isRunning, "worker log: \(worker.output.suffix(2000))")
        #expect(worker.process.processIdentifier == pid)
        // Every poison call was handled as an event (stored, or recorded without a caller), none dead-lettered.
        let queue = env.queue()
        try await waitUntil(timeout: .seconds(30), "the queue drained") {
            let stats = try await queue.stats()
            return stats.pending == 0 && stats.processing == 0 && stats.retry == 0
        }
        #expect(try await queue.stats().dead == 0)
        let tenant = try #require(try await vault.tenant("default"))
        #expect(try await !vault.memories(tenant: "default", user: tenant.userKeys.key(for: .phone(Fixtures.fixturePhone))).isEmpty)
        #expect(!worker.output.contains("2523960448"))
        #expect(await worker.terminate() == 0)
        #expect(await gateway.terminate() == 0)
        await env.cleanUp()
    }

    @Test(
        "an event whose worker died on each of its ENGRAM_MAX_ATTEMPTS takes ends in the dead letters as worker_died: counted, and listed by `engram queue dead list`"
    )
    func workerDiedDeadLetter() async throws {
        let env = try TestEnvironment()
        let queue = env.queue()
        let maxAttempts = 3
        let envelope = try Envelope.seal(
            try fixtureTranscript(), tenant: "default", type: EventType.postCallTranscription, receivedAt: Date(),
            cipher: KeyRing(master: env.masterKey).envelopeCipher)
        #expect(try await queue.enqueue(envelope, dedupe: [], ttlSeconds: 60))
        // Taken by workers that die holding it (no heartbeat): each return is a death.
        for death in 0..<(maxAttempts - 1) {
            let taken = try #require(try await queue.take(worker: "doomed-\(death)", timeout: .seconds(1)))
            #expect((taken.envelope?.deaths ?? 0) == death)
            #expect(try await queue.reap(maxAttempts: maxAttempts) == InFlightReturn(requeued: 1))
        }
        // The last take: its worker dies too, and a real worker process's reaper finds it.
        let last = try #require(try await queue.take(worker: "doomed-last", timeout: .seconds(1)))
        #expect(last.envelope?.deaths == maxAttempts - 1)

        var environment = env.processEnvironment(httpPort: 0)
        environment["ENGRAM_MAX_ATTEMPTS"] = String(maxAttempts)
        environment["ENGRAM_REAPER_INTERVAL_MS"] = "100"
        let metricsPort = try #require(environment["ENGRAM_METRICS_PORT"].flatMap { Int($0) })
        let worker = try ServiceProcess("engram-worker", environment: environment, directory: env.directory)
        defer { worker.kill9() }
        try await waitUntil(timeout: .seconds(30), "the reaper dead-letters the event") { try await queue.stats().dead == 1 }
        let stats = try await queue.stats()
        #expect(stats.pending == 0 && stats.processing == 0)
        let letter = try #require(try await queue.deadLetters(limit: 10).first)
        #expect(letter.id == envelope.id)
        #expect(letter.errorClass == "worker_died")
        #expect(letter.worker == "doomed-last")

        try await waitUntil(timeout: .seconds(10), "the worker_died counter is exported") {
            let request = HTTPClientRequest(url: "http://127.0.0.1:\(metricsPort)/metrics")
            guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(2)), response.status == .ok else { return false }
            let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
            return text.contains(#"engram_events_dead_lettered_total{reason="worker_died"} 1"#)
        }

        var cli = environment
        cli["ENGRAM_HTTP_PORT"] = nil
        let list = try await runEngram(["queue", "dead", "list"], environment: cli, directory: env.directory)
        #expect(list.status == 0, "\(list.stderr)")
        #expect(list.stdout.contains(envelope.id) && list.stdout.contains("worker_died"), "\(list.stdout)")
        #expect(await worker.terminate() == 0)
        await env.cleanUp()
    }

}

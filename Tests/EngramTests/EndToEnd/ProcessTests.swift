import AsyncHTTPClient
import Foundation
import NIOCore
import Testing
@testable import Shared

@Suite("The real executables")
struct ProcessTests {
    @Test("gateway and worker started at the same instant on a new database both come up, store a signed call, and stop cleanly on SIGTERM")
    func startTogetherAndStop() async throws {
        let env = try TestEnvironment()
        let port = try freePort()
        let environment = env.processEnvironment(httpPort: port)
        let gateway = try ServiceProcess("engram-gateway", environment: environment, directory: env.directory)
        let worker = try ServiceProcess("engram-worker", environment: environment, directory: env.directory)
        defer { gateway.kill9(); worker.kill9() }

        try await waitUntil(timeout: .seconds(30), "gateway ready") {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/health/ready")
            request.method = .GET
            guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(2)) else { return false }
            return response.status == .ok
        }
        #expect(worker.process.isRunning, "worker log: \(worker.output)")

        let body = try fixtureTranscript()
        var post = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/elevenlabs/post-call")
        post.method = .POST
        post.headers.add(name: "ElevenLabs-Signature", value: signedHeader(body, secret: env.webhookSecret))
        post.body = .bytes(ByteBuffer(bytes: body))
        let response = try await HTTPClient.shared.execute(post, timeout: .seconds(5))
        #expect(response.status == .ok)

        let store = try SQLiteMemoryStore(path: env.databasePath)
        let vault = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder())
        let user = try #require(try await vault.tenant("default")).userKeys.key(for: .phone(Fixtures.fixturePhone))
        try await waitUntil(timeout: .seconds(20), "memories stored by the worker process") {
            try await !vault.memories(tenant: "default", user: user).isEmpty
        }

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
}

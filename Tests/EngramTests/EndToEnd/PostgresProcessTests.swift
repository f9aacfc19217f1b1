import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The deployment of issue 11 §2, whole: the real engram-gateway and engram-worker on PostgreSQL,
/// the signed fixture over HTTP, and the operator's `engram memories list` reading it back.
@Suite(
    "The real executables on PostgreSQL", .enabled(if: TestPostgres.serverURL != nil, "needs ENGRAM_TEST_POSTGRES_URL (make test starts one)"),
    .timeLimit(.minutes(2)))
struct PostgresProcessTests {
    @Test("gateway and worker started together on a new PostgreSQL database store the signed fixture; `engram memories list` shows it")
    func fixtureOverHTTPToCLI() async throws {
        let env = try await TestEnvironment.make(.postgres)
        let port = try freePort()
        let environment = env.processEnvironment(httpPort: port)
        let gateway = try ServiceProcess("engram-gateway", environment: environment, directory: env.directory)
        let worker = try ServiceProcess("engram-worker", environment: environment, directory: env.directory)
        defer {
            gateway.kill9()
            worker.kill9()
        }

        try await waitForGatewayReady(port: port)
        let body = try fixtureTranscript()
        var post = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/elevenlabs/post-call")
        post.method = .POST
        post.headers.add(name: "ElevenLabs-Signature", value: signedHeader(body, secret: env.webhookSecret))
        post.body = .bytes(ByteBuffer(bytes: body))
        #expect(try await HTTPClient.shared.execute(post, timeout: .seconds(10)).status == .ok)

        // The operator's view, through the real CLI on the same database and master key.
        var listed: [[String: Any]] = []
        try await waitUntil(timeout: .seconds(45), "memories listed by `engram memories list`; worker log: \(worker.output)") {
            let run = try await runEngram(
                ["memories", "list", "--user", Fixtures.fixturePhone, "--json"], environment: environment, directory: env.directory,
                timeout: .seconds(20))
            guard run.status == 0, let rows = try? JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [[String: Any]] else { return false }
            listed = rows
            return !rows.isEmpty
        }
        #expect(listed.contains { ($0["content"] as? String)?.contains("Friday") == true })
        #expect(listed.allSatisfy { ($0["conversation_ids"] as? [String])?.count == 1 })
        #expect(worker.output.contains("event processed"))

        #expect(await gateway.terminate() == 0, "gateway log: \(gateway.output)")
        #expect(await worker.terminate() == 0, "worker log: \(worker.output)")
        for log in [gateway.output, worker.output] {
            #expect(!log.contains("2523960448"))
            #expect(!log.contains("Friday slot"))
            #expect(!log.contains(env.webhookSecret) && !log.contains(env.apiKey))
        }
        await env.cleanUp()
    }
}

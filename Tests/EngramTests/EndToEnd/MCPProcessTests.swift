import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramStore

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 15's "done when", whole, with the real engram-gateway and engram-worker executables on
/// real Redis and a real store: the pre-call answer names the caller for the custom LLM, a streamed
/// turn reaches the (local, fake) upstream with the Friday slot in a system message and comes
/// back intact, and the official Python MCP client (PyPI `mcp`, in .venv-mcp) lists the tools
/// at /mcp, finds the Friday slot with search_memory and runs every other tool. On SQLite and,
/// when the test setup has one, PostgreSQL.
/// (LLMProxyTests covers the proxy in process in more detail.)
@Suite("Voice-native memory through the real executables", .timeLimit(.minutes(3)))
struct MCPProcessTests {
    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    /// The virtual environment's python with `mcp` installed (scripts/test.sh makes .venv-mcp).
    static func python() throws -> String {
        if let path = ProcessInfo.processInfo.environment["ENGRAM_TEST_MCP_PYTHON"] { return path }
        let local = packageRoot.appendingPathComponent(".venv-mcp/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: local) else {
            Issue.record("no Python MCP client: run the tests with `make test`, which installs PyPI `mcp` into .venv-mcp")
            throw TestSetupError.timeout("no .venv-mcp")
        }
        return local
    }

    /// Runs scripts/mcp_client.py to its exit (at most `timeout`): status, stdout, stderr.
    static func runClient(_ arguments: [String], key: String, directory: URL, timeout: Duration = .seconds(90)) async throws -> CLIRun {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("ENGRAM_") }
        environment["ENGRAM_MCP_KEY"] = key
        return try await runToExit(
            try python(), [packageRoot.appendingPathComponent("scripts/mcp_client.py").path] + arguments, environment: environment,
            directory: directory, timeout: timeout, label: "mcp_client.py \(arguments.first ?? "")")
    }

    @Test(
        "the issue's done-when: pre-call names the caller, a streamed turn reaches the upstream with the Friday slot, an MCP client finds it at /mcp",
        .timeLimit(.minutes(2)), arguments: Backend.available)
    func doneWhen(backend: Backend) async throws {
        let env = try await TestEnvironment.make(backend)
        let upstream = try await FakeStreamingUpstream.start()
        let port = try freePort()
        var environment = env.processEnvironment(httpPort: port)
        environment["ENGRAM_LLM_UPSTREAM_URL"] = upstream.baseURL
        environment["ENGRAM_LLM_UPSTREAM_KEY"] = "sk-upstream-e2e"
        // Two busy cores run the whole suite: the first turn's retrieval may take its time here.
        environment["ENGRAM_LLM_MEMORY_DEADLINE_MS"] = "30000"
        let gateway = try ServiceProcess("engram-gateway", environment: environment, directory: env.directory)
        let worker = try ServiceProcess("engram-worker", environment: environment, directory: env.directory)
        defer {
            gateway.kill9()
            worker.kill9()
        }
        try await waitForGatewayReady(port: port)
        try await postFixtureAndWaitForMemories(env, port: port)

        // 1. The pre-call answer for +12523960448 carries custom_llm_extra_body.engram_user.
        var precall = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/elevenlabs/conversation-init")
        precall.method = .POST
        precall.headers.add(name: "Authorization", value: "Bearer \(env.apiKey)")
        precall.headers.add(name: "Content-Type", value: "application/json")
        precall.body = .bytes(
            ByteBuffer(
                data: try JSONSerialization.data(withJSONObject: [
                    "caller_id": Fixtures.fixturePhone, "agent_id": "agent_1", "called_number": "+12018774358", "call_sid": "CA1",
                ])))
        let precallAnswer = try await HTTPClient.shared.execute(precall, timeout: .seconds(30)).body.collect(upTo: 1 << 20).json
        let engramUser = try #require((precallAnswer["custom_llm_extra_body"] as? [String: Any])?["engram_user"] as? String)

        // 2. A streamed turn with that value reaches the upstream with the Friday slot, and streams back intact.
        let chunks = (0..<4).map { FakeStreamingUpstream.event("part\($0)", index: $0) }
        upstream.enqueue(.stream(chunks))
        var turn = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/llm/chat/completions")
        turn.method = .POST
        turn.headers.add(name: "Authorization", value: "Bearer \(env.apiKey)")
        turn.headers.add(name: "Content-Type", value: "application/json")
        turn.body = .bytes(
            ByteBuffer(
                data: try JSONSerialization.data(
                    withJSONObject: [
                        "model": "gpt-4o-mini", "stream": true,
                        "messages": [
                            ["role": "system", "content": "You are the dental office's receptionist."],
                            ["role": "user", "content": "When is my cleaning appointment?"],
                        ],
                        "elevenlabs_extra_body": ["engram_user": engramUser],
                    ] as [String: Any])))
        let streamed = try await HTTPClient.shared.execute(turn, timeout: .seconds(60))
        #expect(streamed.status == .ok)
        #expect(streamed.headers.first(name: "Engram-Memory") == "injected")
        #expect(String(buffer: try await streamed.body.collect(upTo: 1 << 20)) == chunks.joined() + FakeStreamingUpstream.done)
        let received = try #require(upstream.requests.last)
        #expect(received.systemContents.last?.contains("Friday") == true)
        #expect(received.json["elevenlabs_extra_body"] == nil)

        // 3. The MCP client lists search_memory at /mcp and finds the Friday slot, then runs every tool.
        let check = try await Self.runClient(
            ["check", "--url", "http://127.0.0.1:\(port)/mcp", "--caller", Fixtures.fixturePhone], key: env.apiKey, directory: env.directory)
        #expect(check.status == 0, "mcp_client.py: \(check.stderr.suffix(2_000))")
        let seen = try #require(try JSONSerialization.jsonObject(with: Data(check.stdout.utf8)) as? [String: Any], "stdout: \(check.stdout)")
        #expect((seen["tools"] as? [String])?.contains("search_memory") == true)
        #expect((seen["search_text"] as? String)?.contains("Friday") == true)
        #expect(seen["reconnected"] as? Bool == true)
        // The client's default negotiation (a `server/discover` probe first) falls back to the handshake.
        #expect(seen["protocol_version"] as? String == "2025-11-25")

        // Without the key, the MCP client is turned away.
        let refused = try await Self.runClient(["check", "--url", "http://127.0.0.1:\(port)/mcp"], key: "ek_wrong", directory: env.directory)
        #expect(refused.status != 0)

        #expect(await gateway.terminate() == 0)
        #expect(await worker.terminate() == 0)
        // Neither the caller's number nor what was said reaches the logs on any of these paths.
        for log in [gateway.output, worker.output] {
            #expect(!log.contains("2523960448"))
            #expect(!log.contains("Friday"))
            #expect(!log.contains(env.apiKey))
        }
        await upstream.stop()
        await env.cleanUp()
    }
}

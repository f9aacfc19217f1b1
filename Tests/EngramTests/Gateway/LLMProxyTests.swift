import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramObservability
@testable import EngramStore
@testable import Gateway
@testable import Worker

/// The custom-LLM proxy (`POST /v1/llm/chat/completions`) through the real gateway on a real
/// socket, in front of a local streaming upstream.
@Suite("Custom-LLM proxy", .timeLimit(.minutes(3)))
struct LLMProxyTests {
    static let upstreamKey = "sk-upstream-test"

    /// A live gateway whose upstream is `fake`; with `ingest`, the signed fixture is stored first.
    func withProxy(
        ingest: Bool = false, store: (@Sendable (TestEnvironment) async throws -> any MemoryStore)? = nil,
        configure: (inout EngramConfiguration) -> Void = { _ in },
        _ body: @Sendable (_ port: Int, TestEnvironment, FakeStreamingUpstream) async throws -> Void
    ) async throws {
        let env = try await TestEnvironment.make(.sqlite)
        let fake = try await FakeStreamingUpstream.start()
        var configuration = env.configuration()
        configuration.llmUpstreamURL = fake.baseURL
        configuration.llmUpstreamKey = Self.upstreamKey
        // Tests share two busy cores: the memory deadline's own test sets a short one.
        configuration.llmMemoryDeadline = .seconds(60)
        configuration.llmUpstreamTimeout = .seconds(60)
        configure(&configuration)
        let worker = ingest ? try await buildWorker(configuration: configuration, logger: testLogger) : nil
        let app = try await buildApplication(configuration: configuration, store: try await store?(env), logger: testLogger)
        do {
            try await app.test(.live) { client in
                let port = try #require(client.port)
                if let worker {
                    let data = try fixtureTranscript()
                    try await client.execute(
                        uri: "/v1/elevenlabs/post-call", method: .post, headers: postCallHeaders(data, secret: env.webhookSecret),
                        body: ByteBuffer(data: data)
                    ) {
                        #expect($0.status == .ok)
                    }
                    try await worker.drain()
                }
                try await body(port, env, fake)
            }
        } catch {
            await fake.stop()
            await env.cleanUp()
            throw error
        }
        await fake.stop()
        await env.cleanUp()
    }

    /// A chat-completions request as ElevenLabs sends it: its prompt, its first message, the caller's words.
    func chatBody(_ question: String, engramUser: String? = nil, stream: Bool = true, earlier: [[String: Any]] = []) -> [String: Any] {
        var body: [String: Any] = [
            "model": "gpt-4o-mini", "stream": stream, "temperature": 0.5, "max_tokens": 300,
            "tools": [["type": "function", "function": ["name": "end_call", "parameters": ["type": "object", "properties": [String: Any]()]]]],
            "x_unknown_field": ["kept": true, "n": 3],
            "messages": [
                ["role": "system", "content": "You are the dental office's receptionist."],
                ["role": "assistant", "content": "Hello, how can I help?"],
            ] + earlier + [["role": "user", "content": question]],
        ]
        if let engramUser { body["elevenlabs_extra_body"] = ["engram_user": engramUser, "other": "x"] }
        return body
    }

    func request(_ port: Int, _ body: [String: Any], key: String?) throws -> HTTPClientRequest {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/llm/chat/completions")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let key { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        request.body = .bytes(ByteBuffer(data: try JSONSerialization.data(withJSONObject: body)))
        return request
    }

    /// Sends and reads the whole answer: status, headers, body text.
    func send(_ port: Int, _ body: [String: Any], key: String?) async throws -> (status: Int, headers: HTTPHeadersView, text: String) {
        let response = try await HTTPClient.shared.execute(try request(port, body, key: key), timeout: .seconds(120))
        let bytes = try await response.body.collect(upTo: 4 * 1024 * 1024)
        return (Int(response.status.code), HTTPHeadersView(fields: response.headers.map { ($0.name, $0.value) }), String(buffer: bytes))
    }

    struct HTTPHeadersView: Sendable {
        let fields: [(String, String)]
        func first(_ name: String) -> String? { fields.first { $0.0.lowercased() == name.lowercased() }?.1 }
    }

    /// Polls `condition` until it holds or `seconds` pass.
    func eventually(_ seconds: Double = 30, _ condition: () -> Bool) async throws -> Bool {
        let end = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < end {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return condition()
    }

    @Test(
        "the issue's scenario: the pre-call answer names the caller, and 'When is my cleaning appointment?' reaches the upstream with the Friday slot",
        .timeLimit(.minutes(1)))
    func scenario() async throws {
        try await withProxy(ingest: true) { port, env, fake in
            // The pre-call answer carries the caller's key for the custom LLM.
            var precall = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/elevenlabs/conversation-init")
            precall.method = .POST
            precall.headers.add(name: "Authorization", value: "Bearer \(env.apiKey)")
            precall.headers.add(name: "Content-Type", value: "application/json")
            precall.body = .bytes(
                ByteBuffer(
                    data: try JSONSerialization.data(withJSONObject: [
                        "caller_id": Fixtures.fixturePhone, "agent_id": "agent_1", "called_number": "+12018774358", "call_sid": "CA1",
                    ])))
            let precallResponse = try await HTTPClient.shared.execute(precall, timeout: .seconds(60))
            let answer = try await precallResponse.body.collect(upTo: 1 << 20).json
            let engramUser = try #require((answer["custom_llm_extra_body"] as? [String: Any])?["engram_user"] as? String)
            #expect(engramUser.hasPrefix("u_"))
            #expect(engramUser == answer["user_id"] as? String)

            let chunks = (0..<5).map { FakeStreamingUpstream.event("part\($0)", index: $0) }
            fake.enqueue(.stream(chunks))
            let (status, headers, text) = try await send(port, chatBody("When is my cleaning appointment?", engramUser: engramUser), key: env.apiKey)
            #expect(status == 200)
            #expect(headers.first("Engram-Memory") == "injected")
            #expect(headers.first("Content-Type") == "text/event-stream")
            #expect(text == chunks.joined() + FakeStreamingUpstream.done)

            let received = try #require(fake.requests.last)
            #expect(received.authorization == "Bearer \(Self.upstreamKey)")
            #expect(received.json["elevenlabs_extra_body"] == nil)
            #expect(!String(decoding: received.body, as: UTF8.self).contains("engram_user"))
            let systems = received.systemContents
            #expect(systems.count == 2)
            #expect(systems.first == "You are the dental office's receptionist.")
            #expect(systems.last?.contains("Friday") == true)
            // Everything else as the agent sent it.
            #expect(received.json["model"] as? String == "gpt-4o-mini")
            #expect(received.json["temperature"] as? Double == 0.5)
            #expect(received.json["stream"] as? Bool == true)
            #expect(received.json["max_tokens"] as? Int == 300)
            #expect((received.json["tools"] as? [[String: Any]])?.count == 1)
            #expect((received.json["x_unknown_field"] as? [String: Any])?["kept"] as? Bool == true)
            #expect(received.messages.last?["content"] as? String == "When is my cleaning appointment?")
            #expect(received.messages.count == 4)

            // A later turn whose conversation already holds every memory gets none of them again.
            let injected = try #require(systems.last)
            let earlier: [[String: Any]] = [
                ["role": "user", "content": "When is my cleaning appointment?"], ["role": "assistant", "content": injected],
            ]
            fake.enqueue(.stream(chunks))
            let (_, again, _) = try await send(
                port, chatBody("When is my cleaning appointment?", engramUser: engramUser, earlier: earlier), key: env.apiKey)
            let second = try #require(fake.requests.last)
            if again.first("Engram-Memory") == "injected" {
                let added = try #require(second.systemContents.last)
                let lines = added.split(separator: "\n").dropFirst().map { String($0.dropFirst(2)) }
                for line in lines { #expect(!injected.contains(line)) }
            } else {
                #expect(again.first("Engram-Memory") == "empty")
                #expect(second.systemContents.count == 1)
            }
        }
    }

    @Test("an unknown caller or none gets no memory, and elevenlabs_extra_body is never forwarded", .timeLimit(.minutes(1)))
    func unknownCaller() async throws {
        try await withProxy(ingest: true) { port, env, fake in
            let unknown = "+14155550123"
            fake.enqueue(.stream([FakeStreamingUpstream.event("hi", index: 0)]))
            let (status, headers, _) = try await send(port, chatBody("When is my cleaning appointment?", engramUser: unknown), key: env.apiKey)
            #expect(status == 200)
            #expect(headers.first("Engram-Memory") == "empty")
            #expect(fake.requests.last?.systemContents.count == 1)
            #expect(fake.requests.last?.json["elevenlabs_extra_body"] == nil)

            // No engram_user at all: passed through, said so; a non-streamed answer comes back as is.
            fake.enqueue(.json("{\"id\":\"x\",\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"plain\"}}]}"))
            var body = chatBody("When is my cleaning appointment?", stream: false)
            body["elevenlabs_extra_body"] = ["something_else": 1]
            let (plainStatus, plainHeaders, plainText) = try await send(port, body, key: env.apiKey)
            #expect(plainStatus == 200)
            #expect(plainHeaders.first("Engram-Memory") == "none")
            #expect(plainText.contains("\"plain\""))
            #expect(fake.requests.last?.json["elevenlabs_extra_body"] == nil)
            #expect(fake.requests.last?.systemContents.count == 1)

            // Strange engram_user values are no caller, never a crash or a 5xx.
            for odd in ["", "u_", String(repeating: "9", count: 5000), "ext:", "\u{0}"] {
                let (oddStatus, oddHeaders, _) = try await send(port, chatBody("hi", engramUser: odd), key: env.apiKey)
                #expect(oddStatus == 200)
                #expect(["none", "empty"].contains(oddHeaders.first("Engram-Memory") ?? ""))
            }
        }
    }

    @Test("chunks are relayed in order, the first before the upstream has finished", .timeLimit(.minutes(1)))
    func streamsAsItArrives() async throws {
        try await withProxy { port, env, fake in
            let chunks = (0..<4).map { FakeStreamingUpstream.event("c\($0)", index: $0) }
            fake.enqueue(.stream(chunks, holdAfterFirst: true))
            let response = try await HTTPClient.shared.execute(try request(port, chatBody("hello"), key: env.apiKey), timeout: .seconds(120))
            #expect(response.status == .ok)
            var iterator = response.body.makeAsyncIterator()
            var received = ""
            // The upstream holds everything after its first chunk: what arrives now was relayed at once.
            while !received.contains("c0") {
                guard let chunk = try await iterator.next() else { break }
                received += String(buffer: chunk)
            }
            #expect(received == chunks[0])
            #expect(fake.streamsFinished == 0)
            fake.release()
            while let chunk = try await iterator.next() { received += String(buffer: chunk) }
            #expect(received == chunks.joined() + FakeStreamingUpstream.done)
            #expect(fake.streamsFinished == 1)
        }
    }

    @Test("a client that goes away cancels the upstream request", .timeLimit(.minutes(1)))
    func disconnectCancelsUpstream() async throws {
        try await withProxy { port, env, fake in
            fake.enqueue(.trickle(interval: .milliseconds(20)))
            let reading = Task {
                let response = try await HTTPClient.shared.execute(try request(port, chatBody("hello"), key: env.apiKey), timeout: .seconds(120))
                for try await _ in response.body {}
            }
            let streaming = try await eventually { fake.chunksWritten >= 3 }
            #expect(streaming)
            reading.cancel()
            _ = try? await reading.value
            let cancelled = try await eventually(40) { fake.readersGone == 1 }
            #expect(cancelled)
            #expect(fake.streamsFinished == 0)
        }
    }

    @Test("no key or a wrong one gets 401 and nothing reaches the upstream", .timeLimit(.minutes(1)))
    func unauthorized() async throws {
        try await withProxy { port, env, fake in
            for key in [nil, "wrong", env.adminKey] as [String?] {
                let (status, _, _) = try await send(port, chatBody("hello"), key: key)
                #expect(status == 401)
            }
            #expect(fake.requests.isEmpty)
        }
    }

    @Test("an upstream 429 or 500 comes back with its status and Retry-After; a hung one is cut at the timeout", .timeLimit(.minutes(1)))
    func upstreamFailures() async throws {
        // Long enough that an upstream answering at once is never cut on a loaded machine (at 500 ms
        // a full run saw the 500 come back as a 504), short enough for the hung one.
        try await withProxy(configure: { $0.llmUpstreamTimeout = .seconds(3) }) { port, env, fake in
            fake.enqueue(.status(429, retryAfter: "7"), .status(500), .status(401), .hang)
            let (limited, limitedHeaders, limitedText) = try await send(port, chatBody("hello"), key: env.apiKey)
            #expect(limited == 429)
            #expect(limitedHeaders.first("Retry-After") == "7")
            #expect(limitedText.contains("fake 429"))
            let (failed, _, _) = try await send(port, chatBody("hello"), key: env.apiKey)
            #expect(failed == 500)
            // The upstream refusing Engram's key is not the agent's key being wrong.
            let (refused, _, _) = try await send(port, chatBody("hello"), key: env.apiKey)
            #expect(refused == 502)
            let (hung, _, _) = try await send(port, chatBody("hello"), key: env.apiKey)
            #expect(hung == 504)
            // Bad input is a 4xx, never a 5xx, and never forwarded.
            var broken = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/llm/chat/completions")
            broken.method = .POST
            broken.headers.add(name: "Authorization", value: "Bearer \(env.apiKey)")
            for text in ["{broken", "[1,2]", String(repeating: "[", count: 10_000), "{\"a\":1,\"a\":2}"] {
                broken.body = .bytes(ByteBuffer(string: text))
                let response = try await HTTPClient.shared.execute(broken, timeout: .seconds(60))
                #expect(response.status == .badRequest)
            }
            #expect(fake.requests.count == 4)
        }
    }

    @Test("retrieval past its deadline: the turn goes on without memory, and says so", .timeLimit(.minutes(1)))
    func memoryDeadline() async throws {
        try await withProxy(
            store: { StalledStore(base: try await openSQLiteStore(path: $0.databasePath), delay: .seconds(30)) },
            configure: { $0.llmMemoryDeadline = .milliseconds(50) }
        ) { port, env, fake in
            fake.enqueue(.stream([FakeStreamingUpstream.event("ok", index: 0)]))
            let (status, headers, text) = try await send(
                port, chatBody("When is my cleaning appointment?", engramUser: Fixtures.fixturePhone), key: env.apiKey)
            #expect(status == 200)
            #expect(headers.first("Engram-Memory") == "miss")
            #expect(text.hasSuffix(FakeStreamingUpstream.done))
            #expect(fake.requests.last?.systemContents.count == 1)
        }
    }

    @Test("a key over its rate limit still gets its turn answered, without memory (never a 429 of Engram's)", .timeLimit(.minutes(1)))
    func rateLimitedTurn() async throws {
        try await withProxy(configure: {
            $0.rateLimitPerMinute = 1
            $0.rateLimitBurst = 1
        }) { port, env, fake in
            var outcomes: [String] = []
            for _ in 0..<3 {
                fake.enqueue(.stream([FakeStreamingUpstream.event("ok", index: 0)]))
                let (status, headers, text) = try await send(port, chatBody("hello", engramUser: Fixtures.fixturePhone), key: env.apiKey)
                #expect(status == 200)
                #expect(text.hasSuffix(FakeStreamingUpstream.done))
                outcomes.append(headers.first("Engram-Memory") ?? "")
            }
            #expect(outcomes.last == "miss")
            #expect(fake.requests.count == 3)
        }
    }

    @Test("the engram_llm_memory_misses_total family has its HELP line and zero series", .timeLimit(.minutes(1)))
    func missMetricHelp() {
        #expect(EngramMetrics.help["engram_llm_memory_misses_total"] != nil)
    }

    @Test("engram elevenlabs config prints the custom-LLM block", .timeLimit(.minutes(1)))
    func agentConfiguration() async throws {
        let env = try TestEnvironment()
        let base = ["ENGRAM_PUBLIC_BASE_URL": "https://engram.example.com", "ENGRAM_LLM_MODEL": "gpt-4o", "PATH": "/usr/bin:/bin"]
        let result = try await runEngram(["elevenlabs", "config", "--llm-secret-id", "k"], environment: base, directory: env.directory)
        #expect(result.status == 0)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let block = try #require(object["custom_llm"] as? [String: Any])
        #expect(block["url"] as? String == "https://engram.example.com/v1/llm")
        #expect(block["model_id"] as? String == "gpt-4o")
        #expect((block["api_key"] as? [String: Any])?["secret_id"] as? String == "k")
        try? FileManager.default.removeItem(at: env.directory)
    }

    @Test("request bodies are rewritten generically: unknown fields and content parts survive", .timeLimit(.minutes(1)))
    func chatTurnEditing() throws {
        let text =
            #"{"model":"m","messages":[{"role":"system","content":"p"},{"role":"user","content":[{"type":"text","text":"When is it?"}]}],"elevenlabs_extra_body":{"engram_user":"u_x"},"n":2,"url":"a/b"}"#
        var turn = try #require(ChatTurn(json: Data(text.utf8)))
        #expect(turn.engramUser == "u_x")
        #expect(turn.latestUserText == "When is it?")
        #expect(turn.userMessageCount == 1)
        let added = turn.addMemory(["The caller's appointment is Friday."])
        #expect(added)
        let forwarded = try #require(turn.forwardedBody(original: Data(text.utf8)))
        let out = try #require(try JSONSerialization.jsonObject(with: forwarded) as? [String: Any])
        #expect(out["elevenlabs_extra_body"] == nil)
        #expect(out["n"] as? Int == 2)
        #expect(out["url"] as? String == "a/b")
        let messages = try #require(out["messages"] as? [[String: Any]])
        #expect(messages.map { $0["role"] as? String } == ["system", "system", "user"])
        #expect((messages[1]["content"] as? String)?.contains("Friday") == true)
        #expect(ChatTurn.clipped("ééé", maxBytes: 5) == "éé")
        // A body with no memory and no extra body goes upstream byte for byte.
        let plain = Data(#"{"model":"m","messages":[]}"#.utf8)
        let untouched = try #require(ChatTurn(json: plain))
        #expect(untouched.forwardedBody(original: plain) == plain)
    }
}

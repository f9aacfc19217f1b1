import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramObservability
@testable import EngramProviders
@testable import EngramStore
@testable import Gateway
@testable import Worker

/// The MCP server at `/mcp` in process (the production `buildApplication`, real Redis and
/// SQLite): authentication, the protocol methods, the tools' parity with the webhook tools, and
/// bad input of every kind answered with a JSON-RPC error, never a 5xx.
@Suite("MCP server", .timeLimit(.minutes(3)))
struct MCPTests {
    /// The app on this test's environment; with `ingest`, the signed fixture is stored first.
    func withMCP(
        ingest: Bool = false, configure: (inout EngramConfiguration) -> Void = { _ in },
        _ body: @Sendable (any TestClientProtocol, TestEnvironment) async throws -> Void
    ) async throws {
        let env = try await TestEnvironment.make(.sqlite)
        var configuration = env.configuration()
        configure(&configuration)
        let worker = ingest ? try await buildWorker(configuration: configuration, logger: testLogger) : nil
        let app = try await buildApplication(configuration: configuration, logger: testLogger)
        do {
            try await app.test(.router) { client in
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
                try await body(client, env)
            }
        } catch {
            await env.cleanUp()
            throw error
        }
        await env.cleanUp()
    }

    struct Answer {
        var status: HTTPResponse.Status
        var headers: HTTPFields
        var json: [String: Any]
        var raw: String
        var result: [String: Any]? { json["result"] as? [String: Any] }
        var errorCode: Int? { (json["error"] as? [String: Any])?["code"] as? Int }
        /// The text a tool result carries, parsed as JSON.
        var toolJSON: [String: Any] {
            let text = ((result?["content"] as? [[String: Any]])?.first?["text"] as? String) ?? ""
            return (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
        }
        var isError: Bool? { result?["isError"] as? Bool }
    }

    func post(_ client: some TestClientProtocol, _ body: String, key: String?, headers extra: HTTPFields = [:]) async throws -> Answer {
        var headers: HTTPFields = [.contentType: "application/json", .accept: "application/json, text/event-stream"]
        if let key { headers[.authorization] = "Bearer \(key)" }
        headers.append(contentsOf: extra)
        return try await client.execute(uri: "/mcp", method: .post, headers: headers, body: ByteBuffer(string: body)) { response in
            let raw = String(buffer: response.body)
            return Answer(status: response.status, headers: response.headers, json: response.body.json, raw: raw)
        }
    }

    func call(_ client: some TestClientProtocol, _ key: String, tool: String, _ arguments: [String: Any], id: Int = 7) async throws -> Answer {
        let message: [String: Any] = ["jsonrpc": "2.0", "id": id, "method": "tools/call", "params": ["name": tool, "arguments": arguments]]
        return try await post(client, String(decoding: try JSONSerialization.data(withJSONObject: message), as: UTF8.self), key: key)
    }

    @Test(
        "no key or a wrong key is a 401 on every method; GET and DELETE with a key are 405 (no server streams, no sessions)", .timeLimit(.minutes(1)))
    func authentication() async throws {
        try await withMCP { client, env in
            let ping = #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#
            #expect(try await post(client, ping, key: nil).status == .unauthorized)
            #expect(try await post(client, ping, key: "ek_wrong").status == .unauthorized)
            #expect(
                try await post(client, ping, key: env.adminKey).status == .unauthorized, "the admin key has the management scope, not the tool scope")
            for method in [HTTPRequest.Method.get, .delete] {
                try await client.execute(uri: "/mcp", method: method) { #expect($0.status == .unauthorized) }
                try await client.execute(uri: "/mcp", method: method, headers: [.authorization: "Bearer \(env.apiKey)"]) {
                    #expect($0.status == .methodNotAllowed)
                    #expect($0.headers[.allow] == "POST")
                }
            }
            #expect(try await post(client, ping, key: env.apiKey).status == .ok)
        }
    }

    /// The value of `engram_mcp_messages_total` for one method and outcome (0 when absent).
    static func mcpCount(method: String, outcome: String) -> Double {
        let prefix = #"engram_mcp_messages_total{method="\#(method)",outcome="\#(outcome)"} "#
        let line = MetricsExport.render().split(separator: "\n").first { $0.hasPrefix(prefix) }
        return line.flatMap { Double($0.dropFirst(prefix.count)) } ?? 0
    }

    @Test("engram_mcp_messages_total counts each message by method and outcome, unknown methods as other", .timeLimit(.minutes(1)))
    func messageMetric() async throws {
        try await withMCP { client, env in
            MetricsExport.bootstrap(.gateway)
            #expect(EngramMetrics.help["engram_mcp_messages_total"] != nil)
            let before = (
                ping: Self.mcpCount(method: "ping", outcome: "ok"), toolError: Self.mcpCount(method: "tools/call", outcome: "tool_error"),
                other: Self.mcpCount(method: "other", outcome: "error"), invalid: Self.mcpCount(method: "invalid", outcome: "error")
            )
            _ = try await post(client, #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, key: env.apiKey)
            _ = try await call(client, env.apiKey, tool: "search_memory", ["query": "", "caller_id": Fixtures.fixturePhone])
            _ = try await post(client, #"{"jsonrpc":"2.0","id":2,"method":"secret/\#(UUID().uuidString)"}"#, key: env.apiKey)
            _ = try await post(client, #"{"jsonrpc":"1.0"}"#, key: env.apiKey)
            // Other tests run at the same time and only ever add: each count grew by at least one.
            #expect(Self.mcpCount(method: "ping", outcome: "ok") >= before.ping + 1)
            #expect(Self.mcpCount(method: "tools/call", outcome: "tool_error") >= before.toolError + 1)
            #expect(Self.mcpCount(method: "other", outcome: "error") >= before.other + 1)
            #expect(Self.mcpCount(method: "invalid", outcome: "error") >= before.invalid + 1)
            #expect(!MetricsExport.render().contains("secret/"), "a method name the server does not know never becomes a label")
        }
    }

    @Test("a request from a browser origin not allowed is a 403 on every method; a listed origin and no origin pass", .timeLimit(.minutes(1)))
    func origins() async throws {
        try await withMCP(configure: { $0.mcpAllowedOrigins = ["https://console.example.com"] }) { client, env in
            let ping = #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#
            let evil = HTTPFields([HTTPField(name: MCPController.originHeader, value: "http://rebound.example")])
            let refused = try await post(client, ping, key: env.apiKey, headers: evil)
            #expect(refused.status == .forbidden && refused.errorCode == -32600)
            #expect(!refused.raw.contains("rebound"), "the refused origin is not echoed")
            for method in [HTTPRequest.Method.get, .delete] {
                var headers = evil
                headers[.authorization] = "Bearer \(env.apiKey)"
                try await client.execute(uri: "/mcp", method: method, headers: headers) { #expect($0.status == .forbidden) }
            }
            let listed = HTTPFields([HTTPField(name: MCPController.originHeader, value: "HTTPS://console.example.com")])
            #expect(try await post(client, ping, key: env.apiKey, headers: listed).status == .ok)
            #expect(try await post(client, ping, key: env.apiKey).status == .ok)
        }
    }

    @Test("initialize negotiates the revision, notifications get 202, ping and tools/list answer; no session id is needed", .timeLimit(.minutes(1)))
    func lifecycle() async throws {
        try await withMCP { client, env in
            let initialize = try await post(
                client,
                #"{"jsonrpc":"2.0","id":"a-1","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
                key: env.apiKey)
            #expect(initialize.status == .ok)
            #expect(initialize.headers[.contentType] == "application/json")
            #expect(initialize.json["id"] as? String == "a-1")
            #expect(initialize.result?["protocolVersion"] as? String == "2025-06-18")
            #expect((initialize.result?["serverInfo"] as? [String: Any])?["name"] as? String == "engram")
            #expect((initialize.result?["capabilities"] as? [String: Any])?["tools"] != nil)
            // Stateless: no session to remember, so none is handed out.
            #expect(initialize.headers[HTTPField.Name("Mcp-Session-Id")!] == nil)

            let unknownRevision = try await post(
                client, #"{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":"1999-01-01"}}"#, key: env.apiKey)
            #expect(unknownRevision.result?["protocolVersion"] as? String == MCPServer.latestVersion)

            let notification = try await post(client, #"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, key: env.apiKey)
            #expect(notification.status == .accepted)
            #expect(notification.raw.isEmpty)
            // A client's answer to a server request (this server sends none) is acknowledged too.
            #expect(try await post(client, #"{"jsonrpc":"2.0","id":5,"result":{}}"#, key: env.apiKey).status == .accepted)

            let versioned: HTTPFields = [
                HTTPField.Name("MCP-Protocol-Version")!: "2025-11-25", HTTPField.Name("Mcp-Session-Id")!: "from-another-replica",
            ]
            let ping = try await post(client, #"{"jsonrpc":"2.0","id":3,"method":"ping"}"#, key: env.apiKey, headers: versioned)
            #expect(ping.status == .ok)
            #expect(ping.result?.isEmpty == true)

            let list = try await post(client, #"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#, key: env.apiKey)
            let tools = try #require(list.result?["tools"] as? [[String: Any]])
            #expect(Set(tools.compactMap { $0["name"] as? String }) == ["search_memory", "remember", "forget_me", "set_consent"])
            for tool in tools {
                let schema = try #require(tool["inputSchema"] as? [String: Any])
                #expect(schema["type"] as? String == "object")
                #expect((schema["properties"] as? [String: Any])?["caller_id"] != nil)
                #expect((schema["required"] as? [String])?.contains("caller_id") == true)
            }
        }
    }

    @Test("search_memory over MCP answers what the webhook tool answers, and finds the Friday slot", .timeLimit(.minutes(1)))
    func searchParity() async throws {
        try await withMCP(ingest: true) { client, env in
            let arguments: [String: Any] = ["query": "When is my cleaning appointment?", "caller_id": Fixtures.fixturePhone]
            let mcp = try await call(client, env.apiKey, tool: "search_memory", arguments)
            #expect(mcp.status == .ok)
            #expect(mcp.isError == false)
            let memories = try #require(mcp.toolJSON["memories"] as? [[String: Any]])
            #expect(memories.contains { ($0["text"] as? String)?.contains("Friday") == true })
            #expect(((mcp.result?["structuredContent"] as? [String: Any])?["memories"] as? [[String: Any]])?.count == memories.count)

            let webhook = try await client.execute(
                uri: "/v1/tools/search-memory", method: .post,
                headers: [.authorization: "Bearer \(env.apiKey)", .contentType: "application/json"],
                body: ByteBuffer(data: try JSONSerialization.data(withJSONObject: arguments))
            ) { $0.body.json }
            let webhookTexts = (webhook["memories"] as? [[String: Any]])?.compactMap { $0["text"] as? String }
            #expect(webhookTexts == memories.compactMap { $0["text"] as? String })

            // An unknown caller gets nothing, as from the webhook.
            let unknown = try await call(client, env.apiKey, tool: "search_memory", ["query": "cleaning", "caller_id": "+14155550123"])
            #expect((unknown.toolJSON["memories"] as? [Any])?.isEmpty == true)
        }
    }

    @Test(
        "remember, set_consent and forget_me run the webhook tools' code: queued fact, consent and audit, erasure only when confirmed",
        .timeLimit(.minutes(1)))
    func writingTools() async throws {
        try await withMCP(ingest: true) { client, env in
            let remembered = try await call(
                client, env.apiKey, tool: "remember", ["fact": "The caller prefers mornings.", "caller_id": Fixtures.fixturePhone])
            #expect(remembered.toolJSON["status"] as? String == "remembered")
            let tooLong = try await call(
                client, env.apiKey, tool: "remember", ["fact": String(repeating: "é", count: 1_500), "caller_id": Fixtures.fixturePhone])
            #expect(tooLong.isError == true)
            #expect((tooLong.toolJSON["error"] as? [String: Any])?["code"] as? String == "field_too_long")

            let consent = try await call(client, env.apiKey, tool: "set_consent", ["caller_id": Fixtures.fixturePhone, "granted": false])
            #expect(consent.toolJSON["status"] as? String == "withdrawn")

            let unconfirmed = try await call(client, env.apiKey, tool: "forget_me", ["caller_id": Fixtures.fixturePhone, "confirm": false])
            #expect(unconfirmed.toolJSON["status"] as? String == "not_confirmed")
            let noConfirm = try await call(client, env.apiKey, tool: "forget_me", ["caller_id": Fixtures.fixturePhone])
            #expect(noConfirm.toolJSON["status"] as? String == "not_confirmed")
            let store = try await env.openStore()
            let vault = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder())
            let user = try #require(try await vault.tenant("default")).userKeys.key(for: .phone(Fixtures.fixturePhone))
            #expect(try await !vault.memories(tenant: "default", user: user).isEmpty)

            let erased = try await call(client, env.apiKey, tool: "forget_me", ["caller_id": Fixtures.fixturePhone, "confirm": true])
            #expect(erased.toolJSON["status"] as? String == "erased")
            #expect(try await vault.memories(tenant: "default", user: user).isEmpty)
            let actions = try await store.auditEntries(tenant: "default", limit: 20).filter { $0.actor == "env:tool" }.map(\.action)
            #expect(actions.contains("tool.consent_withdrawn"))
            #expect(actions.contains("tool.forget_me"))
        }
    }

    @Test("tool calls are held to the key's rate limit (a tool error the LLM reads); protocol chatter is not", .timeLimit(.minutes(1)))
    func rateLimit() async throws {
        try await withMCP(configure: {
            $0.rateLimitPerMinute = 1
            $0.rateLimitBurst = 1
        }) { client, env in
            var limited: Answer?
            for _ in 0..<5 {
                let answer = try await call(client, env.apiKey, tool: "search_memory", ["query": "cleaning", "caller_id": Fixtures.fixturePhone])
                #expect(answer.status == .ok)
                if answer.isError == true {
                    limited = answer
                    break
                }
            }
            let answer = try #require(limited)
            let error = try #require(answer.toolJSON["error"] as? [String: Any])
            #expect(error["code"] as? String == "rate_limited")
            #expect((error["retryAfterSeconds"] as? Int ?? 0) >= 1)
            #expect(try await post(client, #"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, key: env.apiKey).result?["tools"] != nil)
        }
    }

    @Test(
        "malformed JSON-RPC, unknown methods and tools, wrong argument types and huge bodies get JSON-RPC errors, never a 5xx",
        .timeLimit(.minutes(1)))
    func badInput() async throws {
        try await withMCP(configure: { $0.maxToolBodyBytes = 4_096 }) { client, env in
            func tool(_ name: String, _ arguments: String) -> String {
                #"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"\#(name)","arguments":\#(arguments)}}"#
            }
            let deep = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
            // (body, expected HTTP status, expected JSON-RPC code)
            let cases: [(String, HTTPResponse.Status, Int)] = [
                ("", .badRequest, -32700),
                ("not json", .badRequest, -32700),
                ("{\"jsonrpc\":\"2.0\",", .badRequest, -32700),
                ("[]", .badRequest, -32600),
                (#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, .badRequest, -32600),
                ("42", .badRequest, -32600),
                (#""ping""#, .badRequest, -32600),
                (#"{}"#, .badRequest, -32600),
                (#"{"id":1,"method":"ping"}"#, .badRequest, -32600),
                (#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, .badRequest, -32600),
                (#"{"jsonrpc":2,"id":1,"method":"ping"}"#, .badRequest, -32600),
                (#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, .badRequest, -32600),
                (#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, .badRequest, -32600),
                (#"{"jsonrpc":"2.0","id":1e300,"method":"ping"}"#, .badRequest, -32600),
                (#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#, .badRequest, -32600),
                (#"{"jsonrpc":"2.0","id":1}"#, .badRequest, -32600),
                (#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"ping"}"#, .badRequest, -32600),
                (#"{"jsonrpc":"2.0","id":1,"method":"ping","params":\#(deep)}"#, .badRequest, -32600),
                (
                    #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_memory","arguments":{"query":"\#(String(repeating: "x", count: 5_000))"}}}"#,
                    .contentTooLarge, -32600
                ),
                (#"{"jsonrpc":"2.0","id":1,"method":"resources/list"}"#, .ok, -32601),
                (#"{"jsonrpc":"2.0","id":1,"method":7}"#, .badRequest, -32600),
                (#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":5}}"#, .ok, -32602),
                (#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":"x"}"#, .ok, -32602),
                (#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#, .ok, -32602),
                (#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#, .ok, -32602),
                (#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#, .ok, -32602),
                (#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1,2]}"#, .ok, -32602),
                (tool("no_such_tool", "{}"), .ok, -32602),
                (tool("search_memory", "{}"), .ok, -32602),
                (tool("search_memory", #"{"query":5,"caller_id":"+12523960448"}"#), .ok, -32602),
                (tool("search_memory", #"{"query":null}"#), .ok, -32602),
                (tool("search_memory", #"{"query":"x","caller_id":["+1"]}"#), .ok, -32602),
                (tool("search_memory", #"{"query":"x","limit":2.5}"#), .ok, -32602),
                (tool("search_memory", #"{"query":"x","limit":1e300}"#), .ok, -32602),
                (tool("search_memory", #"{"query":"x","limit":-9223372036854775809}"#), .ok, -32602),
                (tool("search_memory", #""query""#), .ok, -32602),
                (tool("search_memory", "[]"), .ok, -32602),
                (tool("remember", #"{"caller_id":"+12523960448"}"#), .ok, -32602),
                (tool("set_consent", #"{"caller_id":"+12523960448","granted":"yes"}"#), .ok, -32602),
                (tool("set_consent", #"{"caller_id":"+12523960448"}"#), .ok, -32602),
                (tool("forget_me", #"{"caller_id":"+12523960448","confirm":"true"}"#), .ok, -32602),
            ]
            for (body, status, code) in cases {
                let answer = try await post(client, body, key: env.apiKey)
                #expect(answer.status == status, "status for \(body.prefix(80))")
                #expect(answer.status.code < 500)
                #expect(answer.json["jsonrpc"] as? String == "2.0", "a JSON-RPC body for \(body.prefix(80)): \(answer.raw.prefix(200))")
                #expect(answer.errorCode == code, "code for \(body.prefix(80)): \(answer.raw.prefix(200))")
                #expect(answer.headers[.contentType] == "application/json")
                // Errors name fields, never echo what was sent.
                #expect(!answer.raw.contains("+12523960448"))
            }
            // A request whose id was read gets it back on the error; one that could not be read gets null.
            let unknownTool = try await post(client, tool("no_such_tool", "{}"), key: env.apiKey)
            #expect(unknownTool.json["id"] as? Int == 9)
            let garbage = try await post(client, "not json", key: env.apiKey)
            #expect(garbage.json.keys.contains("id") && garbage.json["id"] is NSNull)

            // Values the tool itself refuses are tool errors with the webhook's code, not protocol errors.
            let empty = try await post(client, tool("search_memory", #"{"query":"   ","caller_id":"+12523960448"}"#), key: env.apiKey)
            #expect(empty.isError == true)
            #expect((empty.toolJSON["error"] as? [String: Any])?["code"] as? String == "missing_field")
            let strange = try await post(
                client, tool("search_memory", #"{"query":"\u0000\ud83d\ude00 \u202e","caller_id":"\u0000"}"#), key: env.apiKey)
            #expect(strange.status == .ok)
            #expect(strange.isError == false)

            // An unknown protocol revision in the header is a 400 with a JSON-RPC error.
            let revision = try await post(
                client, #"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, key: env.apiKey,
                headers: [HTTPField.Name("MCP-Protocol-Version")!: "2099-01-01"])
            #expect(revision.status == .badRequest)
            #expect(revision.errorCode == -32600)
        }
    }

    @Test("engram elevenlabs config prints the MCP server block next to the custom-LLM block and the tools", .timeLimit(.minutes(1)))
    func agentConfiguration() async throws {
        let env = try TestEnvironment()
        let base = ["ENGRAM_PUBLIC_BASE_URL": "https://engram.example.com", "PATH": "/usr/bin:/bin"]
        let result = try await runEngram(["elevenlabs", "config", "--secret-id", "s"], environment: base, directory: env.directory)
        #expect(result.status == 0)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let block = try #require(object["mcp_server"] as? [String: Any])
        #expect(block["url"] as? String == "https://engram.example.com/mcp")
        #expect(block["transport"] as? String == "streamable_http")
        let header = (block["request_headers"] as? [String: Any])?["Authorization"] as? [String: Any]
        #expect(header?["secret_id"] as? String == "s")
        #expect((object["custom_llm"] as? [String: Any])?["url"] as? String == "https://engram.example.com/v1/llm")
        #expect((object["tools"] as? [Any])?.count == 4)
        try? FileManager.default.removeItem(at: env.directory)
    }
}

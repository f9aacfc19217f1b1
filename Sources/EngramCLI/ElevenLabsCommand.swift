import ArgumentParser
import EngramApp
import EngramProviders
import Foundation

struct ElevenLabsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "elevenlabs", abstract: "ElevenLabs agent configuration.", subcommands: [Config.self])

    struct Config: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the tool definitions, webhook URLs and dynamic variable placeholders to paste into an ElevenLabs agent.")
        @Option(help: "Public https base URL of the gateway (default ENGRAM_PUBLIC_BASE_URL).") var baseURL: String?
        @Option(help: "Id of the ElevenLabs workspace secret whose value is 'Bearer <ENGRAM_API_KEY>'.") var secretID = "engram_api_key"
        @Option(help: "Id of the ElevenLabs workspace secret whose value is the bare Engram tool key, for the custom LLM.") var llmSecretID =
            "engram_llm_key"
        @Option(help: "Model id the custom LLM asks the upstream for (default ENGRAM_LLM_MODEL, else gpt-4o-mini).") var llmModel: String?

        func run() async throws {
            let environment = EngramConfiguration.environmentWithDevFile()
            var base = baseURL ?? environment["ENGRAM_PUBLIC_BASE_URL"] ?? EngramConfiguration().publicBaseURL
            while base.hasSuffix("/") { base.removeLast() }
            PublicBaseURLCheck.warn(base: base, explicit: baseURL != nil || environment["ENGRAM_PUBLIC_BASE_URL"] != nil)
            let model = llmModel ?? environment["ENGRAM_LLM_MODEL"] ?? EngramConfiguration().llmModel
            try printJSON(ElevenLabsAgentConfiguration.make(baseURL: base, secretID: secretID, llmSecretID: llmSecretID, llmModel: model))
        }
    }
}

/// Why ElevenLabs could not reach the URLs in the printed configuration, if it could not.
enum PublicBaseURLCheck {
    static func warnings(base: String, explicit: Bool) -> [String] {
        var warnings: [String] = []
        if !explicit {
            warnings.append(
                "ENGRAM_PUBLIC_BASE_URL is not set: the URLs below use \(base), which ElevenLabs cannot reach; set it (or --base-url) to the gateway's public https address"
            )
        }
        let components = URLComponents(string: base)
        let host = (components?.host ?? "").lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if explicit, isLoopback(host) {
            warnings.append("the base URL \(base) is a loopback address: ElevenLabs cannot reach it")
        }
        if components?.scheme?.lowercased() != "https" {
            warnings.append("the base URL \(base) is not https: ElevenLabs would send webhooks and tool calls (with the API key) in clear text")
        }
        return warnings
    }

    /// Prints the warnings on stderr, one line each; stdout stays the document.
    static func warn(base: String, explicit: Bool = EngramConfiguration.environmentWithDevFile()["ENGRAM_PUBLIC_BASE_URL"] != nil) {
        for warning in warnings(base: base, explicit: explicit) {
            FileHandle.standardError.write(Data("engram: warning: \(warning)\n".utf8))
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host.hasSuffix(".localhost") || host.hasPrefix("127.") || host == "::1" || host == "0.0.0.0" || host.isEmpty
    }
}

/// The document `engram elevenlabs config` prints.
enum ElevenLabsAgentConfiguration {
    static func make(baseURL: String, secretID: String, llmSecretID: String = "engram_llm_key", llmModel: String = "gpt-4o-mini") -> JSONValue {
        let auth: JSONValue = .object(["Authorization": .object(["secret_id": .string(secretID)])])
        func callerProperties(_ extra: [String: JSONValue]) -> JSONValue {
            var properties = extra
            properties["caller_id"] = .object(["type": "string", "dynamic_variable": "system__caller_id"])
            properties["conversation_id"] = .object(["type": "string", "dynamic_variable": "system__conversation_id"])
            return .object(properties)
        }
        func tool(_ name: String, _ description: String, path: String, required: [String], properties: [String: JSONValue]) -> JSONValue {
            .object([
                "type": "webhook", "name": .string(name), "description": .string(description), "response_timeout_secs": .number(10),
                "api_schema": .object([
                    "url": .string(baseURL + path), "method": "POST", "request_headers": auth,
                    "request_body_schema": .object([
                        "type": "object", "required": .array(required.map(JSONValue.string)), "properties": callerProperties(properties),
                    ]),
                ]),
            ])
        }
        let neutral = PrecallVariables.neutral
        return .object([
            "tools": .array([
                tool(
                    "search_memory",
                    "Look up what is remembered about this caller from earlier calls. Use when the caller refers to past interactions or you need a fact about them.",
                    path: "/v1/tools/search-memory", required: ["query"],
                    properties: ["query": .object(["type": "string", "description": "What to look up, in a few words"])]),
                tool(
                    "remember", "Store one fact the caller just told you that should be remembered for future calls.",
                    path: "/v1/tools/remember", required: ["fact"],
                    properties: ["fact": .object(["type": "string", "description": "The fact, as one short self-contained sentence"])]),
                tool(
                    "set_consent", "Record whether the caller agrees to be remembered across calls. Use when they say yes or no to that.",
                    path: "/v1/tools/set-consent", required: ["granted"],
                    properties: ["granted": .object(["type": "boolean", "description": "true if the caller agrees to be remembered, false if not"])]),
                tool(
                    "forget_me", "Erase everything remembered about this caller. Use only when the caller explicitly asks to be forgotten.",
                    path: "/v1/tools/forget-me", required: [], properties: [:]),
            ]),
            "webhooks": .object([
                "post_call": .object([
                    "url": .string(baseURL + "/v1/elevenlabs/post-call"),
                    "note":
                        "Workspace settings → Webhooks: add this URL with HMAC authentication; put the shared secret in ENGRAM_WEBHOOK_SECRET. Enable transcript events.",
                ]),
                "conversation_initiation": .object([
                    "url": .string(baseURL + "/v1/elevenlabs/conversation-init"), "method": "POST", "request_headers": auth,
                    "note": "Agent → Security: enable 'Fetch initiation client data from webhook' (Twilio/SIP calls).",
                ]),
            ]),
            // The other mode: Engram as the agent's LLM, adding memory to every turn (docs/api.md, "Custom-LLM proxy").
            "custom_llm": .object([
                "url": .string(baseURL + "/v1/llm"), "model_id": .string(llmModel),
                "api_key": .object(["secret_id": .string(llmSecretID)]),
                "note":
                    "Agent → LLM: Custom LLM. The secret's value is the bare Engram tool key (ElevenLabs sends it as Bearer). Keep the conversation-initiation webhook on: its answer names the caller (custom_llm_extra_body) for every turn.",
            ]),
            // The third mode: the same four tools from Engram's MCP server (docs/mcp.md).
            "mcp_server": .object([
                "url": .string(baseURL + "/mcp"), "transport": "streamable_http",
                "request_headers": .object(["Authorization": .object(["secret_id": .string(secretID)])]),
                "note":
                    "Agent → Tools → MCP servers: add this URL (Streamable HTTP) with the header; the secret's value is 'Bearer <ENGRAM_API_KEY>', as for the webhook tools. Put 'The caller's number is {{system__caller_id}}' in the prompt: the tools take it as caller_id. Approve search_memory, remember and set_consent; keep forget_me on approval.",
            ]),
            "dynamic_variable_placeholders": .object([
                "memory_context": .string(neutral.memoryContext), "user_name": .string(neutral.userName),
                "is_returning_caller": .bool(neutral.isReturningCaller), "last_call_summary": .string(neutral.lastCallSummary),
                "days_since_last_call": .number(Double(neutral.daysSinceLastCall)), "memory_count": .number(Double(neutral.memoryCount)),
            ]),
        ])
    }
}

import EngramApp
import EngramCore
import EngramProviders
import EngramQueue
import EngramStore
import Foundation
import Logging

/// The memory tools as MCP tools: their names, descriptions and input schemas, and a call that
/// runs the same action as the webhook tool of that name (`ToolsController+Actions`).
struct MCPTools: Sendable {
    let actions: ToolsController
    let rateLimiter: RateLimiter

    /// One entry of `tools/list`.
    struct Definition: Encodable, Sendable {
        var name: String
        var title: String
        var description: String
        var inputSchema: JSONValue
        var annotations: JSONValue
    }

    /// The `content` of a tool result: text only.
    struct TextContent: Encodable, Sendable {
        var type = "text"
        var text: String
    }

    /// The result of `tools/call`: the answer as JSON text (what the LLM reads) and as structured content.
    struct CallResult: Encodable {
        var content: [TextContent]
        var structuredContent: any Encodable
        var isError: Bool

        enum CodingKeys: String, CodingKey { case content, structuredContent, isError }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(content, forKey: .content)
            try container.encode(structuredContent, forKey: .structuredContent)
            try container.encode(isError, forKey: .isError)
        }

        init(content: [TextContent], structuredContent: any Encodable, isError: Bool) {
            self.content = content
            self.structuredContent = structuredContent
            self.isError = isError
        }

        init(_ value: some Encodable, isError: Bool = false) throws {
            content = [TextContent(text: String(decoding: try MCPServer.encoder.encode(value), as: UTF8.self))]
            structuredContent = value
            self.isError = isError
        }
    }

    static let callerID: JSONValue = .object([
        "type": "string",
        "description": "The caller's phone number in E.164 form (the agent's {{system__caller_id}}).",
    ])
    static let userID: JSONValue = .object([
        "type": "string", "description": "Optional: the caller's Engram user key from the pre-call answer (user_id), if the tenant trusts it.",
    ])

    static func schema(required: [String], _ properties: [String: JSONValue]) -> JSONValue {
        var all = properties
        all["caller_id"] = callerID
        all["user_id"] = userID
        return .object(["type": "object", "properties": .object(all), "required": .array(required.map(JSONValue.string))])
    }

    static let definitions: [Definition] = [
        Definition(
            name: "search_memory", title: "Search memory",
            description:
                "Look up what is remembered about this caller from earlier calls. Use when the caller refers to past interactions or you need a fact about them.",
            inputSchema: schema(
                required: ["query", "caller_id"],
                [
                    "query": .object([
                        "type": "string", "description": "What to look up, in a few words",
                        "maxLength": .number(Double(ToolsController.maxQueryBytes)),
                    ]),
                    "limit": .object([
                        "type": "integer", "minimum": .number(1), "maximum": .number(20), "description": "Optional: at most this many entries",
                    ]),
                ]),
            annotations: .object(["readOnlyHint": true, "openWorldHint": false])),
        Definition(
            name: "remember", title: "Remember a fact",
            description: "Store one fact the caller just told you that should be remembered for future calls.",
            inputSchema: schema(
                required: ["fact", "caller_id"],
                [
                    "fact": .object([
                        "type": "string", "description": "The fact, as one short self-contained sentence",
                        "maxLength": .number(Double(ToolsController.maxFactBytes)),
                    ]),
                    "conversation_id": .object(["type": "string", "description": "Optional: the conversation's id"]),
                ]),
            annotations: .object(["readOnlyHint": false, "destructiveHint": false, "openWorldHint": false])),
        Definition(
            name: "forget_me", title: "Forget the caller",
            description:
                "Erase everything remembered about this caller. Use only when the caller explicitly asks to be forgotten, and set confirm to true once they have confirmed.",
            inputSchema: schema(
                required: ["caller_id", "confirm"],
                [
                    "confirm": .object(["type": "boolean", "description": "true only after the caller confirmed they want everything erased"])
                ]),
            annotations: .object(["readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": false])),
        Definition(
            name: "set_consent", title: "Record consent",
            description: "Record whether the caller agrees to be remembered across calls. Use when they say yes or no to that.",
            inputSchema: schema(
                required: ["caller_id", "granted"],
                [
                    "granted": .object(["type": "boolean", "description": "true if the caller agrees to be remembered, false if not"])
                ]),
            annotations: .object(["readOnlyHint": false, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false])),
    ]

    /// `params` of `tools/call`: which tool.
    struct CallName: Decodable { var name: String }

    /// `params` of `tools/call`: the tool's arguments as `Arguments` (an absent object is an empty one).
    struct CallArguments<Arguments: Decodable>: Decodable {
        var arguments: Arguments

        enum CodingKeys: String, CodingKey { case arguments }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            if container.contains(.arguments), try !container.decodeNil(forKey: .arguments) {
                arguments = try container.decode(Arguments.self, forKey: .arguments)
            } else {
                arguments = try JSONDecoder().decode(Arguments.self, from: Data("{}".utf8))
            }
        }
    }

    /// `forget_me`'s guard: nothing is erased unless the agent says the caller confirmed.
    struct Confirmation: Decodable { var confirm: Bool? }

    /// Runs `tools/call` from the whole request `data`. Arguments of the wrong shape, or an unknown
    /// tool, are protocol errors; what the tool refuses (an empty query, the rate limit, a store
    /// that does not answer) is a result with `isError`, which the agent's LLM reads.
    func call(_ data: Data, caller: Caller, logger: Logger) async throws(JSONRPC.ErrorObject) -> CallResult {
        guard let name = (try? JSONDecoder().decode(JSONRPC.Params<CallName>.self, from: data))?.params?.name else {
            throw JSONRPC.ErrorObject(.invalidParams, "tools/call needs params.name, a string")
        }
        do {
            switch name {
            case "search_memory":
                let arguments = try Self.arguments(ToolsController.SearchRequest.self, of: name, in: data)
                try await RateLimitMiddleware.enforce(rateLimiter, keyID: caller.keyID)
                return try CallResult(["memories": try await actions.search(arguments, caller: caller)])
            case "remember":
                let arguments = try Self.arguments(ToolsController.RememberRequest.self, of: name, in: data)
                try await RateLimitMiddleware.enforce(rateLimiter, keyID: caller.keyID)
                return try CallResult(try await actions.remember(arguments, caller: caller, logger: logger))
            case "forget_me":
                let arguments = try Self.arguments(ToolsController.CallerRequest.self, of: name, in: data)
                let confirmation = try Self.arguments(Confirmation.self, of: name, in: data)
                try await RateLimitMiddleware.enforce(rateLimiter, keyID: caller.keyID)
                guard confirmation.confirm == true else {
                    return try CallResult(
                        ToolsController.ToolReply(
                            status: "not_confirmed",
                            message: "Nothing was erased. Ask the caller to confirm, then call forget_me again with confirm set to true."))
                }
                return try CallResult(try await actions.forgetMe(arguments, caller: caller, logger: logger))
            case "set_consent":
                let arguments = try Self.arguments(ToolsController.ConsentRequest.self, of: name, in: data)
                try await RateLimitMiddleware.enforce(rateLimiter, keyID: caller.keyID)
                return try CallResult(try await actions.setConsent(arguments, caller: caller))
            default:
                throw JSONRPC.ErrorObject(.invalidParams, "unknown tool: see tools/list")
            }
        } catch let error as JSONRPC.ErrorObject {
            throw error
        } catch let error as APIError {
            // The webhook tool's status and body, as a tool error the LLM can read.
            return Self.toolError(code: error.code, message: error.message, retryAfter: error.headers[.retryAfter])
        } catch StoreError.unavailable {
            logger.error("store unavailable", metadata: ["route": "/mcp"])
            return Self.toolError(code: "store_unavailable", message: "the memory store did not answer in time; retry", retryAfter: "2")
        } catch {
            logger.error("unhandled error", metadata: ["error_class": "\(type(of: error))", "route": "/mcp"])
            throw JSONRPC.ErrorObject(.internalError, "internal error")
        }
    }

    /// The arguments of tool `name` as `type`, or invalid params naming the field at fault (never its value).
    static func arguments<Arguments: Decodable>(_ type: Arguments.Type, of name: String, in data: Data) throws(JSONRPC.ErrorObject) -> Arguments {
        let params: CallArguments<Arguments>?
        do {
            params = try JSONDecoder().decode(JSONRPC.Params<CallArguments<Arguments>>.self, from: data).params
        } catch let error as DecodingError {
            throw JSONRPC.ErrorObject(.invalidParams, "arguments of \(name) do not match its input schema: \(Self.describe(error))")
        } catch {
            throw JSONRPC.ErrorObject(.invalidParams, "arguments of \(name) do not match its input schema")
        }
        guard let params else { throw JSONRPC.ErrorObject(.invalidParams, "tools/call needs params") }
        return params.arguments
    }

    /// Which field is missing or of the wrong type; no value from the request.
    static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.filter { $0.stringValue != "params" && $0.stringValue != "arguments" }.map(\.stringValue).joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, _): return "\(key.stringValue) is required"
        case .typeMismatch(let type, let context): return "\(path(context.codingPath)) must be \(Self.jsonType(type))"
        case .valueNotFound(let type, let context): return "\(path(context.codingPath)) must be \(Self.jsonType(type)), not null"
        case .dataCorrupted(let context): return context.codingPath.isEmpty ? "not JSON" : "\(path(context.codingPath)) is not valid"
        @unknown default: return "not valid"
        }
    }

    static func jsonType(_ type: Any.Type) -> String {
        switch type {
        case is String.Type, is String?.Type: "a string"
        case is Bool.Type, is Bool?.Type: "a boolean"
        case is Int.Type, is Int?.Type: "an integer"
        default: "an object"
        }
    }

    static func toolError(code: String, message: String, retryAfter: String?) -> CallResult {
        struct Detail: Encodable {
            var code: String
            var message: String
            var retryAfterSeconds: Int?
        }
        struct Body: Encodable { var error: Detail }
        let body = Body(error: Detail(code: code, message: message, retryAfterSeconds: retryAfter.flatMap { Int($0) }))
        // Encoding these plain strings cannot fail; fall back to the message alone if it ever did.
        return (try? CallResult(body, isError: true))
            ?? CallResult(content: [TextContent(text: message)], structuredContent: ["error": code], isError: true)
    }
}

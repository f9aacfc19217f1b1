import EngramApp
import EngramCore
import EngramObservability
import Foundation
import Hummingbird
import Logging

/// The Model Context Protocol methods Engram answers (revision 2025-11-25, the one the official
/// Swift SDK 0.12 targets, and the earlier revisions it still accepts): `initialize`, `ping`,
/// `tools/list`, `tools/call`; notifications are acknowledged. Stateless: no method depends on
/// an earlier one, so a client that reconnects (ElevenLabs drops idle connections after about
/// 30 s) or reaches another gateway replica carries on where it was.
struct MCPServer: Sendable {
    let tools: MCPTools

    /// Newest first; a client asking for another gets the newest (it may then disconnect).
    static let supportedVersions = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"]
    static let latestVersion = supportedVersions[0]

    static let instructions = """
        Engram remembers callers across calls. Pass the caller's phone number ({{system__caller_id}}) as caller_id to every tool. \
        search_memory before answering questions about earlier calls; remember facts the caller wants kept; \
        set_consent when they say whether they may be remembered; forget_me only when they ask to be forgotten and confirm.
        """

    /// How to answer one POST.
    enum Reply {
        /// A notification or a client's response: 202, no body.
        case accepted
        /// A JSON-RPC response with its HTTP status (200, or 400 for a message that is not one).
        case json(Data, status: HTTPResponse.Status)
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()

    struct InitializeParams: Decodable { var protocolVersion: String? }

    struct InitializeResult: Encodable {
        struct Capabilities: Encodable {
            struct Tools: Encodable { var listChanged = false }
            var tools = Tools()
        }
        struct ServerInfo: Encodable {
            var name = "engram"
            var title = "Engram memory"
            var version = Engram.version
        }
        var protocolVersion: String
        var capabilities = Capabilities()
        var serverInfo = ServerInfo()
        var instructions = MCPServer.instructions
    }

    struct ToolList: Encodable { var tools: [MCPTools.Definition] }

    /// Answers one message (the whole POST body, already checked to be strict JSON within the size limit).
    func handle(_ data: Data, caller: Caller, logger: Logger) async -> Reply {
        // `engram_mcp_messages_total`: the method (known names only) and how it ended.
        var counted = (method: "invalid", outcome: "error")
        defer { EngramMetrics.mcpMessage(method: counted.method, outcome: counted.outcome) }
        let incoming: JSONRPC.Incoming
        switch JSONRPC.Envelope.read(data) {
        case .success(let message): incoming = message
        case .failure(let error): return Self.failure(nil, error, status: .badRequest)
        }
        guard case .request(let id, let method) = incoming else {
            counted = ("notification", "ok")
            return .accepted
        }
        counted.method = Self.countedMethods.contains(method) ? method : "other"
        do throws(JSONRPC.ErrorObject) {
            switch method {
            case "initialize":
                let params = try Self.params(InitializeParams.self, in: data)
                counted.outcome = "ok"
                let requested = params?.protocolVersion ?? Self.latestVersion
                let version = Self.supportedVersions.contains(requested) ? requested : Self.latestVersion
                return Self.success(id, InitializeResult(protocolVersion: version))
            case "ping":
                counted.outcome = "ok"
                return Self.success(id, JSONRPC.Empty())
            case "tools/list":
                counted.outcome = "ok"
                return Self.success(id, ToolList(tools: MCPTools.definitions))
            case "tools/call":
                let result = try await tools.call(data, caller: caller, logger: logger)
                counted.outcome = result.isError ? "tool_error" : "ok"
                return Self.success(id, result)
            default:
                throw JSONRPC.ErrorObject(.methodNotFound, "method not found: this server offers initialize, ping, tools/list and tools/call")
            }
        } catch {
            return Self.failure(id, error, status: .ok)
        }
    }

    /// Method names counted as themselves; any other is counted as `other` (bounded labels).
    static let countedMethods: Set<String> = ["initialize", "ping", "tools/list", "tools/call"]

    static func params<Value: Decodable>(_ type: Value.Type, in data: Data) throws(JSONRPC.ErrorObject) -> Value? {
        do {
            return try JSONDecoder().decode(JSONRPC.Params<Value>.self, from: data).params
        } catch {
            throw JSONRPC.ErrorObject(.invalidParams, "params do not match the method")
        }
    }

    static func success(_ id: JSONRPC.ID, _ result: some Encodable) -> Reply {
        do {
            return .json(try encoder.encode(JSONRPC.Success(id: id, result: result)), status: .ok)
        } catch {
            return failure(id, JSONRPC.ErrorObject(.internalError, "the result could not be encoded"), status: .ok)
        }
    }

    static func failure(_ id: JSONRPC.ID?, _ error: JSONRPC.ErrorObject, status: HTTPResponse.Status) -> Reply {
        // Strings and integers only: this encoding cannot fail, and the fallback is the same shape.
        let body =
            (try? encoder.encode(JSONRPC.Failure(id: id, error: error)))
            ?? Data(#"{"error":{"code":-32603,"message":"internal error"},"id":null,"jsonrpc":"2.0"}"#.utf8)
        return .json(body, status: status)
    }
}

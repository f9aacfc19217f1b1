import EngramApp
import EngramCore
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// `/mcp`: the Model Context Protocol over Streamable HTTP, for agents that attach Engram as an
/// MCP server. Every request carries an Engram key with the tool scope (401 otherwise). POST
/// carries one JSON-RPC message and gets a JSON answer (202 for notifications); there are no
/// server-initiated streams, so GET is 405, and no sessions to end, so DELETE is 405 as well
/// (the transport allows both). Anything that is not a valid message gets a JSON-RPC error,
/// never a 5xx.
struct MCPController {
    typealias Context = AuthenticatedRequestContext
    let configuration: EngramConfiguration
    let tools: MCPTools

    static let path = "/mcp"
    static let protocolVersionHeader = HTTPField.Name("MCP-Protocol-Version")!
    static let originHeader = HTTPField.Name("Origin")!

    /// The transport's rule against DNS rebinding: a request whose `Origin` is present and not
    /// allowed (`ENGRAM_MCP_ALLOWED_ORIGINS`) is refused with 403 before anything else is read.
    func refusedOrigin(_ request: Request) -> Response? {
        guard let origin = request.headers[Self.originHeader], !configuration.mcpAllowedOrigins.contains(origin.lowercased()) else { return nil }
        return Self.response(
            MCPServer.failure(nil, JSONRPC.ErrorObject(.invalidRequest, "origin not allowed; see ENGRAM_MCP_ALLOWED_ORIGINS"), status: .forbidden))
    }

    var server: MCPServer { MCPServer(tools: tools) }

    /// Behind `Authenticator` (tool scope); not behind `RateLimitMiddleware`: only `tools/call` counts.
    var endpoints: RouteCollection<Context> {
        let routes = RouteCollection(context: Context.self)
        routes.post(RouterPath(Self.path)) { request, context in
            if let refused = refusedOrigin(request) { return refused }
            let caller = context.caller
            // After initialize, clients name the revision they speak; one this server does not know is a 400 (transport spec).
            if let version = request.headers[Self.protocolVersionHeader], !MCPServer.supportedVersions.contains(version) {
                return Self.response(
                    MCPServer.failure(
                        nil,
                        JSONRPC.ErrorObject(
                            .invalidRequest, "unsupported MCP-Protocol-Version; supported: \(MCPServer.supportedVersions.joined(separator: ", "))"),
                        status: .badRequest))
            }
            let data: Data
            do {
                data = try await request.strictJSONBody(limit: configuration.maxToolBodyBytes)
            } catch let error as APIError {
                // The body is too large, too deep, has a duplicate key or is not JSON: the same checks as the webhook tools, as JSON-RPC errors.
                let code: JSONRPC.ErrorCode = error.code == "invalid_json" ? .parseError : .invalidRequest
                let message =
                    error.code == "body_too_large"
                    ? "request body exceeds \(configuration.maxToolBodyBytes) bytes" : error.message
                return Self.response(MCPServer.failure(nil, JSONRPC.ErrorObject(code, message), status: error.status))
            }
            return Self.response(await server.handle(data, caller: caller, logger: context.logger))
        }
        // No server-initiated stream to open, no session to end.
        for method in [HTTPRequest.Method.get, .delete] {
            routes.on(RouterPath(Self.path), method: method) { request, _ in
                if let refused = refusedOrigin(request) { return refused }
                return Response(status: .methodNotAllowed, headers: [.allow: "POST"])
            }
        }
        return routes
    }

    static func response(_ reply: MCPServer.Reply) -> Response {
        switch reply {
        case .accepted:
            return Response(status: .accepted)
        case .json(let data, let status):
            return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(data: data)))
        }
    }
}

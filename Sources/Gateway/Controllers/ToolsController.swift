import EngramApp
import EngramCore
import EngramObservability
import EngramQueue
import Foundation
import Hummingbird
import Logging

/// ElevenLabs server tools, called by the agent's LLM mid-call. Answers are short and plain: the
/// LLM reads them verbatim.
struct ToolsController {
    typealias Context = AuthenticatedRequestContext
    let configuration: EngramConfiguration
    let vault: MemoryVault
    let ingest: DurableIngest
    let reinforcement: ReinforcementBuffer
    let erasure: ErasurePropagation
    let clock: WallClock

    struct SearchRequest: Decodable {
        var query: String
        var callerID: String?
        var userID: String?
        var conversationID: String?
        var limit: Int?
        var explain: Bool?
        enum CodingKeys: String, CodingKey {
            case query
            case callerID = "caller_id"
            case userID = "user_id"
            case conversationID = "conversation_id"
            case limit, explain
        }
    }

    struct SearchResult: Encodable {
        var text: String
        var when: String
        var sector: String
        var id: String?
        var score: ScoreBreakdown?
    }

    struct RememberRequest: Decodable {
        var fact: String
        var callerID: String?
        var userID: String?
        var conversationID: String?
        enum CodingKeys: String, CodingKey {
            case fact
            case callerID = "caller_id"
            case userID = "user_id"
            case conversationID = "conversation_id"
        }
    }

    struct CallerRequest: Decodable {
        var callerID: String?
        var userID: String?
        var conversationID: String?
        enum CodingKeys: String, CodingKey {
            case callerID = "caller_id"
            case userID = "user_id"
            case conversationID = "conversation_id"
        }
    }

    struct ConsentRequest: Decodable {
        var granted: Bool
        var callerID: String?
        var userID: String?
        enum CodingKeys: String, CodingKey {
            case granted
            case callerID = "caller_id"
            case userID = "user_id"
        }
    }

    /// Limits in UTF-8 bytes: a "character" (grapheme cluster) can hold thousands of code points.
    static let maxQueryBytes = 1_000
    static let maxFactBytes = 2_000

    /// Behind `Authenticator` (tool scope) and `RateLimitMiddleware`. What each tool does is in
    /// ToolsController+Actions.swift, shared with the MCP server.
    var endpoints: RouteCollection<Context> {
        let routes = RouteCollection(context: Context.self)
        routes.post("/v1/tools/search-memory") { request, context in
            let body = try await request.decodeJSON(SearchRequest.self, limit: configuration.maxToolBodyBytes)
            return try Response.json(["memories": try await search(body, caller: context.caller)])
        }
        routes.post("/v1/tools/remember") { request, context in
            let body = try await request.decodeJSON(RememberRequest.self, limit: configuration.maxToolBodyBytes)
            return try Response.json(try await remember(body, caller: context.caller, logger: context.logger))
        }
        routes.post("/v1/tools/forget-me") { request, context in
            let body = try await request.decodeJSON(CallerRequest.self, limit: configuration.maxToolBodyBytes)
            return try Response.json(try await forgetMe(body, caller: context.caller, logger: context.logger))
        }
        routes.post("/v1/tools/set-consent") { request, context in
            let body = try await request.decodeJSON(ConsentRequest.self, limit: configuration.maxToolBodyBytes)
            return try Response.json(try await setConsent(body, caller: context.caller))
        }
        return routes
    }

    static let dayFormatter: DateFormatter = {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd"
        return f
    }()

    static func day(_ date: Date) -> String { dayFormatter.string(from: date) }
}

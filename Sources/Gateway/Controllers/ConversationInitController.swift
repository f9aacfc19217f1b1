import EngramApp
import EngramCore
import EngramObservability
import EngramQueue
import Foundation
import Hummingbird
import Logging

/// `POST /v1/elevenlabs/conversation-init`: what Engram remembers, as dynamic variables, before
/// the phone stops ringing. Never fails a call: anything but a wrong key gets 200, with the
/// neutral set when memory is slow or the caller unknown.
struct ConversationInitController {
    typealias Context = AuthenticatedRequestContext
    let configuration: EngramConfiguration
    let precall: PrecallContextBuilder
    let reinforcement: ReinforcementBuffer
    let rateLimiter: RateLimiter
    let clock: WallClock

    struct InitRequest: Decodable {
        var callerID: String?
        var agentID: String?
        var calledNumber: String?
        var callSid: String?
        var userID: String?
        enum CodingKeys: String, CodingKey {
            case callerID = "caller_id"
            case agentID = "agent_id"
            case calledNumber = "called_number"
            case callSid = "call_sid"
            case userID = "user_id"
        }
    }

    struct InitResponse: Encodable {
        var type = "conversation_initiation_client_data"
        var dynamicVariables: PrecallVariables
        var conversationConfigOverride: Override?
        var userID: String?
        /// Sent back by ElevenLabs on every custom-LLM request as `elevenlabs_extra_body`: who is calling.
        var customLLMExtraBody: [String: String]?
        enum CodingKeys: String, CodingKey {
            case type
            case dynamicVariables = "dynamic_variables"
            case conversationConfigOverride = "conversation_config_override"
            case userID = "user_id"
            case customLLMExtraBody = "custom_llm_extra_body"
        }
    }

    struct Override: Encodable {
        struct Agent: Encodable {
            var firstMessage: String?
            var prompt: Prompt?
            enum CodingKeys: String, CodingKey {
                case firstMessage = "first_message"
                case prompt
            }
        }
        struct Prompt: Encodable { var prompt: String }
        var agent: Agent
    }

    /// Behind `Authenticator` (tool scope) but not `RateLimitMiddleware`: a ringing phone is never refused.
    var webhookEndpoints: RouteCollection<Context> {
        let routes = RouteCollection(context: Context.self)
        routes.post("/v1/elevenlabs/conversation-init") { request, context in
            let caller = context.caller
            // A malformed body is still a ringing phone: answer the neutral set.
            let body = try? await request.decodeJSON(InitRequest.self, limit: configuration.maxToolBodyBytes)
            let tenant = caller.tenant
            let user = tenant.userKey(userID: body?.userID, callerID: body?.callerID)
            // Over its rate limit a call still gets 200: the neutral set, never a 429.
            guard await rateLimiter.check(caller.keyID).allowed else {
                EngramMetrics.precallFallback(reason: "rate_limited")
                return try Response.json(response(.neutral, user: user))
            }
            let variables = await variables(tenant: tenant, user: user, logger: context.logger)
            return try Response.json(response(variables, user: user))
        }
        return routes
    }

    /// Behind `Authenticator` (tool scope) and `RateLimitMiddleware`.
    var endpoints: RouteCollection<Context> {
        let routes = RouteCollection(context: Context.self)
        routes.get("/v1/users/{user}/variables") { request, context in
            let caller = context.caller
            let tenant = caller.tenant
            guard let raw = context.parameters.get("user"), let identity = CallerReference.parse(raw) else {
                throw APIError.badRequest("invalid_user", "user must be a u_ key, a +E.164 phone number or ext:<id>")
            }
            let user = tenant.userKeys.key(for: identity)
            let variables = await variables(tenant: tenant, user: user, logger: context.logger)
            return try Response.json(response(variables, user: user))
        }
        return routes
    }

    func response(_ variables: PrecallVariables, user: UserKey?) -> InitResponse {
        var override: Override?
        if configuration.firstMessageTemplate != nil || configuration.promptTemplate != nil {
            override = Override(
                agent: .init(
                    firstMessage: configuration.firstMessageTemplate.map(variables.render),
                    prompt: configuration.promptTemplate.map { Override.Prompt(prompt: variables.render($0)) }))
        }
        return InitResponse(
            dynamicVariables: variables, conversationConfigOverride: override, userID: user?.rawValue,
            customLLMExtraBody: user.map { ["engram_user": $0.rawValue] })
    }

    /// Callers with at least this many memories get their search caches loaded at the pre-call.
    static let warmFromMemories = 1_000

    /// The variables within the budget, or the neutral set.
    func variables(tenant: TenantContext, user: UserKey?, logger: Logger) async -> PrecallVariables {
        guard let user else {
            logger.info("pre-call answered with defaults", metadata: ["reason": "no_caller"])
            EngramMetrics.precallFallback(reason: "no_caller")
            return .neutral
        }
        let builder = precall
        let includeSensitive = tenant.includeSensitive(configuration)
        do {
            let (variables, injected) = try await withTimeout(configuration.precallBudget) {
                try await builder.variables(tenant: tenant, user: user, includeSensitive: includeSensitive)
            }
            await reinforcement.reinforce(injected, at: clock.now())
            // The call's first search or proxy turn should not load a large caller's search caches
            // (about 1 s at 20,000 memories after a write): loaded now, while the call connects.
            // A small caller's load costs a few milliseconds: not worth doing for calls that never search.
            if variables.memoryCount >= Self.warmFromMemories {
                let vault = precall.vault
                Task(priority: .utility) { await vault.warmSearch(tenant: tenant.id, user: user) }
            }
            return variables
        } catch {
            let reason = error is TimeoutError ? "budget" : "store_error"
            logger.warning("pre-call answered with defaults", metadata: ["reason": "\(reason)"])
            EngramMetrics.precallFallback(reason: reason)
            return .neutral
        }
    }
}

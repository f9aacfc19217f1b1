import EngramApp
import EngramCore
import EngramObservability
import Foundation
import Hummingbird
import Logging

/// `POST /v1/elevenlabs/conversation-init`: what Engram remembers, as dynamic variables, before
/// the phone stops ringing. Never fails a call: anything but a wrong key gets 200, with the
/// neutral set when memory is slow or the caller unknown.
struct ConversationInitController {
    let services: GatewayServices

    struct InitRequest: Decodable {
        var callerID: String?
        var agentID: String?
        var calledNumber: String?
        var callSid: String?
        var userID: String?
        enum CodingKeys: String, CodingKey {
            case callerID = "caller_id", agentID = "agent_id", calledNumber = "called_number", callSid = "call_sid", userID = "user_id"
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
            case type, dynamicVariables = "dynamic_variables", conversationConfigOverride = "conversation_config_override", userID = "user_id"
            case customLLMExtraBody = "custom_llm_extra_body"
        }
    }

    struct Override: Encodable {
        struct Agent: Encodable {
            var firstMessage: String?
            var prompt: Prompt?
            enum CodingKeys: String, CodingKey { case firstMessage = "first_message", prompt }
        }
        struct Prompt: Encodable { var prompt: String }
        var agent: Agent
    }

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.post("/v1/elevenlabs/conversation-init") { request, context in
            let caller = try await services.authenticator.authenticate(request, scope: .tool)
            // A malformed body is still a ringing phone: answer the neutral set.
            let body = try? await request.decodeJSON(InitRequest.self, limit: services.configuration.maxToolBodyBytes)
            let tenant = caller.tenant
            let user = services.userKey(tenant: tenant, userID: body?.userID, callerID: body?.callerID)
            // Over its rate limit a call still gets 200: the neutral set, never a 429.
            guard await services.rateLimiter.check(caller.keyID).allowed else {
                EngramMetrics.precallFallback(reason: "rate_limited")
                return try Response.json(response(.neutral, user: user))
            }
            let variables = await variables(tenant: tenant, user: user, logger: context.logger)
            return try Response.json(response(variables, user: user))
        }
        router.get("/v1/users/{user}/variables") { request, context in
            let caller = try await services.authenticator.authorize(request, scope: .tool)
            let tenant = caller.tenant
            guard let raw = context.parameters.get("user"), let identity = CallerReference.parse(raw) else {
                throw APIError.badRequest("invalid_user", "user must be a u_ key, a +E.164 phone number or ext:<id>")
            }
            let user = tenant.userKeys.key(for: identity)
            let variables = await variables(tenant: tenant, user: user, logger: context.logger)
            return try Response.json(response(variables, user: user))
        }
    }

    func response(_ variables: PrecallVariables, user: UserKey?) -> InitResponse {
        var override: Override?
        let configuration = services.configuration
        if configuration.firstMessageTemplate != nil || configuration.promptTemplate != nil {
            override = Override(agent: .init(
                firstMessage: configuration.firstMessageTemplate.map(variables.render),
                prompt: configuration.promptTemplate.map { Override.Prompt(prompt: variables.render($0)) }))
        }
        return InitResponse(
            dynamicVariables: variables, conversationConfigOverride: override, userID: user?.rawValue,
            customLLMExtraBody: user.map { ["engram_user": $0.rawValue] })
    }

    /// The variables within the budget, or the neutral set.
    func variables(tenant: TenantContext, user: UserKey?, logger: Logger) async -> PrecallVariables {
        guard let user else {
            logger.info("pre-call answered with defaults", metadata: ["reason": "no_caller"])
            EngramMetrics.precallFallback(reason: "no_caller")
            return .neutral
        }
        let builder = services.precall
        let includeSensitive = services.includeSensitive(tenant)
        do {
            let (variables, injected) = try await withTimeout(services.configuration.precallBudget) {
                try await builder.variables(tenant: tenant, user: user, includeSensitive: includeSensitive)
            }
            await services.reinforcement.reinforce(injected, at: services.clock.now())
            return variables
        } catch {
            let reason = error is TimeoutError ? "budget" : "store_error"
            logger.warning("pre-call answered with defaults", metadata: ["reason": "\(reason)"])
            EngramMetrics.precallFallback(reason: reason)
            return .neutral
        }
    }
}

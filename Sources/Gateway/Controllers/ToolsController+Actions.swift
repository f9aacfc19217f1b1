import EngramApp
import EngramCore
import Foundation
import Logging

/// What each memory tool does, apart from how it is called: the webhook routes
/// (`/v1/tools/...`) and the MCP server (`/mcp`) both run these, so limits, consent, sensitive
/// memories and audit are written once. The caller is authenticated (and held to its rate limit)
/// before any of them runs.
extension ToolsController {
    /// A tool's spoken-style answer: a status word for the agent's logic, a sentence for the LLM.
    struct ToolReply: Encodable, Sendable {
        var status: String
        var message: String
    }

    /// The caller's memories for `body.query`: one packed answer within the character budget.
    func search(_ body: SearchRequest, caller: Caller) async throws -> [SearchResult] {
        let query = body.query.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !query.isEmpty else { throw APIError.badRequest("missing_field", "query must not be empty") }
        guard query.utf8.count <= Self.maxQueryBytes else {
            throw APIError.badRequest("field_too_long", "query is longer than \(Self.maxQueryBytes) bytes (UTF-8)")
        }
        // `limit` caps the entries of the answer; without it, the character budget alone does.
        let maxItems = body.limit.map { min(20, max(1, $0)) }
        let tenant = caller.tenant
        guard let user = tenant.userKey(userID: body.userID, callerID: body.callerID) else { return [] }
        // Like pre-call, a tool answer can reach a spoofed caller id: sensitive memories stay
        // out unless the tenant allows them (operators still see them in the management API).
        let includeSensitive = tenant.includeSensitive(configuration)
        let hits = try await vault.search(
            tenant: tenant.id, user: user, query: query, limit: AnswerPacker.searchCandidates, includeSensitive: includeSensitive)
        // One answer, within the budget, no turn twice (AnswerPacker; the LoCoMo figure measures exactly this).
        let answer = AnswerPacker.pack(hits.map(\.memory), budget: configuration.searchAnswerChars, maxItems: maxItems)
        let breakdowns = Dictionary(hits.map { ($0.memory.id, $0.breakdown) }, uniquingKeysWith: { first, _ in first })
        await reinforcement.reinforce(answer.items.flatMap(\.memories), at: clock.now())
        let explain = body.explain ?? false
        return answer.items.map { item in
            SearchResult(
                text: item.text, when: Self.day(item.first.validFrom), sector: item.first.sector.rawValue,
                id: explain ? item.first.id : nil, score: explain ? breakdowns[item.first.id] : nil)
        }
    }

    /// Queues one fact the caller said for the worker to store.
    func remember(_ body: RememberRequest, caller: Caller, logger: Logger) async throws -> ToolReply {
        let fact = body.fact.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !fact.isEmpty else { throw APIError.badRequest("missing_field", "fact must not be empty") }
        guard fact.utf8.count <= Self.maxFactBytes else {
            throw APIError.badRequest("field_too_long", "fact is longer than \(Self.maxFactBytes) bytes (UTF-8)")
        }
        let tenant = caller.tenant
        guard let user = tenant.userKey(userID: body.userID, callerID: body.callerID) else {
            return ToolReply(status: "skipped", message: "The caller is unknown, so this was not remembered.")
        }
        let event = RememberEvent(user: user, fact: fact, conversationID: body.conversationID, saidAt: clock.now())
        let envelope = try vault.sealEvent(
            try JSONEncoder().encode(event), tenant: tenant.id, type: EventType.remember, receivedAt: clock.now(), users: [user])
        do {
            _ = try await ingest.accept(envelope, dedupe: [], logger: logger)
        } catch {
            logger.error("enqueue failed", metadata: ["error_class": "\(type(of: error))"])
            throw APIError(
                status: .serviceUnavailable, code: "queue_unavailable", message: "cannot store the fact right now", headers: [.retryAfter: "5"])
        }
        return ToolReply(status: "remembered", message: "Noted. I will remember that.")
    }

    /// Erases the caller, drops their queued events, and writes the audit entry.
    func forgetMe(_ body: CallerRequest, caller: Caller, logger: Logger) async throws -> ToolReply {
        let tenant = caller.tenant
        guard let user = tenant.userKey(userID: body.userID, callerID: body.callerID) else {
            return ToolReply(status: "skipped", message: "I could not identify the caller, so nothing was erased.")
        }
        try await erasure.eraseUser(tenant: tenant.id, user: user, actor: caller.keyID, action: "tool.forget_me", logger: logger)
        logger.info("caller erased by tool", metadata: ["tenant": "\(tenant.id)"])
        return ToolReply(status: "erased", message: "Everything remembered about this caller has been erased.")
    }

    /// Records the caller's consent choice, and the audit entry.
    func setConsent(_ body: ConsentRequest, caller: Caller) async throws -> ToolReply {
        let tenant = caller.tenant
        guard let user = tenant.userKey(userID: body.userID, callerID: body.callerID) else {
            return ToolReply(status: "skipped", message: "I could not identify the caller, so their choice was not recorded.")
        }
        try await vault.setConsent(tenant: tenant.id, user: user, granted: body.granted, at: clock.now())
        try await vault.audit(
            tenant: tenant.id, actor: caller.keyID, action: body.granted ? "tool.consent_granted" : "tool.consent_withdrawn", user: user)
        return body.granted
            ? ToolReply(status: "granted", message: "Thanks, I will remember what we talk about for next time.")
            : ToolReply(status: "withdrawn", message: "Understood, I will not keep anything from our calls.")
    }
}

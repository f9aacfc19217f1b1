import EngramApp
import EngramCore
import EngramObservability
import EngramProviders
import EngramQueue
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// `POST /v1/llm/chat/completions`: the agent's custom LLM. Adds what Engram remembers that
/// matters for this turn as one system message, forwards the request otherwise as received to
/// the configured OpenAI-compatible upstream, and relays the answer chunk by chunk. Nothing the
/// caller, the agent or the model says is logged or stored here.
struct LLMProxyController {
    typealias Context = AuthenticatedRequestContext
    let configuration: EngramConfiguration
    let vault: MemoryVault
    let precall: PrecallContextBuilder
    let reinforcement: ReinforcementBuffer
    let rateLimiter: RateLimiter
    let clock: WallClock
    let upstream: LLMUpstream

    /// `Engram-Memory` response header: what this turn got.
    static let memoryHeader = HTTPField.Name("Engram-Memory")!

    /// Behind `Authenticator` (tool scope) but not `RateLimitMiddleware`: over its budget a turn
    /// goes on without memory (`memory(for:caller:logger:)` checks the limiter itself).
    var endpoints: RouteCollection<Context> {
        let routes = RouteCollection(context: Context.self)
        routes.post("/v1/llm/chat/completions") { request, context in
            let caller = context.caller
            let data = try await request.strictJSONBody(limit: configuration.maxBodyBytes)
            guard var turn = ChatTurn(json: data) else {
                throw APIError.badRequest("invalid_json", "body is not a chat-completions JSON object")
            }
            let outcome = await memory(for: &turn, caller: caller, logger: context.logger)
            let answer: LLMUpstream.Answer
            do {
                guard let forwarded = turn.forwardedBody(original: data) else {
                    throw APIError.badRequest("invalid_json", "body cannot be forwarded as JSON")
                }
                answer = try await upstream.send(ByteBuffer(data: forwarded))
            } catch LLMUpstream.Failure.timedOut {
                throw APIError(status: .gatewayTimeout, code: "upstream_timeout", message: "the LLM upstream did not answer in time")
            } catch LLMUpstream.Failure.unreachable {
                throw APIError(status: .badGateway, code: "upstream_unreachable", message: "the LLM upstream could not be reached")
            }
            return relay(answer, outcome: outcome)
        }
        return routes
    }

    /// What memory did for one turn (the `Engram-Memory` header's value).
    enum Outcome: String {
        /// No caller named (`engram_user` absent or not a caller reference).
        case none
        /// A system message was added.
        case injected
        /// The caller is known but nothing new and relevant fits.
        case empty
        /// Retrieval missed its deadline, failed, or the key is over its rate limit.
        case miss
    }

    /// Adds the memory system message to `turn`, within the deadline, or leaves it as it is.
    func memory(for turn: inout ChatTurn, caller: Caller, logger: Logger) async -> Outcome {
        let tenant = caller.tenant
        guard let raw = turn.engramUser, raw.utf8.count <= 256, let identity = CallerReference.parse(raw) else { return .none }
        let user = tenant.userKeys.key(for: identity)
        let includeSensitive = tenant.includeSensitive(configuration)
        let query = ChatTurn.clipped(turn.latestUserText, maxBytes: ToolsController.maxQueryBytes)
        let firstTurn = turn.userMessageCount <= 1
        let precall = self.precall
        let vault = self.vault
        let candidates: [Memory]
        // The search tool's budget, per key; over it the turn goes on without memory (a 429 would
        // fail the caller's turn, not protect anything: the upstream call costs Engram nothing).
        // A key refused lately waits for the limiter before any retrieval work (an OpenAI query
        // embedding costs money); any other asks while retrieval starts, so the Redis round trip is
        // off the turn's path, and retrieval is cancelled if the answer is no.
        let waitForLimiter = rateLimiter.refusedLately(caller.keyID)
        if waitForLimiter, await !rateLimiter.check(caller.keyID).allowed {
            EngramMetrics.llmMemoryMiss(reason: "rate_limited")
            return .miss
        }
        do {
            // Retrieval runs to its end even when the turn stops waiting for it: cut short, it would
            // leave the caller's vector cache cold, and every later turn would miss again
            // (measured: a heavy caller missed 300 turns of 300 at 30 ms, and 0 once the cache was warm).
            // Its deadline counts from its start; its end resumes this turn directly (`StartedWork`).
            let retrieval = StartedWork.start(deadline: configuration.llmMemoryDeadline) {
                async let profile: [Memory] =
                    firstTurn
                    ? precall.variables(tenant: tenant, user: user, includeSensitive: includeSensitive).1 : []
                async let hits: [SearchHit] =
                    query.isEmpty
                    ? [] : vault.search(tenant: tenant.id, user: user, query: query, limit: 8, includeSensitive: includeSensitive)
                // The best for the question first, then who the caller is.
                return try await hits.map(\.memory) + profile
            }
            if !waitForLimiter, await !rateLimiter.check(caller.keyID).allowed {
                retrieval.cancel()
                EngramMetrics.llmMemoryMiss(reason: "rate_limited")
                return .miss
            }
            candidates = try await retrieval.value()
        } catch {
            let reason = error is TimeoutError ? "deadline" : "store_error"
            logger.warning("LLM turn forwarded without memory", metadata: ["reason": "\(reason)", "tenant": "\(tenant.id)"])
            EngramMetrics.llmMemoryMiss(reason: reason)
            return .miss
        }
        // The same packing as every other answer built from memories (AnswerPacker): overlapping
        // episodes merged, no turn twice, within the budget; nothing already in this conversation.
        let answer = AnswerPacker.pack(ChatTurn.fresh(candidates, notIn: turn.conversationText), budget: configuration.llmMemoryChars)
        let chosen = answer.items.flatMap(\.memories)
        // One line per item in the system message (an episode's turns follow its date).
        let lines = answer.items.map { $0.text.split(separator: "\n").joined(separator: " ") }
        guard !chosen.isEmpty, turn.addMemory(lines) else { return .empty }
        await reinforcement.reinforce(chosen, at: clock.now())
        return .injected
    }

    /// The upstream's answer as the client's: its status, Retry-After and body; a 200 streamed on
    /// as it arrives. A client that goes away stops the relay, which cancels the upstream request.
    func relay(_ answer: LLMUpstream.Answer, outcome: Outcome) -> Response {
        var headers: HTTPFields = [Self.memoryHeader: outcome.rawValue]
        headers[.contentType] = answer.contentType ?? "application/json"
        if let retryAfter = answer.retryAfter { headers[.retryAfter] = retryAfter }
        // The upstream refusing Engram's own key is Engram's fault, not the agent's: never a 401 here.
        let status: HTTPResponse.Status = [401, 403].contains(answer.status) ? .badGateway : HTTPResponse.Status(code: answer.status)
        if answer.status == 200 { headers[.cacheControl] = "no-cache" }
        let body = answer.body
        return Response(
            status: status, headers: headers,
            body: ResponseBody { writer in
                do {
                    while let chunk = try await body.next() {
                        try await writer.write(chunk)
                    }
                } catch {
                    body.cancel()
                    throw error
                }
                try await writer.finish(nil)
            })
    }
}

/// One chat-completions request, edited generically: everything the agent sent (model, tools,
/// tool calls, temperature, fields Engram does not know) goes upstream untouched, except
/// `elevenlabs_extra_body`, which is Engram's and never leaves.
struct ChatTurn {
    private var object: [String: Any]
    private var edited = false
    /// `elevenlabs_extra_body.engram_user`: the caller's key, from the pre-call answer.
    let engramUser: String?

    init?(json data: Data) {
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return nil }
        self.object = object
        engramUser = (object["elevenlabs_extra_body"] as? [String: Any])?["engram_user"] as? String
        if self.object.removeValue(forKey: "elevenlabs_extra_body") != nil { edited = true }
    }

    private var messages: [[String: Any]] { object["messages"] as? [[String: Any]] ?? [] }

    /// The text of a message: a string, or the text parts of a content array.
    static func text(of message: [String: Any]) -> String {
        if let text = message["content"] as? String { return text }
        let parts = message["content"] as? [[String: Any]] ?? []
        return parts.compactMap { $0["text"] as? String }.joined(separator: "\n")
    }

    var userMessageCount: Int { messages.filter { $0["role"] as? String == "user" }.count }

    var latestUserText: String {
        guard let last = messages.last(where: { $0["role"] as? String == "user" }) else { return "" }
        return Self.text(of: last).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Everything said so far (prompt included): a memory found in it was already given.
    var conversationText: String { messages.map(Self.text(of:)).joined(separator: "\n") }

    /// `text` cut at a character boundary to at most `maxBytes` of UTF-8.
    static func clipped(_ text: String, maxBytes: Int) -> String {
        guard text.utf8.count > maxBytes else { return text }
        var result = ""
        for character in text {
            guard result.utf8.count + character.utf8.count <= maxBytes else { break }
            result.append(character)
        }
        return result
    }

    /// Memories in order, once each, none already in the conversation, within `budget` characters.
    /// The candidates not yet in this conversation, each once. A memory counts as given when every
    /// line of it is there already (an earlier turn's memory message holds merged episodes line by line).
    static func fresh(_ candidates: [Memory], notIn conversation: String) -> [Memory] {
        var seen = Set<String>()
        return candidates.filter { memory in
            guard seen.insert(memory.id).inserted, !memory.content.isEmpty else { return false }
            return !memory.content.split(separator: "\n").allSatisfy { conversation.contains($0) }
        }
    }

    static let memoryPreamble =
        "What Engram remembers about this caller from earlier calls. It may be out of date; use it when it helps, do not read it out as a list:"

    /// Adds the memory system message after the agent's leading system messages (its prompt stays
    /// first). False when `messages` is not a list of objects (then the request is not touched).
    mutating func addMemory(_ lines: [String]) -> Bool {
        guard var list = object["messages"] as? [[String: Any]] else { return false }
        let content = ([Self.memoryPreamble] + lines.map { "- " + $0 }).joined(separator: "\n")
        let position = list.firstIndex { !["system", "developer"].contains($0["role"] as? String ?? "") } ?? list.count
        list.insert(["role": "system", "content": content], at: position)
        object["messages"] = list
        edited = true
        return true
    }

    /// The body to send upstream: the original bytes when nothing changed, else the edited JSON
    /// (nil if it cannot be written: never the original, which may carry `elevenlabs_extra_body`).
    func forwardedBody(original: Data) -> Data? {
        guard edited else { return original }
        return try? JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes])
    }
}

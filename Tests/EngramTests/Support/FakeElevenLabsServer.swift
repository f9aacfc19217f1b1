import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// A local stand-in for the ElevenLabs Conversations API (`GET /v1/convai/conversations` with
/// cursor pagination and the `agent_id`, `call_start_after_unix`, `call_start_before_unix`
/// filters; `GET /v1/convai/conversations/{id}`), served on 127.0.0.1 at a port the OS picks.
/// Requests need `xi-api-key`; scripted failures are consumed first, one per request.
final class FakeElevenLabsServer: @unchecked Sendable {  // mutable state only under `lock`
    /// One conversation the account holds.
    struct StoredConversation: Sendable {
        var id: String
        var agentID: String
        var startTimeUnixSecs: Int64
        var status: String
        /// The `GET /v1/convai/conversations/{id}` answer (a JSON object).
        var details: Data
    }

    /// A scripted answer for the next request, before any normal handling.
    enum Behaviour: Sendable, Equatable {
        /// Answer normally (to let a request through before scripted failures).
        case pass
        case status(Int, retryAfter: String? = nil)
    }

    struct RecordedRequest: Sendable {
        var path: String
        var query: [String: String]
        var apiKey: String?
    }

    /// Text put into error bodies, so a test can check it never reaches a report.
    static let bodyMarker = "FAKE-ELEVENLABS-BODY caller said Friday"

    private struct State {
        var conversations: [StoredConversation] = []
        var script: [Behaviour] = []
        var requests: [RecordedRequest] = []
        var maxPageSize: Int
    }

    let apiKey: String
    private let lock = NSLock()
    private var _state: State
    private var task: Task<Void, any Error>?
    private var _port: Int?

    private init(apiKey: String, maxPageSize: Int) {
        self.apiKey = apiKey
        _state = State(maxPageSize: maxPageSize)
    }

    private func withState<R>(_ body: (inout State) -> R) -> R { lock.withLock { body(&_state) } }

    /// Starts a server that pages at most `maxPageSize` conversations, and returns once it listens.
    static func start(apiKey: String = "xi_test_\(UUID().uuidString.prefix(8))", maxPageSize: Int = 2) async throws -> FakeElevenLabsServer {
        let server = FakeElevenLabsServer(apiKey: apiKey, maxPageSize: maxPageSize)
        try await server.run()
        return server
    }

    /// `http://127.0.0.1:<port>`, as `ELEVENLABS_API_BASE_URL` would be.
    var baseURL: String { "http://127.0.0.1:\(lock.withLock { _port ?? 0 })" }

    func add(_ conversation: StoredConversation) { withState { $0.conversations.append(conversation) } }

    /// Replaces a conversation's details and status (a call that finished since).
    func update(_ id: String, _ change: (inout StoredConversation) -> Void) {
        withState { state in
            if let index = state.conversations.firstIndex(where: { $0.id == id }) { change(&state.conversations[index]) }
        }
    }

    func enqueue(_ behaviours: Behaviour...) { withState { $0.script += behaviours } }

    var requests: [RecordedRequest] { withState { $0.requests } }
    var listRequests: [RecordedRequest] { requests.filter { $0.path == "/v1/convai/conversations" } }
    var detailRequests: [RecordedRequest] { requests.filter { $0.path.hasPrefix("/v1/convai/conversations/") } }

    func stop() async {
        let running = lock.withLock { () -> Task<Void, any Error>? in
            defer { task = nil }
            return task
        }
        running?.cancel()
        _ = try? await running?.value
    }

    // MARK: Serving

    private func run() async throws {
        let router = Router()
        router.get("v1/convai/conversations") { [self] request, _ in try respond(request, conversationID: nil) }
        router.get("v1/convai/conversations/:id") { [self] request, context in
            try respond(request, conversationID: context.parameters.get("id") ?? "")
        }
        let (serving, listening) = try await startLoopbackServer(router, name: "fake-elevenlabs")
        lock.withLock {
            task = serving
            _port = listening
        }
    }

    private func respond(_ request: Request, conversationID: String?) throws -> Response {
        var query: [String: String] = [:]
        for (key, value) in request.uri.queryParameters { query[String(key)] = String(value) }
        let recorded = RecordedRequest(path: request.uri.path, query: query, apiKey: request.headers[HTTPField.Name("xi-api-key")!])
        let scripted = withState { state -> Behaviour? in
            state.requests.append(recorded)
            return state.script.isEmpty ? nil : state.script.removeFirst()
        }
        if case .status(let code, let retryAfter)? = scripted {
            return Self.json(["detail": ["status": "scripted", "message": Self.bodyMarker]], status: code, retryAfter: retryAfter)
        }
        guard recorded.apiKey == apiKey else {
            return Self.json(["detail": ["status": "invalid_api_key", "message": "Invalid API key"]], status: 401)
        }
        if let conversationID {
            guard let stored = withState({ $0.conversations.first { $0.id == conversationID } }) else {
                return Self.json(["detail": ["status": "conversation_not_found", "message": "Conversation not found"]], status: 404)
            }
            return Self.raw(stored.details, status: 200)
        }
        return list(query)
    }

    private func list(_ query: [String: String]) -> Response {
        let (all, maxPageSize) = withState { ($0.conversations, $0.maxPageSize) }
        var matching = all.filter { conversation in
            if let agent = query["agent_id"], conversation.agentID != agent { return false }
            if let after = query["call_start_after_unix"].flatMap(Int64.init), conversation.startTimeUnixSecs <= after { return false }
            if let before = query["call_start_before_unix"].flatMap(Int64.init), conversation.startTimeUnixSecs >= before { return false }
            return true
        }
        matching.sort { ($0.startTimeUnixSecs, $0.id) > ($1.startTimeUnixSecs, $1.id) }
        let offset = query["cursor"].flatMap { Int($0.dropFirst("cur_".count)) } ?? 0
        let size = min(maxPageSize, query["page_size"].flatMap(Int.init) ?? 30)
        let page = matching.dropFirst(offset).prefix(size)
        let hasMore = offset + page.count < matching.count
        let items: [[String: Any]] = page.map { conversation in
            [
                "agent_id": conversation.agentID, "agent_name": "Front desk", "conversation_id": conversation.id,
                "start_time_unix_secs": conversation.startTimeUnixSecs, "call_duration_secs": 41, "message_count": 5,
                "status": conversation.status, "call_successful": "success", "direction": "inbound",
            ]
        }
        return Self.json(
            ["conversations": items, "has_more": hasMore, "next_cursor": hasMore ? "cur_\(offset + page.count)" : NSNull()], status: 200)
    }

    private static func json(_ object: [String: Any], status: Int, retryAfter: String? = nil) -> Response {
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        var response = raw(data, status: status)
        if let retryAfter { response.headers[HTTPField.Name("Retry-After")!] = retryAfter }
        return response
    }

    private static func raw(_ data: Data, status: Int) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

extension FakeElevenLabsServer.StoredConversation {
    /// The post-call fixture's conversation as the API would return it: same transcript,
    /// analysis and initiation data, with this id, agent, start time, status and caller.
    static func fixture(
        id: String = "conv_\(UUID().uuidString.prefix(12))", agentID: String = "agent_test", start: Int64, status: String = "done",
        phone: String? = Fixtures.fixturePhone, callerLine: String? = nil, reason: String? = nil
    ) throws -> Self {
        let body = try fixtureTranscript(conversationID: id, phone: phone) { object in
            var data = object["data"] as! [String: Any]
            if let callerLine {
                var transcript = data["transcript"] as! [[String: Any]]
                transcript[1]["message"] = callerLine  // the caller's one turn
                data["transcript"] = transcript
            }
            if let reason {
                var analysis = data["analysis"] as! [String: Any]
                var results = analysis["data_collection_results"] as! [String: Any]
                var item = results["reason"] as! [String: Any]
                item["value"] = reason
                results["reason"] = item
                analysis["data_collection_results"] = results
                data["analysis"] = analysis
            }
            object["data"] = data
        }
        let object = try JSONSerialization.jsonObject(with: body) as! [String: Any]
        var data = object["data"] as! [String: Any]
        data["agent_id"] = agentID
        data["status"] = status
        var metadata = data["metadata"] as! [String: Any]
        metadata["start_time_unix_secs"] = start
        data["metadata"] = metadata
        return Self(id: id, agentID: agentID, startTimeUnixSecs: start, status: status, details: try JSONSerialization.data(withJSONObject: data))
    }

    /// The `post_call_transcription` webhook ElevenLabs would have sent for it.
    var webhookBody: Data {
        let details = try! JSONSerialization.jsonObject(with: details)
        return try! JSONSerialization.data(withJSONObject: [
            "type": "post_call_transcription", "event_timestamp": startTimeUnixSecs + 60, "data": details,
        ])
    }
}

/// Runs `body` with a started fake ElevenLabs server, and stops it afterwards whatever happens.
func withFakeElevenLabs<T>(maxPageSize: Int = 2, _ body: (FakeElevenLabsServer) async throws -> T) async throws -> T {
    let server = try await FakeElevenLabsServer.start(maxPageSize: maxPageSize)
    do {
        let result = try await body(server)
        await server.stop()
        return result
    } catch {
        await server.stop()
        throw error
    }
}

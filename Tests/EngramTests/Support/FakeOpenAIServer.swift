import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// A local stand-in for the OpenAI HTTP API (`POST /v1/chat/completions`, `POST /v1/embeddings`),
/// served on 127.0.0.1 at a port the OS picks. Each request consumes the next scripted behaviour
/// (or the default when the script is empty) and is recorded for assertions.
final class FakeOpenAIServer: @unchecked Sendable {  // mutable state only under `lock`
    /// What the server does with one request.
    enum Behaviour: Sendable, Equatable {
        /// A valid reply: for chat, one memory per caller turn of the transcript, citing its
        /// index, and a summary; for embeddings, deterministic unit vectors, one per input.
        case ok
        /// A chat reply whose `choices[0].message.content` is this text (a canned extraction).
        case chatContent(String)
        /// An error status, with an optional `Retry-After` header.
        case status(Int, retryAfter: String? = nil)
        /// Waits this long, then answers as `.ok` (longer than the client's timeout).
        case slow(Duration)
        /// A 200 that is not what the client expects.
        case malformed(Malformed = .notJSON)
    }

    enum Malformed: Sendable, Equatable {
        /// The body is not JSON at all.
        case notJSON
        /// JSON, but neither a chat nor an embeddings reply.
        case wrongShape
        /// A chat reply whose content is not the extraction schema.
        case contentNotSchema
    }

    /// One request as the server received it.
    struct RecordedRequest: Sendable {
        var method: String
        var path: String
        var authorization: String?
        var contentType: String?
        var body: Data

        /// The body decoded as a JSON object (nil when it is not one).
        var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] }
        var model: String? { json?["model"] as? String }
        /// `response_format.type` of a chat request.
        var responseFormatType: String? { (json?["response_format"] as? [String: Any])?["type"] as? String }
        /// `input` of an embeddings request.
        var inputs: [String]? { json?["input"] as? [String] }
        /// The content of each chat message, in order.
        var messageContents: [String] { (json?["messages"] as? [[String: Any]] ?? []).compactMap { $0["content"] as? String } }
    }

    /// Text put into malformed bodies, so a test can check it never reaches an error message.
    static let bodyMarker = "FAKE-BODY-MARKER caller said Friday at 10"

    private struct State {
        var script: [Behaviour] = []
        var defaultBehaviour: Behaviour = .ok
        var embeddingDimension: Int
        var requests: [RecordedRequest] = []
    }

    private let lock = NSLock()
    private var _state: State
    private var task: Task<Void, any Error>?
    private var _port: Int?

    private init(embeddingDimension: Int) {
        _state = State(embeddingDimension: embeddingDimension)
    }

    private func withState<R>(_ body: (inout State) -> R) -> R {
        lock.withLock { body(&_state) }
    }

    /// Starts a server and returns once it listens.
    static func start(embeddingDimension: Int = 8) async throws -> FakeOpenAIServer {
        let server = FakeOpenAIServer(embeddingDimension: embeddingDimension)
        try await server.run()
        return server
    }

    /// `http://127.0.0.1:<port>/v1`, as `ENGRAM_LLM_BASE_URL` would be.
    var baseURL: String { "http://127.0.0.1:\(port)/v1" }

    var port: Int { lock.withLock { _port ?? 0 } }

    /// Appends behaviours for the next requests, in order.
    func enqueue(_ behaviours: Behaviour...) {
        withState { $0.script += behaviours }
    }

    /// What requests get once the script is used up (`.ok` unless changed).
    func setDefault(_ behaviour: Behaviour) {
        withState { $0.defaultBehaviour = behaviour }
    }

    /// Dimension of the embeddings served when a request does not ask for one (`dimensions`).
    func setEmbeddingDimension(_ dimension: Int) {
        withState { $0.embeddingDimension = dimension }
    }

    var requests: [RecordedRequest] { withState { $0.requests } }
    var requestCount: Int { withState { $0.requests.count } }

    /// Stops listening; in-flight slow answers are cancelled.
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
        router.post("v1/chat/completions") { [self] request, _ in try await respond(to: request, endpoint: .chat) }
        router.post("v1/embeddings") { [self] request, _ in try await respond(to: request, endpoint: .embeddings) }

        let (serving, listening) = try await startLoopbackServer(router, name: "fake-openai")
        lock.withLock {
            task = serving
            _port = listening
        }
    }

    private enum Endpoint { case chat, embeddings }

    private func respond(to request: Request, endpoint: Endpoint) async throws -> Response {
        let bytes = try await request.body.collect(upTo: 16 * 1024 * 1024)
        let recorded = RecordedRequest(
            method: request.method.rawValue, path: request.uri.path,
            authorization: request.headers[.authorization], contentType: request.headers[.contentType],
            body: Data(bytes.readableBytesView))
        let behaviour = withState { state -> Behaviour in
            state.requests.append(recorded)
            return state.script.isEmpty ? state.defaultBehaviour : state.script.removeFirst()
        }
        return try await answer(behaviour, to: recorded, endpoint: endpoint)
    }

    private func answer(_ behaviour: Behaviour, to request: RecordedRequest, endpoint: Endpoint) async throws -> Response {
        switch behaviour {
        case .ok:
            switch endpoint {
            case .chat: return Self.json(Self.chatReply(content: Self.extraction(from: request)))
            case .embeddings: return Self.json(embeddingsReply(to: request))
            }
        case .chatContent(let content):
            return Self.json(Self.chatReply(content: content))
        case .status(let code, let retryAfter):
            var headers = HTTPFields()
            headers[.contentType] = "application/json"
            if let retryAfter { headers[HTTPField.Name("Retry-After")!] = retryAfter }
            let body = #"{"error":{"message":"\#(Self.bodyMarker)","type":"fake_error","code":\#(code)}}"#
            return Response(status: .init(code: code), headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
        case .slow(let delay):
            try await Task.sleep(for: delay)
            return try await answer(.ok, to: request, endpoint: endpoint)
        case .malformed(.notJSON):
            return Self.raw("<html>\(Self.bodyMarker)</html>", contentType: "text/html")
        case .malformed(.wrongShape):
            return Self.json(["unexpected": Self.bodyMarker, "data": "not a list", "choices": "not a list"])
        case .malformed(.contentNotSchema):
            return Self.json(Self.chatReply(content: "Sure! Here are the memories: \(Self.bodyMarker)"))
        }
    }

    // MARK: Replies

    static func chatReply(content: String) -> [String: Any] {
        [
            "id": "chatcmpl-fake", "object": "chat.completion", "created": Int(Date().timeIntervalSince1970), "model": "fake",
            "choices": [["index": 0, "finish_reason": "stop", "message": ["role": "assistant", "content": content]]],
            "usage": ["prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2],
        ]
    }

    /// One semantic memory per caller turn (`[i] caller: text` lines of the user message),
    /// citing its index, and a summary.
    static func extraction(from request: RecordedRequest) -> String {
        let transcript = request.messageContents.last ?? ""
        var memories: [[String: Any]] = []
        for line in transcript.split(separator: "\n") {
            guard line.hasPrefix("["), let close = line.firstIndex(of: "]"),
                let index = Int(line[line.index(after: line.startIndex)..<close])
            else { continue }
            let rest = line[line.index(after: close)...].trimmingCharacters(in: .whitespaces)
            guard rest.hasPrefix("caller:") else { continue }
            let text = rest.dropFirst("caller:".count).trimmingCharacters(in: .whitespaces)
            memories.append([
                "content": "The caller said: \(text)", "sector": "semantic", "slot": NSNull(), "importance": 0.6,
                "valid_from": NSNull(), "source_turns": [index], "sensitive": false,
            ])
        }
        let payload: [String: Any] = ["memories": memories, "summary": "The caller spoke with the agent.", "user_name": NSNull()]
        let data = try! JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    /// Vectors listed in reverse order (clients must sort by `index`).
    private func embeddingsReply(to request: RecordedRequest) -> [String: Any] {
        let dimension = (request.json?["dimensions"] as? Int) ?? withState { $0.embeddingDimension }
        let inputs = request.inputs ?? []
        let data: [[String: Any]] = inputs.enumerated().reversed().map { index, text in
            ["object": "embedding", "index": index, "embedding": Self.vector(for: text, dimension: dimension).map(Double.init)]
        }
        return ["object": "list", "data": data, "model": request.model ?? "fake", "usage": ["prompt_tokens": 1, "total_tokens": 1]]
    }

    /// The unit vector the server returns for `text`: deterministic, different per text.
    static func vector(for text: String, dimension: Int) -> [Float] {
        var seed: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 { seed = (seed ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        var values: [Float] = []
        values.reserveCapacity(dimension)
        for _ in 0..<dimension {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            values.append(Float(Int64(bitPattern: seed >> 11) % 2001 - 1000) / 1000 + 0.001)
        }
        let norm = values.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return values.map { $0 / norm }
    }

    private static func json(_ object: [String: Any]) -> Response {
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return raw(String(decoding: data, as: UTF8.self), contentType: "application/json")
    }

    private static func raw(_ body: String, contentType: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = contentType
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}

enum FakeServerError: Error { case didNotStart }

/// Runs `body` with a started fake server, and stops it afterwards whatever happens.
func withFakeOpenAI<T>(embeddingDimension: Int = 8, _ body: (FakeOpenAIServer) async throws -> T) async throws -> T {
    let server = try await FakeOpenAIServer.start(embeddingDimension: embeddingDimension)
    do {
        let result = try await body(server)
        await server.stop()
        return result
    } catch {
        await server.stop()
        throw error
    }
}

import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// A local OpenAI-compatible chat-completions upstream for the custom-LLM proxy, on 127.0.0.1 at
/// a port the OS picks. Streams server-sent events chunk by chunk, can hold the stream after its
/// first chunk, trickle until the reader goes away, fail with a status, or hang; records every
/// request it receives and whether its reader went away.
final class FakeStreamingUpstream: @unchecked Sendable {  // mutable state only under `lock`
    enum Behaviour: Sendable {
        /// A 200 `text/event-stream`: these chunks, then `data: [DONE]`. With `holdAfterFirst`,
        /// nothing after the first chunk until `release()`.
        case stream([String], holdAfterFirst: Bool = false)
        /// A 200 `text/event-stream` that sends a chunk every `interval` until its reader goes away (at most 10 minutes).
        case trickle(interval: Duration)
        /// A non-streamed 200 `application/json` body.
        case json(String)
        /// An error status with a JSON body and an optional `Retry-After`.
        case status(Int, retryAfter: String? = nil)
        /// Never answers.
        case hang
    }

    struct RecordedRequest: Sendable {
        var path: String
        var authorization: String?
        var body: Data
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        var messages: [[String: Any]] { json["messages"] as? [[String: Any]] ?? [] }
        var systemContents: [String] { messages.filter { $0["role"] as? String == "system" }.compactMap { $0["content"] as? String } }
    }

    /// One server-sent event carrying `text` as a delta, as OpenAI streams them.
    static func event(_ text: String, index: Int) -> String {
        "data: {\"id\":\"chatcmpl-fake\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\(text)\"},\"seq\":\(index)}]}\n\n"
    }

    static let done = "data: [DONE]\n\n"

    private struct State {
        var script: [Behaviour] = []
        var defaultBehaviour: Behaviour = .stream([FakeStreamingUpstream.event("Hello", index: 0)])
        var requests: [RecordedRequest] = []
        var released = false
        var streamsFinished = 0
        var readersGone = 0
        var chunksWritten = 0
    }

    private let lock = NSLock()
    private var state = State()
    private var task: Task<Void, any Error>?
    private(set) var port = 0

    private func withState<R>(_ body: (inout State) -> R) -> R { lock.withLock { body(&state) } }

    static func start() async throws -> FakeStreamingUpstream {
        let server = FakeStreamingUpstream()
        let router = Router()
        router.post("v1/chat/completions") { [server] request, _ in try await server.respond(to: request) }
        let (serving, listening) = try await startLoopbackServer(router, name: "fake-llm-upstream")
        server.lock.withLock {
            server.task = serving
            server.port = listening
        }
        return server
    }

    /// `http://127.0.0.1:<port>/v1`, as `ENGRAM_LLM_UPSTREAM_URL` would be.
    var baseURL: String { "http://127.0.0.1:\(port)/v1" }

    func enqueue(_ behaviours: Behaviour...) { withState { $0.script += behaviours } }
    /// Lets a held stream go on.
    func release() { withState { $0.released = true } }
    var requests: [RecordedRequest] { withState { $0.requests } }
    /// Streams written to the end.
    var streamsFinished: Int { withState { $0.streamsFinished } }
    /// Streams whose reader went away (a write failed or the handler was cancelled).
    var readersGone: Int { withState { $0.readersGone } }
    var chunksWritten: Int { withState { $0.chunksWritten } }

    func stop() async {
        let running = lock.withLock { task }
        running?.cancel()
        _ = try? await running?.value
    }

    private func respond(to request: Request) async throws -> Response {
        let bytes = try await request.body.collect(upTo: 16 * 1024 * 1024)
        let behaviour = withState { state -> Behaviour in
            state.requests.append(RecordedRequest(path: request.uri.path, authorization: request.headers[.authorization], body: Data(buffer: bytes)))
            return state.script.isEmpty ? state.defaultBehaviour : state.script.removeFirst()
        }
        let sse: HTTPFields = [.contentType: "text/event-stream"]
        switch behaviour {
        case .json(let text):
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
        case .status(let code, let retryAfter):
            var headers: HTTPFields = [.contentType: "application/json"]
            if let retryAfter { headers[.retryAfter] = retryAfter }
            return Response(
                status: .init(code: code), headers: headers,
                body: .init(byteBuffer: ByteBuffer(string: "{\"error\":{\"message\":\"fake \(code)\",\"type\":\"fake\"}}")))
        case .hang:
            try await Task.sleep(for: .seconds(600))
            return Response(status: .ok)
        case .stream(let chunks, let hold):
            return Response(
                status: .ok, headers: sse,
                body: ResponseBody { [self] writer in
                    do {
                        for (index, chunk) in (chunks + [Self.done]).enumerated() {
                            try await writer.write(ByteBuffer(string: chunk))
                            withState { $0.chunksWritten += 1 }
                            if index == 0, hold {
                                while !withState({ $0.released }) { try await Task.sleep(for: .milliseconds(5)) }
                            }
                        }
                        try await writer.finish(nil)
                        withState { $0.streamsFinished += 1 }
                    } catch {
                        withState { $0.readersGone += 1 }
                        throw error
                    }
                })
        case .trickle(let interval):
            return Response(
                status: .ok, headers: sse,
                body: ResponseBody { [self] writer in
                    do {
                        let end = ContinuousClock.now + .seconds(600)
                        var index = 0
                        while ContinuousClock.now < end {
                            try await writer.write(ByteBuffer(string: Self.event("tick", index: index)))
                            withState { $0.chunksWritten += 1 }
                            index += 1
                            try await Task.sleep(for: interval)
                        }
                        try await writer.finish(nil)
                        withState { $0.streamsFinished += 1 }
                    } catch {
                        withState { $0.readersGone += 1 }
                        throw error
                    }
                })
        }
    }
}

import AsyncHTTPClient
import EngramCore
import Foundation
import NIOCore
import NIOHTTP1

/// The OpenAI-compatible chat-completions endpoint the custom-LLM proxy forwards to. Opens one
/// request within a deadline (connect, answer head and first body byte) and hands back the rest
/// of the body as it arrives, never buffered. Never sees or logs what the messages say.
public struct LLMUpstream: Sendable {
    public let baseURL: String
    let apiKey: String?
    let timeout: Duration
    let http: HTTPClient

    /// Largest error body relayed from the upstream (a 429's or 500's explanation).
    static let maxErrorBodyBytes = 64 * 1024

    public init(baseURL: String, apiKey: String?, timeout: Duration, http: HTTPClient = .shared) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.apiKey = apiKey
        self.timeout = timeout
        self.http = http
    }

    /// The upstream could not be reached or did not start answering in time.
    public enum Failure: Error, CustomStringConvertible {
        case timedOut
        case unreachable
        public var description: String {
            switch self {
            case .timedOut: "the upstream did not answer in time"
            case .unreachable: "the upstream could not be reached"
            }
        }
    }

    /// The upstream's answer: its status and headers, then its body (the first chunk already read).
    public struct Answer: Sendable {
        public let status: Int
        public let contentType: String?
        public let retryAfter: String?
        public let body: Body
    }

    /// The rest of an answer's body, to be read once, in order. Dropping it unread cancels the
    /// upstream request (AsyncHTTPClient closes the connection when its body iterator goes away).
    public final class Body: @unchecked Sendable {  // read by one task at a time
        private var first: ByteBuffer?
        private var iterator: HTTPClientResponse.Body.AsyncIterator?

        init(first: ByteBuffer?, iterator: HTTPClientResponse.Body.AsyncIterator?) {
            self.first = first
            self.iterator = iterator
        }

        /// The next chunk as the upstream sent it, nil at the end.
        public func next() async throws -> ByteBuffer? {
            if let chunk = first {
                first = nil
                return chunk
            }
            guard var current = iterator else { return nil }
            iterator = nil
            let chunk = try await current.next()
            if chunk != nil { iterator = current }
            return chunk
        }

        /// Stops reading: the upstream request is cancelled if it is still streaming.
        public func cancel() {
            first = nil
            iterator = nil
        }
    }

    /// Sends `body` (a chat-completions request, JSON) to `<baseURL>/chat/completions`.
    public func send(_ body: ByteBuffer) async throws -> Answer {
        var request = HTTPClientRequest(url: baseURL + "/chat/completions")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Accept", value: "text/event-stream, application/json")
        if let apiKey, !apiKey.isEmpty { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        request.body = .bytes(body)
        let http = self.http
        let prepared = request
        do {
            // Connect, head and first byte share one deadline; after that the stream runs as long
            // as the upstream keeps sending (the gateway's idle timeout bounds a silent one).
            return try await withTimeout(timeout) {
                // The whole-request deadline of AsyncHTTPClient would cut long streams: a day here,
                // the real bound is the race above.
                let response = try await http.execute(prepared, timeout: .hours(24))
                let status = Int(response.status.code)
                let contentType = response.headers.first(name: "Content-Type")
                let retryAfter = response.headers.first(name: "Retry-After")
                if status != 200 {
                    let collected = try await response.body.collect(upTo: Self.maxErrorBodyBytes)
                    return Answer(status: status, contentType: contentType, retryAfter: retryAfter, body: Body(first: collected, iterator: nil))
                }
                var iterator = response.body.makeAsyncIterator()
                let first = try await iterator.next()
                return Answer(status: status, contentType: contentType, retryAfter: retryAfter, body: Body(first: first, iterator: iterator))
            }
        } catch is TimeoutError {
            throw Failure.timedOut
        } catch is CancellationError {
            throw CancellationError()
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            throw Failure.timedOut
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw Failure.unreachable
        }
    }
}

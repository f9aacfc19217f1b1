import AsyncHTTPClient
import EngramCore
import Foundation
import NIOCore
import NIOFoundationCompat

/// Why a call to the ElevenLabs API failed. Never carries a response body: a conversation's
/// details hold the transcript and the caller's number.
public enum ElevenLabsAPIError: Error, CustomStringConvertible, Sendable, Equatable {
    /// 401/403: the key is wrong, revoked, or lacks Conversational AI read access.
    case unauthorized(status: Int)
    case notFound
    case rateLimited(retryAfter: Double?)
    case server(status: Int)
    case client(status: Int)
    case malformedResponse(String)
    case timeout
    case transport(String)

    public var description: String {
        switch self {
        case .unauthorized(let status):
            return
                "ElevenLabs refused the API key (HTTP \(status)): check ELEVENLABS_API_KEY (it needs read access to Conversational AI conversations)"
        case .notFound: return "ElevenLabs has no such conversation (HTTP 404)"
        case .rateLimited(let after): return "ElevenLabs rate limit (HTTP 429)" + (after.map { ", retry after \($0)s" } ?? "")
        case .server(let status): return "ElevenLabs server error (HTTP \(status))"
        case .client(let status): return "ElevenLabs refused the request (HTTP \(status))"
        case .malformedResponse(let why): return "unexpected answer from ElevenLabs: \(why)"
        case .timeout: return "ElevenLabs did not answer in time"
        case .transport(let why): return "cannot reach ElevenLabs: \(why)"
        }
    }

    /// Worth another attempt: rate limits, server errors, timeouts, connection failures.
    public var isTransient: Bool {
        switch self {
        case .rateLimited, .server, .timeout, .transport: return true
        default: return false
        }
    }
}

/// One item of `GET /v1/convai/conversations`, decoded leniently (fields get added over time).
public struct ConversationSummary: Decodable, Sendable, Equatable {
    public var conversationID: String
    public var agentID: String?
    public var startTimeUnixSecs: Int64?
    /// `initiated`, `in-progress`, `processing`, `done` or `failed`.
    public var status: String?
    /// `success`, `failure` or `unknown`.
    public var callSuccessful: String?

    enum CodingKeys: String, CodingKey {
        case conversationID = "conversation_id"
        case agentID = "agent_id"
        case startTimeUnixSecs = "start_time_unix_secs"
        case status
        case callSuccessful = "call_successful"
    }

    public init(conversationID: String, agentID: String?, startTimeUnixSecs: Int64?, status: String?, callSuccessful: String? = nil) {
        self.conversationID = conversationID
        self.agentID = agentID
        self.startTimeUnixSecs = startTimeUnixSecs
        self.status = status
        self.callSuccessful = callSuccessful
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        conversationID = try c.decode(String.self, forKey: .conversationID)
        agentID = try? c.decodeIfPresent(String.self, forKey: .agentID)
        startTimeUnixSecs = c.decodeUnixSeconds(.startTimeUnixSecs)
        status = try? c.decodeIfPresent(String.self, forKey: .status)
        callSuccessful = try? c.decodeIfPresent(String.self, forKey: .callSuccessful)
    }
}

/// One page of the conversation list: `{conversations, next_cursor, has_more}`.
public struct ConversationPage: Decodable, Sendable {
    public var conversations: [ConversationSummary]
    public var nextCursor: String?
    public var hasMore: Bool

    enum CodingKeys: String, CodingKey {
        case conversations
        case nextCursor = "next_cursor"
        case hasMore = "has_more"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        conversations = try c.decode([ConversationSummary].self, forKey: .conversations)
        nextCursor = try? c.decodeIfPresent(String.self, forKey: .nextCursor)
        hasMore = (try? c.decodeIfPresent(Bool.self, forKey: .hasMore)) ?? false
    }
}

/// The ElevenLabs Conversations API (`xi-api-key` header): list an agent's conversations and
/// fetch one with its transcript. Retries 429, 5xx, timeouts and connection failures with
/// exponential backoff and jitter, honouring `Retry-After`.
public struct ElevenLabsClient: Sendable {
    public static let defaultBaseURL = "https://api.elevenlabs.io"

    public let baseURL: String
    public let apiKey: String
    public let timeout: Duration
    public let maxRetries: Int
    /// First backoff step; doubles per attempt, capped at `maxBackoff`.
    public let retryBase: Duration
    public let maxBackoff: Duration
    /// Longest `Retry-After` waited for; a longer one fails the call.
    public let maxRetryAfter: Duration
    let http: HTTPClient

    public init(
        baseURL: String = ElevenLabsClient.defaultBaseURL, apiKey: String, timeout: Duration = .seconds(30), maxRetries: Int = 5,
        retryBase: Duration = .milliseconds(500), maxBackoff: Duration = .seconds(30), maxRetryAfter: Duration = .seconds(60),
        http: HTTPClient = .shared
    ) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.apiKey = apiKey
        self.timeout = timeout
        self.maxRetries = maxRetries
        self.retryBase = retryBase
        self.maxBackoff = maxBackoff
        self.maxRetryAfter = maxRetryAfter
        self.http = http
    }

    /// One page of conversations, newest first. Times are Unix seconds; `startedAfter` and
    /// `startedBefore` map to `call_start_after_unix` and `call_start_before_unix`.
    public func listConversations(
        agentID: String?, startedAfter: Int64?, startedBefore: Int64?, cursor: String?, pageSize: Int = 100
    ) async throws -> ConversationPage {
        var query: [URLQueryItem] = [URLQueryItem(name: "page_size", value: String(pageSize))]
        if let agentID { query.append(URLQueryItem(name: "agent_id", value: agentID)) }
        if let startedAfter { query.append(URLQueryItem(name: "call_start_after_unix", value: String(startedAfter))) }
        if let startedBefore { query.append(URLQueryItem(name: "call_start_before_unix", value: String(startedBefore))) }
        if let cursor { query.append(URLQueryItem(name: "cursor", value: cursor)) }
        let bytes = try await get("/v1/convai/conversations", query: query)
        do {
            return try JSONDecoder().decode(ConversationPage.self, from: bytes)
        } catch {
            throw ElevenLabsAPIError.malformedResponse("the conversation list is not {conversations, has_more, next_cursor}")
        }
    }

    /// The raw JSON object of `GET /v1/convai/conversations/{id}`: the same shape as `data` of a
    /// `post_call_transcription` webhook (transcript, metadata, analysis, initiation data).
    public func conversation(id: String) async throws -> Data {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove("/")
        guard let escaped = id.addingPercentEncoding(withAllowedCharacters: allowed), !id.isEmpty else {
            throw ElevenLabsAPIError.client(status: 400)
        }
        let bytes = try await get("/v1/convai/conversations/\(escaped)", query: [])
        guard (try? JSONSerialization.jsonObject(with: bytes)) is [String: Any] else {
            throw ElevenLabsAPIError.malformedResponse("conversation details are not a JSON object")
        }
        return bytes
    }

    func get(_ path: String, query: [URLQueryItem]) async throws -> Data {
        var components = URLComponents()
        components.queryItems = query.isEmpty ? nil : query
        let url = baseURL + path + (components.percentEncodedQuery.map { "?" + $0 } ?? "")
        var attempt = 0
        while true {
            do {
                return try await once(url)
            } catch let error as ElevenLabsAPIError {
                guard error.isTransient, attempt < maxRetries else { throw error }
                var wait = backoff(attempt: attempt)
                if case .rateLimited(let after?) = error {
                    guard after <= maxRetryAfter.seconds else { throw error }
                    wait = max(wait, SafeNumber.milliseconds(fromSeconds: after))
                }
                attempt += 1
                try await Task.sleep(for: wait)
            }
        }
    }

    /// `retryBase · 2^attempt`, capped, with jitter over its upper half.
    func backoff(attempt: Int) -> Duration {
        let base = min(maxBackoff.seconds, retryBase.seconds * pow(2, Double(attempt)))
        guard base > 0 else { return .zero }
        return SafeNumber.milliseconds(fromSeconds: Double.random(in: (base / 2)...base))
    }

    private func once(_ url: String) async throws -> Data {
        var request = HTTPClientRequest(url: url)
        request.method = .GET
        request.headers.add(name: "xi-api-key", value: apiKey)
        request.headers.add(name: "Accept", value: "application/json")
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await http.execute(request, timeout: .nanoseconds(timeout.nanoseconds))
            bytes = try await response.body.collect(upTo: 64 * 1024 * 1024)
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            throw ElevenLabsAPIError.timeout
        } catch let error as CancellationError {
            throw error
        } catch {
            throw ElevenLabsAPIError.transport(String(describing: type(of: error)))
        }
        switch response.status.code {
        case 200..<300: return Data(buffer: bytes)
        case 401, 403: throw ElevenLabsAPIError.unauthorized(status: Int(response.status.code))
        case 404: throw ElevenLabsAPIError.notFound
        case 429: throw ElevenLabsAPIError.rateLimited(retryAfter: SafeNumber.retryAfterSeconds(response.headers.first(name: "Retry-After")))
        case 408, 500..<600: throw ElevenLabsAPIError.server(status: Int(response.status.code))
        default: throw ElevenLabsAPIError.client(status: Int(response.status.code))
        }
    }
}

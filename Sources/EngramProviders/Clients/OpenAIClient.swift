import AsyncHTTPClient
import EngramCore
import EngramObservability
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Tracing

/// A small client for OpenAI-compatible JSON endpoints: bearer key, timeout, retries with
/// exponential backoff and jitter on 429/5xx/timeouts, `Retry-After` honoured. Errors carry the
/// status and class only, never a response body (it can echo the transcript).
public struct OpenAIClient: Sendable {
    public let baseURL: String
    public let apiKey: String
    public let timeout: Duration
    public let maxRetries: Int
    /// Longest `Retry-After` waited in-process; longer ones go back to the queue's schedule.
    public let maxInlineWait: Duration
    public let breaker: CircuitBreaker
    let http: HTTPClient
    /// Where requests go, for the client span: host, port and path only (never the query).
    let server: (scheme: String, host: String, port: Int, path: String)?

    public init(
        baseURL: String, apiKey: String, timeout: Duration, maxRetries: Int = 2, maxInlineWait: Duration = .seconds(5),
        breaker: CircuitBreaker = CircuitBreaker(name: "openai"), http: HTTPClient = .shared
    ) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.apiKey = apiKey
        self.timeout = timeout
        self.maxRetries = maxRetries
        self.maxInlineWait = maxInlineWait
        self.breaker = breaker
        self.http = http
        self.server = URLComponents(string: self.baseURL).flatMap { url in
            guard let scheme = url.scheme, let host = url.host else { return nil }
            return (scheme, host, url.port ?? (scheme == "https" ? 443 : 80), url.path)
        }
    }

    /// One client span per call, retries included: method, server, path, status and error class,
    /// never the request or response body.
    public func post<Body: Encodable, Reply: Decodable>(_ path: String, body: Body, as: Reply.Type) async throws -> Reply {
        try await EngramTracing.withSpan("POST \(path)", ofKind: .client) { span in
            span.updateAttributes { attributes in
                attributes["http.request.method"] = "POST"
                attributes["server.address"] = server?.host
                attributes["server.port"] = server?.port
                attributes["url.scheme"] = server?.scheme
                attributes["url.path"] = (server?.path ?? "") + path
            }
            return try await send(path, body: body, as: Reply.self, span: span)
        }
    }

    private func send<Body: Encodable, Reply: Decodable>(_ path: String, body: Body, as: Reply.Type, span: any Span) async throws -> Reply {
        let payload = try JSONEncoder().encode(body)
        var attempt = 0
        while true {
            guard await breaker.allowRequest() else { throw ExtractionError.circuitOpen }
            if attempt > 0 { span.attributes["http.request.resend_count"] = attempt }
            do {
                let reply = try await once(path, payload: payload, as: Reply.self, span: span)
                await breaker.record(success: true)
                EngramMetrics.breakerState(breaker.name, await breaker.state)
                return reply
            } catch let error as ExtractionError {
                await breaker.record(success: !error.countsAsFailure)
                EngramMetrics.breakerState(breaker.name, await breaker.state)
                guard error.isTransient, attempt < maxRetries else { throw error }
                var wait = Self.backoff(attempt: attempt)
                if case .rateLimited(let after?) = error {
                    guard after <= maxInlineWait.seconds else { throw error }
                    wait = max(wait, SafeNumber.milliseconds(fromSeconds: after))
                }
                attempt += 1
                try await Task.sleep(for: wait)
            }
        }
    }

    /// 200 ms · 2^attempt, with full jitter over its upper half.
    static func backoff(attempt: Int) -> Duration {
        let base = 0.2 * pow(2, Double(attempt))
        return SafeNumber.milliseconds(fromSeconds: Double.random(in: (base / 2)...base))
    }

    private func once<Reply: Decodable>(_ path: String, payload: Data, as: Reply.Type, span: any Span) async throws -> Reply {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(apiKey)")
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: payload))
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await http.execute(request, timeout: .nanoseconds(timeout.nanoseconds))
            bytes = try await response.body.collect(upTo: 32 * 1024 * 1024)
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            throw ExtractionError.timeout
        } catch let error as CancellationError {
            throw error  // shutdown, not a provider failure
        } catch let error as ExtractionError {
            throw error
        } catch {
            throw ExtractionError.transport(String(describing: type(of: error)))
        }
        span.attributes["http.response.status_code"] = Int(response.status.code)
        switch response.status.code {
        case 200..<300:
            do {
                return try JSONDecoder().decode(Reply.self, from: Data(buffer: bytes))
            } catch {
                throw ExtractionError.malformedResponse("response JSON does not match the expected shape")
            }
        case 429:
            throw ExtractionError.rateLimited(retryAfter: SafeNumber.retryAfterSeconds(response.headers.first(name: "Retry-After")))
        case 408, 500..<600:
            throw ExtractionError.server(status: Int(response.status.code))
        default:
            throw ExtractionError.client(status: Int(response.status.code))
        }
    }
}

extension ExtractionError {
    /// A failure that says the provider is unhealthy (not our own bad request).
    var countsAsFailure: Bool {
        switch self {
        case .client, .circuitOpen: return false
        default: return true
        }
    }
}

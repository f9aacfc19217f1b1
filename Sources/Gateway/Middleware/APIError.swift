import EngramApp
import EngramCore
import EngramObservability
import EngramStore
import Foundation
import Hummingbird
import NIOCore
import NIOHTTP1

/// An error answered as `{"error":{"code","message"}}` with its status. The one place where
/// domain errors become HTTP.
struct APIError: HTTPResponseError {
    let status: HTTPResponse.Status
    let code: String
    let message: String
    var headers: HTTPFields = [:]

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var fields = headers
        fields[.contentType] = "application/json"
        // Sorted keys: the same error is the same bytes every time (a dictionary's order is not fixed).
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let body = try encoder.encode(["error": ["code": code, "message": message]])
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    static func unauthorized(_ message: String = "missing or invalid credentials") -> APIError {
        APIError(status: .unauthorized, code: "unauthorized", message: message, headers: [.wwwAuthenticate: "Bearer"])
    }

    static func badRequest(_ code: String, _ message: String) -> APIError { APIError(status: .badRequest, code: code, message: message) }

    static let tooLarge = APIError(status: .contentTooLarge, code: "body_too_large", message: "request body exceeds the limit")

    static let bodyTimeout = APIError(status: .requestTimeout, code: "body_timeout", message: "request body did not arrive in time")

    /// Too many bytes are held for senders whose signature is not checked yet: come back shortly.
    static let unverifiedBudgetExhausted = APIError(
        status: .serviceUnavailable, code: "busy", message: "too many unverified uploads in progress; retry", headers: [.retryAfter: "2"])

    static func from(_ error: SignatureError) -> APIError {
        switch error {
        case .missingHeader: return .unauthorized("missing ElevenLabs-Signature header")
        case .malformedHeader: return .unauthorized("malformed ElevenLabs-Signature header")
        case .expired: return APIError(status: .unauthorized, code: "timestamp_expired", message: "signature timestamp is too old")
        case .fromTheFuture: return APIError(status: .unauthorized, code: "timestamp_in_future", message: "signature timestamp is in the future")
        case .mismatch: return .unauthorized("signature does not match")
        }
    }

    static func from(_ error: IntakeError) -> APIError {
        switch error {
        case .malformedJSON: return .badRequest("invalid_json", "body is not a JSON object")
        case .missingField(let field): return .badRequest("missing_field", "required field missing: \(field)")
        case .tooLarge: return .tooLarge
        case .duplicateKey: return .badRequest("duplicate_key", "an object in the body has the same key twice")
        case .tooDeep(let limit): return .badRequest("json_too_deep", "JSON nesting deeper than \(limit) levels")
        case .fieldTooLong(let field, let limit): return .badRequest("field_too_long", "\(field) is longer than \(limit) bytes")
        }
    }
}

/// Maps every error to the JSON error shape; an unmapped error is a 500 and one log line with
/// its type only (descriptions can carry data).
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return try error.response(from: request, context: context)
        } catch let error as HTTPError {
            let code = error.status == .contentTooLarge ? "body_too_large" : (error.status == .notFound ? "not_found" : "http_error")
            return try APIError(status: error.status, code: code, message: error.status.reasonPhrase, headers: error.headers)
                .response(from: request, context: context)
        } catch is DecodingError {
            return try APIError.badRequest("invalid_json", "body does not match the expected JSON shape").response(from: request, context: context)
        } catch StoreError.unavailable {
            // The store timed out or cannot be reached: the request may succeed shortly, so say so.
            context.logger.error("store unavailable", metadata: ["route": "\(context.endpointPath ?? "-")"])
            return try APIError(
                status: .serviceUnavailable, code: "store_unavailable", message: "the memory store did not answer in time; retry",
                headers: [.retryAfter: "2"]
            ).response(from: request, context: context)
        } catch  where ClientAbort.matches(error) {
            // The client went away (or sent a broken stream): nobody reads this answer and no server fault happened.
            let route = context.endpointPath ?? "unmatched"
            EngramMetrics.clientAborted(route: route)
            context.logger.info("client aborted the request", metadata: ["error_class": "\(type(of: error))", "route": "\(route)"])
            return try APIError.badRequest("aborted", "the request stream ended early").response(from: request, context: context)
        } catch {
            context.logger.error("unhandled error", metadata: ["error_class": "\(type(of: error))", "route": "\(context.endpointPath ?? "-")"])
            return try APIError(status: .internalServerError, code: "internal", message: "internal error").response(from: request, context: context)
        }
    }
}

/// Errors that mean the request's connection ended or broke under it, not that the server failed.
enum ClientAbort {
    static func matches(_ error: any Error) -> Bool {
        if error is ChannelError || error is IOError || error is HTTPParserError || error is CancellationError { return true }
        if error is NIOTooManyBytesError { return false }
        // Hummingbird's own (package-internal) error for a stream that ends with an unexpected part.
        return String(describing: type(of: error)) == "HTTPChannelError"
    }
}

/// One log line per request: route template (never the raw path, which can hold a phone
/// number), status and duration.
struct RequestLogMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let response = try await next(request, context)
        let elapsed = ContinuousClock.now - start
        // Scrapes are neither traffic nor news: not counted, logged at debug.
        if context.endpointPath == "/metrics" {
            context.logger.debug("metrics scraped", metadata: ["status": "\(response.status.code)"])
            return response
        }
        EngramMetrics.httpRequest(
            route: context.endpointPath ?? "unmatched", method: request.method.rawValue, status: Int(response.status.code), duration: elapsed)
        context.logger.info(
            "request",
            metadata: [
                "method": "\(request.method.rawValue)", "route": "\(context.endpointPath ?? "unmatched")",
                "status": "\(response.status.code)", "duration_ms": "\(String(format: "%.2f", elapsed.seconds * 1000))",
            ])
        return response
    }
}

/// Bearer tokens, compared in constant time.
enum BearerAuth {
    static func token(_ request: Request) -> String? {
        guard let header = request.headers[.authorization], header.lowercased().hasPrefix("bearer ") else { return nil }
        return String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
    }

}

/// Bounds on request JSON beyond its size.
enum JSONLimits {
    static let maxDepth = 16
}

extension Response {
    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // ISO 8601 (UTC, seconds), as the CLI prints: Foundation's default is seconds since 2001.
        encoder.dateEncodingStrategy = .iso8601
        return Response(
            status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }
}

extension Request {
    /// Decodes a JSON body of at most `limit` bytes: 413 beyond it, 400 when it is not the shape.
    func decodeJSON<T: Decodable>(_ type: T.Type, limit: Int) async throws -> T {
        let data = try await strictJSONBody(limit: limit)
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw APIError.badRequest("invalid_json", "body is not valid JSON of the expected shape")
        }
    }

    /// A JSON body of at most `limit` bytes, checked strictly: 413 beyond the limit; 400 for
    /// nesting past `JSONLimits.maxDepth`, a duplicate key (JSONDecoder would keep one silently)
    /// or anything that is not JSON.
    func strictJSONBody(limit: Int) async throws -> Data {
        let buffer: ByteBuffer
        do {
            buffer = try await body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw APIError.tooLarge
        }
        let data = Data(buffer: buffer)
        do {
            try StrictJSON.check(data, maxDepth: JSONLimits.maxDepth)
        } catch StrictJSONError.tooDeep {
            throw APIError.badRequest("json_too_deep", "JSON nesting deeper than \(JSONLimits.maxDepth) levels")
        } catch StrictJSONError.duplicateKey {
            throw APIError.badRequest("duplicate_key", "an object in the body has the same key twice")
        } catch {
            throw APIError.badRequest("invalid_json", "body is not valid JSON of the expected shape")
        }
        return data
    }
}

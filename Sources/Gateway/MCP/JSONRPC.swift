import EngramApp
import EngramCore
import Foundation

/// JSON-RPC 2.0 as the Model Context Protocol uses it: one message per POST (no batches), ids
/// that are strings or integers and never null.
enum JSONRPC {
    /// A request id, echoed back exactly as it came.
    enum ID: Codable, Hashable, Sendable {
        case number(Int)
        case string(String)

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let number = try? container.decode(Int.self) {
                self = .number(number)
            } else {
                self = .string(try container.decode(String.self))
            }
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .number(let number): try container.encode(number)
            case .string(let string): try container.encode(string)
            }
        }
    }

    /// The standard error codes (JSON-RPC 2.0 §5.1).
    enum ErrorCode: Int, Sendable {
        case parseError = -32700
        case invalidRequest = -32600
        case methodNotFound = -32601
        case invalidParams = -32602
        case internalError = -32603
    }

    /// An error object; `message` is fixed text or names a field, never echoes input values.
    struct ErrorObject: Encodable, Sendable, Error {
        var code: Int
        var message: String

        init(_ code: ErrorCode, _ message: String) {
            self.code = code.rawValue
            self.message = message
        }
    }

    /// What one incoming message is, from its `id`, `method`, `result` and `error` members.
    enum Incoming: Sendable {
        case request(id: ID, method: String)
        case notification(method: String)
        /// A client's answer to a server request; this server sends none, so it is acknowledged and dropped.
        case response
    }

    /// The envelope of one message, without its params (they are decoded per method).
    struct Envelope: Decodable {
        let incoming: Incoming

        enum CodingKeys: String, CodingKey { case jsonrpc, id, method, result, error }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            guard try container.decodeIfPresent(String.self, forKey: .jsonrpc) == "2.0" else {
                throw ErrorObject(.invalidRequest, "jsonrpc must be \"2.0\"")
            }
            let method = try? container.decodeIfPresent(String.self, forKey: .method)
            if container.contains(.id) {
                guard let id = try? container.decode(ID.self, forKey: .id) else {
                    throw ErrorObject(.invalidRequest, "id must be a string or an integer")
                }
                if let method {
                    incoming = .request(id: id, method: method)
                } else if container.contains(.result) || container.contains(.error) {
                    incoming = .response
                } else {
                    throw ErrorObject(.invalidRequest, "a request needs a method")
                }
            } else if let method {
                incoming = .notification(method: method)
            } else {
                throw ErrorObject(.invalidRequest, "not a JSON-RPC request, notification or response")
            }
        }

        /// Reads the envelope of `data`, or the error to answer it with.
        static func read(_ data: Data) -> Result<Incoming, ErrorObject> {
            guard let first = data.first(where: { !" \t\r\n".utf8.contains($0) }) else {
                return .failure(ErrorObject(.parseError, "empty body"))
            }
            if first == UInt8(ascii: "[") { return .failure(ErrorObject(.invalidRequest, "batches are not supported: send one message per request")) }
            guard first == UInt8(ascii: "{") else { return .failure(ErrorObject(.invalidRequest, "a message must be a JSON object")) }
            do {
                return .success(try JSONDecoder().decode(Envelope.self, from: data).incoming)
            } catch let error as ErrorObject {
                return .failure(error)
            } catch {
                return .failure(ErrorObject(.invalidRequest, "not a JSON-RPC message"))
            }
        }
    }

    /// `params` of a request, decoded as `Params`.
    struct Params<Value: Decodable>: Decodable {
        let params: Value?
    }

    /// A successful response.
    struct Success<Result: Encodable>: Encodable {
        var jsonrpc = "2.0"
        var id: ID
        var result: Result
    }

    /// An error response; `id` is null when the request's id could not be read.
    struct Failure: Encodable {
        var jsonrpc = "2.0"
        var id: ID?
        var error: ErrorObject

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(jsonrpc, forKey: .jsonrpc)
            // JSON-RPC requires the member, null when unknown.
            if let id { try container.encode(id, forKey: .id) } else { try container.encodeNil(forKey: .id) }
            try container.encode(error, forKey: .error)
        }

        enum CodingKeys: String, CodingKey { case jsonrpc, id, error }
    }

    /// An empty object, the result of `ping`.
    struct Empty: Codable, Sendable {}
}

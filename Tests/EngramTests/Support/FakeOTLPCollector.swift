import Foundation
import Hummingbird
import Logging
import NIOCore

/// A local stand-in for an OpenTelemetry collector's OTLP/HTTP traces endpoint
/// (`POST /v1/traces`, protobuf), served on 127.0.0.1 at a port the OS picks. It keeps every
/// request body as received (for byte-level privacy checks) and the spans decoded from them.
final class FakeOTLPCollector: @unchecked Sendable {  // mutable state only under `lock`
    /// One exported span, as far as the tests need it.
    struct CollectedSpan: Sendable, CustomStringConvertible {
        var service: String
        var traceID: String
        var spanID: String
        /// Empty for a root span.
        var parentSpanID: String
        var name: String
        /// OTLP span kind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
        var kind: Int
        /// Every attribute value, rendered as text.
        var attributes: [String: String]
        /// Names and attribute values of the span's events, and the status message: the rest of
        /// the text a span carries.
        var otherText: [String]
        /// OTLP status code: 0 unset, 1 ok, 2 error.
        var statusCode: Int

        var description: String { "\(service) \(name) kind=\(kind) trace=\(traceID) span=\(spanID) parent=\(parentSpanID) \(attributes)" }

        /// All text the span exports: name, attribute keys and values, events, status.
        var allText: [String] { [name] + attributes.flatMap { [$0.key, $0.value] } + otherText }
    }

    private let lock = NSLock()
    private var _bodies: [Data] = []
    private var _spans: [CollectedSpan] = []
    private var _contentTypes: [String] = []
    private var task: Task<Void, any Error>?
    private var _port: Int?

    static func start() async throws -> FakeOTLPCollector {
        let collector = FakeOTLPCollector()
        try await collector.run()
        return collector
    }

    var port: Int { lock.withLock { _port ?? 0 } }
    /// `http://127.0.0.1:<port>`, as `ENGRAM_OTEL_ENDPOINT` would be.
    var endpoint: String { "http://127.0.0.1:\(port)" }
    var bodies: [Data] { lock.withLock { _bodies } }
    var spans: [CollectedSpan] { lock.withLock { _spans } }
    var contentTypes: [String] { lock.withLock { _contentTypes } }

    func stop() async {
        let running = lock.withLock { () -> Task<Void, any Error>? in
            defer { task = nil }
            return task
        }
        running?.cancel()
        _ = try? await running?.value
    }

    private func run() async throws {
        let router = Router()
        router.post("v1/traces") { [self] request, _ -> Response in
            let buffer = try await request.body.collect(upTo: 16 * 1024 * 1024)
            let body = Data(buffer: buffer)
            let decoded = try? OTLPTraces.decode(body)
            lock.withLock {
                _bodies.append(body)
                _contentTypes.append(request.headers[.contentType] ?? "")
                _spans += decoded ?? []
            }
            // An empty ExportTraceServiceResponse: full success.
            return Response(status: .ok, headers: [.contentType: "application/x-protobuf"], body: .init(byteBuffer: ByteBuffer()))
        }
        let (serving, listening) = try await startLoopbackServer(router, name: "fake-otlp")
        lock.withLock {
            task = serving
            _port = listening
        }
    }
}

/// Just enough of the protobuf wire format to read an OTLP `ExportTraceServiceRequest`
/// (opentelemetry/proto/collector/trace/v1): resource spans → scope spans → spans.
enum OTLPTraces {
    struct MalformedProtobuf: Error {}

    static func decode(_ data: Data) throws -> [FakeOTLPCollector.CollectedSpan] {
        var spans: [FakeOTLPCollector.CollectedSpan] = []
        for field in try fields(data) where field.number == 1 {  // resource_spans
            var service = ""
            var rawSpans: [Data] = []
            for part in try fields(field.bytes) {
                switch part.number {
                case 1:  // resource
                    for attribute in try fields(part.bytes) where attribute.number == 1 {
                        let (key, value) = try keyValue(attribute.bytes)
                        if key == "service.name" { service = value }
                    }
                case 2:  // scope_spans
                    rawSpans += try fields(part.bytes).filter { $0.number == 2 }.map(\.bytes)
                default: break
                }
            }
            for raw in rawSpans { spans.append(try span(raw, service: service)) }
        }
        return spans
    }

    private static func span(_ data: Data, service: String) throws -> FakeOTLPCollector.CollectedSpan {
        var span = FakeOTLPCollector.CollectedSpan(
            service: service, traceID: "", spanID: "", parentSpanID: "", name: "", kind: 0, attributes: [:], otherText: [], statusCode: 0)
        for field in try fields(data) {
            switch field.number {
            case 1: span.traceID = hex(field.bytes)
            case 2: span.spanID = hex(field.bytes)
            case 3: span.otherText.append(string(field.bytes))  // trace_state
            case 4: span.parentSpanID = hex(field.bytes)
            case 5: span.name = string(field.bytes)
            case 6: span.kind = Int(field.varint)
            case 9:
                let (key, value) = try keyValue(field.bytes)
                span.attributes[key] = value
            case 11:  // events: name and attributes
                for part in try fields(field.bytes) {
                    if part.number == 2 { span.otherText.append(string(part.bytes)) }
                    if part.number == 3 {
                        let (key, value) = try keyValue(part.bytes)
                        span.otherText += [key, value]
                    }
                }
            case 15:  // status: message and code
                for part in try fields(field.bytes) {
                    if part.number == 2 { span.otherText.append(string(part.bytes)) }
                    if part.number == 3 { span.statusCode = Int(part.varint) }
                }
            default: break
            }
        }
        return span
    }

    /// A `KeyValue`: its key and its `AnyValue` rendered as text.
    private static func keyValue(_ data: Data) throws -> (String, String) {
        var key = ""
        var value = ""
        for field in try fields(data) {
            if field.number == 1 { key = string(field.bytes) }
            if field.number == 2 { value = try anyValue(field.bytes) }
        }
        return (key, value)
    }

    private static func anyValue(_ data: Data) throws -> String {
        var parts: [String] = []
        for field in try fields(data) {
            switch field.number {
            case 1: parts.append(string(field.bytes))
            case 2: parts.append(field.varint != 0 ? "true" : "false")
            case 3: parts.append(String(Int64(bitPattern: field.varint)))
            case 4: parts.append(String(Double(bitPattern: field.varint)))
            case 5: parts += try fields(field.bytes).filter { $0.number == 1 }.map { try anyValue($0.bytes) }  // array
            case 6:
                parts += try fields(field.bytes).filter { $0.number == 1 }.map {
                    let (k, v) = try keyValue($0.bytes)
                    return "\(k)=\(v)"
                }
            case 7: parts.append(string(field.bytes))
            default: break
            }
        }
        return parts.joined(separator: ",")
    }

    struct Field {
        var number: Int
        /// Varint and fixed values.
        var varint: UInt64 = 0
        /// Length-delimited values.
        var bytes = Data()
    }

    static func fields(_ data: Data) throws -> [Field] {
        let bytes = [UInt8](data)
        var index = 0
        var result: [Field] = []
        func readVarint() throws -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard index < bytes.count, shift < 64 else { throw MalformedProtobuf() }
                let byte = bytes[index]
                index += 1
                value |= UInt64(byte & 0x7f) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
        }
        func readFixed(_ count: Int) throws -> UInt64 {
            guard index + count <= bytes.count else { throw MalformedProtobuf() }
            var value: UInt64 = 0
            for i in 0..<count { value |= UInt64(bytes[index + i]) << (8 * UInt64(i)) }
            index += count
            return value
        }
        while index < bytes.count {
            let tag = try readVarint()
            var field = Field(number: Int(tag >> 3))
            switch tag & 7 {
            case 0: field.varint = try readVarint()
            case 1: field.varint = try readFixed(8)
            case 2:
                let length = Int(try readVarint())
                guard length >= 0, index + length <= bytes.count else { throw MalformedProtobuf() }
                field.bytes = Data(bytes[index..<(index + length)])
                index += length
            case 5: field.varint = try readFixed(4)
            default: throw MalformedProtobuf()
            }
            result.append(field)
        }
        return result
    }

    private static func string(_ data: Data) -> String { String(decoding: data, as: UTF8.self) }

    private static func hex(_ data: Data) -> String { data.map { String(format: "%02x", $0) }.joined() }
}

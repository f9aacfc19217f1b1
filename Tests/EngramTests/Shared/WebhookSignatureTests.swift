import Foundation
import Testing

@testable import EngramApp
@testable import EngramCore

@Suite("ElevenLabs webhook signatures", .timeLimit(.minutes(3)))
struct WebhookSignatureTests {
    struct Vector: Decodable {
        var secret: String
        var timestamp: Int64
        var body: String
        var header: String
    }

    static func vector() throws -> Vector { try JSONDecoder().decode(Vector.self, from: try Fixtures.elevenLabs("signature-vector.json")) }

    func verify(header: String?, body: Data, secrets: [String], now: Date) throws {
        let intake = PostCallIntake(
            secrets: secrets, tolerancePast: .seconds(1800), toleranceFuture: .seconds(300), maxBodyBytes: 1 << 21,
            cipher: KeyRing(master: .generate()).envelopeCipher, clock: .fixed(now))
        var verifier = try intake.begin(header: header)
        verifier.update(body)
        try verifier.finish()
    }

    @Test("the published test vector verifies with an injected clock")
    func publishedVector() throws {
        let v = try Self.vector()
        try verify(header: v.header, body: Data(v.body.utf8), secrets: [v.secret], now: Date(timeIntervalSince1970: TimeInterval(v.timestamp + 10)))
        #expect(WebhookSigner.header(body: Data(v.body.utf8), secret: v.secret, timestamp: v.timestamp) == v.header)
    }

    @Test("a body fed in chunks verifies like the whole")
    func chunked() throws {
        let v = try Self.vector()
        let intake = PostCallIntake(
            secrets: [v.secret], tolerancePast: .seconds(1800), toleranceFuture: .seconds(300), maxBodyBytes: 1 << 21,
            cipher: KeyRing(master: .generate()).envelopeCipher, clock: .fixed(Date(timeIntervalSince1970: TimeInterval(v.timestamp))))
        var verifier = try intake.begin(header: v.header)
        let body = Data(v.body.utf8)
        for start in stride(from: 0, to: body.count, by: 7) { verifier.update(body[start..<min(body.count, start + 7)]) }
        try verifier.finish()
    }

    @Test("a wrong secret is a mismatch")
    func wrongSecret() throws {
        let v = try Self.vector()
        #expect(throws: SignatureError.mismatch) {
            try verify(
                header: v.header, body: Data(v.body.utf8), secrets: ["wsec_other"], now: Date(timeIntervalSince1970: TimeInterval(v.timestamp)))
        }
    }

    @Test("a tampered body is a mismatch")
    func tampered() throws {
        let v = try Self.vector()
        let body = Data(v.body.replacingOccurrences(of: "1739537400,", with: "1739537401,").utf8)
        #expect(throws: SignatureError.mismatch) {
            try verify(header: v.header, body: body, secrets: [v.secret], now: Date(timeIntervalSince1970: TimeInterval(v.timestamp)))
        }
    }

    @Test("a missing or malformed header is refused")
    func missingHeader() throws {
        let v = try Self.vector()
        let now = Date(timeIntervalSince1970: TimeInterval(v.timestamp))
        #expect(throws: SignatureError.missingHeader) { try verify(header: nil, body: Data(), secrets: [v.secret], now: now) }
        #expect(throws: SignatureError.missingHeader) { try verify(header: "", body: Data(), secrets: [v.secret], now: now) }
        #expect(throws: SignatureError.malformedHeader) { try verify(header: "t=abc,v0=zz", body: Data(), secrets: [v.secret], now: now) }
        #expect(throws: SignatureError.malformedHeader) {
            try verify(header: "v0=\(String(repeating: "a", count: 64))", body: Data(), secrets: [v.secret], now: now)
        }
    }

    @Test("timestamps older than 30 minutes or more than 5 minutes ahead are refused")
    func window() throws {
        let v = try Self.vector()
        let body = Data(v.body.utf8)
        let signedAt = Date(timeIntervalSince1970: TimeInterval(v.timestamp))
        try verify(header: v.header, body: body, secrets: [v.secret], now: signedAt.addingTimeInterval(1799))
        #expect(throws: SignatureError.expired) {
            try verify(header: v.header, body: body, secrets: [v.secret], now: signedAt.addingTimeInterval(1801))
        }
        try verify(header: v.header, body: body, secrets: [v.secret], now: signedAt.addingTimeInterval(-299))
        #expect(throws: SignatureError.fromTheFuture) {
            try verify(header: v.header, body: body, secrets: [v.secret], now: signedAt.addingTimeInterval(-301))
        }
    }

    @Test("any v0 entry may match, and the previous secret is accepted during rotation")
    func severalSignatures() throws {
        let v = try Self.vector()
        let body = Data(v.body.utf8)
        let now = Date(timeIntervalSince1970: TimeInterval(v.timestamp))
        let good = String(v.header.split(separator: ",")[1].dropFirst(3))
        let several = "t=\(v.timestamp),v0=\(String(repeating: "0", count: 64)),v0=\(good)"
        try verify(header: several, body: body, secrets: [v.secret], now: now)
        try verify(header: v.header, body: body, secrets: ["wsec_new_current", v.secret], now: now)
    }
}

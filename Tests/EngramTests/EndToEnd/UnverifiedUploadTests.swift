import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// What the real gateway holds for senders it has not authenticated yet: stalled, dripping and
/// aborted uploads cost a bounded amount of memory and time, and never show up as server errors.
@Suite("Unverified uploads to the real gateway", .timeLimit(.minutes(3)))
struct UnverifiedUploadTests {
    @Test(
        "hundreds of stalled uploads with a wrong signature hold at most the budget: the rest get 503 with Retry-After, and a real call still lands")
    func stalledUploadsAreBounded() async throws {
        let env = try TestEnvironment()
        let port = try freePort()
        var environment = env.processEnvironment(httpPort: port)
        let budget = 16 * 1024 * 1024
        environment["ENGRAM_UNVERIFIED_BODY_BUDGET_BYTES"] = String(budget)
        environment["ENGRAM_HTTP_IDLE_TIMEOUT_MS"] = "120000"
        let gateway = try ServiceProcess("engram-gateway", environment: environment, directory: env.directory)
        defer { gateway.kill9() }
        try await waitForGatewayReady(port: port)
        let before = try #require(residentBytes(pid: gateway.process.processIdentifier))

        // 300 uploads announce 2,000,000 bytes each and send 1,900,000 of them (543 MiB in all), then stall.
        // Without the budget the gateway kept all of it (+247 MiB already at 512 KiB each).
        let offered = 1_900_000
        let uploads = try (0..<300).map { _ in try RawConnection(port: port) }
        defer { for upload in uploads { upload.close() } }
        let wrongSignature = "t=\(Int(Date().timeIntervalSince1970)),v0=\(String(repeating: "ab", count: 32))"
        for upload in uploads {
            upload.queue(
                "POST /v1/elevenlabs/post-call HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    + "ElevenLabs-Signature: \(wrongSignature)\r\nContent-Length: 2000000\r\n\r\n{\"type\":\"post_call_transcription\",\"data\":\"")
            upload.queue(String(repeating: "x", count: offered))
        }
        // Push what the server takes; the refused ones stop reading, so give up on those after a deadline.
        let sendDeadline = ContinuousClock.now + .seconds(60)
        while uploads.contains(where: { !$0.flushed && $0.answer().isEmpty }) && ContinuousClock.now < sendDeadline {
            var progressed = false
            for upload in uploads where !upload.flushed { progressed = upload.flush() || progressed }
            if !progressed { try await Task.sleep(for: .milliseconds(20)) }
        }
        var peak = before
        var refused = 0
        try await waitUntil(timeout: .seconds(60), "every upload either fully sent or answered") {
            peak = max(peak, residentBytes(pid: gateway.process.processIdentifier) ?? 0)
            refused = uploads.filter { $0.answer().hasPrefix("HTTP/1.1 503") }.count
            return uploads.allSatisfy { $0.flushed || !$0.answer().isEmpty }
        }
        for _ in 0..<10 {
            peak = max(peak, residentBytes(pid: gateway.process.processIdentifier) ?? 0)
            try await Task.sleep(for: .milliseconds(100))
        }
        let answers = uploads.map { $0.answer() }.filter { !$0.isEmpty }
        #expect(refused > 0, "some uploads are refused once the budget is held")
        for answer in answers where answer.hasPrefix("HTTP/1.1 503") {
            #expect(answer.lowercased().contains("retry-after: "), "a 503 says when to come back")
        }
        #expect(!answers.contains { $0.hasPrefix("HTTP/1.1 5") && !$0.hasPrefix("HTTP/1.1 503") }, "no other 5xx")
        let growth = peak - before
        print(
            "unverified uploads: RSS before \(before >> 20) MiB, peak \(peak >> 20) MiB (+\(growth >> 20) MiB for 300 × \(offered) bytes offered, budget \(budget >> 20) MiB); \(refused) refused with 503"
        )
        // The budget plus the server's per-connection buffers and allocator slack: far below the 543 MiB offered.
        #expect(growth < 200 * 1024 * 1024, "RSS grew by \(growth >> 20) MiB")

        // The stalled uploads go away; the budget is given back and a signed call is accepted.
        for upload in uploads { upload.close() }
        try await postSignedFixture(env, port: port)
        print("unverified uploads: RSS after the uploads closed \((residentBytes(pid: gateway.process.processIdentifier) ?? 0) >> 20) MiB")
        #expect(!gateway.output.contains("unhandled error"), "gateway log: \(gateway.output.suffix(2000))")
        await env.cleanUp()
    }

    @Test("an idle keep-alive connection and an upload that stalls mid-body are both closed by the idle timeout")
    func idleAndStalledConnectionsAreClosed() async throws {
        let env = try TestEnvironment()
        let port = try freePort()
        var environment = env.processEnvironment(httpPort: port)
        environment["ENGRAM_HTTP_IDLE_TIMEOUT_MS"] = "500"
        let gateway = try ServiceProcess("engram-gateway", environment: environment, directory: env.directory)
        defer { gateway.kill9() }
        try await waitForGatewayReady(port: port)

        let idle = try RawConnection(port: port)
        let stalled = try RawConnection(port: port)
        defer {
            idle.close()
            stalled.close()
        }
        stalled.queue(
            "POST /v1/elevenlabs/post-call HTTP/1.1\r\nHost: 127.0.0.1\r\nElevenLabs-Signature: t=1,v0=00\r\nContent-Length: 5000\r\n\r\n{\"type\":")
        #expect(stalled.flush())
        try await waitUntil(timeout: .seconds(30), "both connections closed by the server") { idle.isClosedByPeer() && stalled.isClosedByPeer() }
        #expect(!gateway.output.contains("unhandled error"), "gateway log: \(gateway.output.suffix(2000))")
        await env.cleanUp()
    }

    @Test("a body that drips in slower than the body timeout is cut off with 408, not held open")
    func slowDripIsCutOff() async throws {
        let env = try TestEnvironment()
        let port = try freePort()
        var environment = env.processEnvironment(httpPort: port)
        environment["ENGRAM_BODY_TIMEOUT_MS"] = "1000"
        environment["ENGRAM_HTTP_IDLE_TIMEOUT_MS"] = "30000"
        let gateway = try ServiceProcess("engram-gateway", environment: environment, directory: env.directory)
        defer { gateway.kill9() }
        try await waitForGatewayReady(port: port)

        let drip = try RawConnection(port: port)
        defer { drip.close() }
        let wrongSignature = "t=\(Int(Date().timeIntervalSince1970)),v0=\(String(repeating: "cd", count: 32))"
        drip.queue(
            "POST /v1/elevenlabs/post-call HTTP/1.1\r\nHost: 127.0.0.1\r\nElevenLabs-Signature: \(wrongSignature)\r\nContent-Length: 100000\r\n\r\n")
        #expect(drip.flush())
        try await waitUntil(timeout: .seconds(30), "an answer to the dripping upload") {
            drip.queue("x")
            _ = drip.flush()
            try await Task.sleep(for: .milliseconds(100))
            return !drip.answer().isEmpty || drip.isClosedByPeer()
        }
        #expect(drip.answer().hasPrefix("HTTP/1.1 408"), "answer: \(drip.answer().prefix(200))")
        await env.cleanUp()
    }

    @Test("clients that hang up mid-body are logged as aborts, never as 500 'unhandled error'")
    func abortsAreNotServerErrors() async throws {
        let env = try TestEnvironment()
        let port = try freePort()
        let gateway = try ServiceProcess("engram-gateway", environment: env.processEnvironment(httpPort: port), directory: env.directory)
        defer { gateway.kill9() }
        try await waitForGatewayReady(port: port)

        let requests = [
            "POST /v1/elevenlabs/post-call HTTP/1.1\r\nHost: 127.0.0.1\r\nElevenLabs-Signature: \(signedHeader(Data("{}".utf8), secret: env.webhookSecret))\r\nContent-Length: 90000\r\n\r\n{\"type\":\"post_call_",
            "POST /v1/tools/search-memory HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(env.apiKey)\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{\"query\":\"fri",
            "POST /v1/tools/remember HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(env.apiKey)\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"fact\":\"I like",
        ]
        for _ in 0..<5 {
            for text in requests {
                let connection = try RawConnection(port: port)
                connection.queue(text)
                #expect(connection.flush())
                try await Task.sleep(for: .milliseconds(50))
                connection.close()
            }
        }
        try await waitForGatewayReady(port: port)
        try await Task.sleep(for: .milliseconds(300))
        let log = gateway.output
        #expect(log.contains("client aborted the request"), "the aborts are logged as such: \(log.suffix(3000))")
        #expect(!log.contains("unhandled error"), "gateway log: \(log.suffix(3000))")
        #expect(!log.contains("\"status\":\"500\""), "gateway log: \(log.suffix(3000))")
        await env.cleanUp()
    }

    /// Posts the signed fixture and expects 200.
    private func postSignedFixture(_ env: TestEnvironment, port: Int) async throws {
        let body = try fixtureTranscript()
        let connection = try RawConnection(port: port)
        defer { connection.close() }
        connection.queue(
            "POST /v1/elevenlabs/post-call HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + "ElevenLabs-Signature: \(signedHeader(body, secret: env.webhookSecret))\r\nContent-Length: \(body.count)\r\n\r\n")
        connection.queue(bytes: [UInt8](body))
        try await waitUntil(timeout: .seconds(20), "the signed call answered") {
            _ = connection.flush()
            return connection.answer().contains("\r\n\r\n")
        }
        #expect(connection.answer().hasPrefix("HTTP/1.1 200"), "answer: \(connection.answer().prefix(300))")
    }
}

/// The resident set of a process, from /proc (Linux).
func residentBytes(pid: Int32) -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 2, let kilobytes = Int(fields[1]) else { return nil }
        return kilobytes * 1024
    }
    return nil
}

/// A non-blocking TCP client socket that writes what the peer accepts and collects what it answers.
final class RawConnection: @unchecked Sendable {
    private var fd: Int32
    private var pending: [UInt8] = []
    private var received: [UInt8] = []
    private var peerClosed = false

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSetupError.timeout("socket() failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else {
            Glibc.close(fd)
            throw TestSetupError.timeout("connect to 127.0.0.1:\(port) failed")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    func queue(_ text: String) { pending.append(contentsOf: Array(text.utf8)) }
    func queue(bytes: [UInt8]) { pending.append(contentsOf: bytes) }

    var flushed: Bool { pending.isEmpty }

    /// Sends as much as the socket takes now; true if anything was sent or nothing is left.
    @discardableResult
    func flush() -> Bool {
        guard fd >= 0, !pending.isEmpty else { return pending.isEmpty }
        let sent = pending.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent > 0 else { return false }
        pending.removeFirst(sent)
        return true
    }

    /// Everything the server has answered so far.
    func answer() -> String {
        readAvailable()
        return String(decoding: received, as: UTF8.self)
    }

    /// True once the server has closed its side (read returns end of stream or the socket errors).
    func isClosedByPeer() -> Bool {
        readAvailable()
        return peerClosed
    }

    private func readAvailable() {
        guard fd >= 0, !peerClosed else { return }
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                received.append(contentsOf: buffer[0..<count])
            } else if count == 0 {
                peerClosed = true
                return
            } else {
                if errno != EAGAIN && errno != EWOULDBLOCK { peerClosed = true }
                return
            }
        }
    }

    func close() {
        guard fd >= 0 else { return }
        Glibc.close(fd)
        fd = -1
    }

    deinit { close() }
}

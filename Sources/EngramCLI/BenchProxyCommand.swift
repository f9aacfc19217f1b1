import ArgumentParser
import AsyncHTTPClient
import EngramCore
import EngramTools
import Foundation
import Histogram
import Hummingbird
import Logging
import NIOCore

/// `engram bench-proxy`: what the custom-LLM proxy adds to time to first byte. Runs a local
/// streaming upstream on `--upstream-port` (the running gateway's ENGRAM_LLM_UPSTREAM_URL must be
/// `http://127.0.0.1:<port>/v1`), seeds the store like `engram bench`, then alternates a
/// streamed request straight to the upstream and one through the gateway for the heavy caller,
/// sequentially, and reports both and their difference (p50/p95/p99).
struct BenchProxyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-proxy",
        abstract: "Custom-LLM proxy overhead: time to first byte through a running gateway minus straight to a local upstream, for the heavy caller.")

    @Option(help: "Base URL of the running gateway (loopback only).") var gateway = "http://127.0.0.1:8080"
    @Option(help: "Port of the local upstream this command runs (the gateway's ENGRAM_LLM_UPSTREAM_URL).") var upstreamPort = 18_081
    @Option(help: "Request pairs (one direct, one through the proxy).") var requests = 300
    @Option(help: "Regular callers to seed.") var callers = 1_000
    @Option(help: "Memories per regular caller.") var memories = 100
    @Option(help: "Memories of the one heavy caller.") var heavy = 20_000
    @Option(help: "Seed of the generated data and of the questions.") var seed: UInt64 = 42
    @Flag(help: "Do not seed (use what the store holds).") var skipSeed = false
    @Flag(help: "Name no caller (no engram_user): the proxy's own cost, without memory.") var noCaller = false

    func validate() throws {
        guard (1...100_000).contains(requests) else { throw ValidationError("--requests must be in 1...100000") }
        guard (1...65_535).contains(upstreamPort) else { throw ValidationError("--upstream-port must be in 1...65535") }
        guard let url = URLComponents(string: gateway), url.scheme == "http", let host = url.host, BenchCommand.isLoopback(host) else {
            throw ValidationError("--gateway must be an http:// URL on this machine (127.0.0.0/8, localhost or [::1])")
        }
    }

    func run() async throws {
        let context = try await CLIContext()
        let apiKey = try context.configuration.require(\.apiKey, "ENGRAM_API_KEY")
        let tenant = try await context.tenant("default")
        let profile = BenchSeeder.Profile(callers: callers, memoriesPerCaller: memories, heavyMemories: heavy, seed: seed)
        let seeder = BenchSeeder(vault: context.vault, tenant: tenant, profile: profile)
        if !skipSeed, try await !seeder.isSeeded() {
            note("seeding \(profile.totalMemories) memories...")
            let report = try await seeder.seed { note($0) }
            note("seeded \(report.memoriesWritten) memories in \(String(format: "%.0f", report.seconds)) s")
        }
        let upstream = try await Self.startUpstream(port: upstreamPort)
        defer { upstream.cancel() }
        var base = gateway
        while base.hasSuffix("/") { base.removeLast() }
        let direct = "http://127.0.0.1:\(upstreamPort)/v1/chat/completions"
        let proxied = base + "/v1/llm/chat/completions"
        let user = seeder.heavyUser.rawValue

        var rng = SplitMix64.derived(seed, 7)
        var directHistogram = latencyHistogram()
        var proxiedHistogram = latencyHistogram()
        var overheadHistogram = latencyHistogram()
        var outcomes: [String: Int] = [:]
        // Warm-up: connections, and the caller's caches. A call's pre-call loads them before its
        // first turn (`warmSearch`); here the first turns load them (about a second at 20,000
        // memories, missing their deadline meanwhile), so the measure starts 20 pairs after the
        // first turn that got memory, or after a minute.
        let warmUntil = ContinuousClock.now + .seconds(60)
        var warm = noCaller ? 0 : -1
        while warm < 20 {
            let body = Self.body(question: BenchVocabulary.query(&rng), user: noCaller ? nil : user)
            _ = try await Self.firstByte(url: direct, body: body, key: nil)
            let through = try await Self.firstByte(url: proxied, body: body, key: apiKey)
            if warm >= 0 || through.memory == "injected" || through.memory == "empty" || ContinuousClock.now > warmUntil { warm += 1 }
        }
        for _ in 0..<requests {
            let body = Self.body(question: BenchVocabulary.query(&rng), user: noCaller ? nil : user)
            let straight = try await Self.firstByte(url: direct, body: body, key: nil)
            let through = try await Self.firstByte(url: proxied, body: body, key: apiKey)
            directHistogram.record(straight.micros)
            proxiedHistogram.record(through.micros)
            overheadHistogram.record(through.micros > straight.micros ? through.micros - straight.micros : 0)
            outcomes[through.memory, default: 0] += 1
        }
        print(
            "custom-LLM proxy, \(noCaller ? "no caller named" : "heavy caller (\(heavy) memories)"), \(requests) sequential request pairs, time to first byte"
        )
        print("path                          p50 ms   p95 ms   p99 ms   max ms")
        print(row("straight to the upstream", directHistogram))
        print(row("through the proxy", proxiedHistogram))
        print(row("difference (per pair)", overheadHistogram))
        print("Engram-Memory: " + outcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
    }

    static func body(question: String, user: String?) -> ByteBuffer {
        var object: [String: Any] = [
            "model": "bench", "stream": true,
            "messages": [["role": "system", "content": "You are a receptionist."], ["role": "user", "content": question]],
        ]
        if let user { object["elevenlabs_extra_body"] = ["engram_user": user] }
        return ByteBuffer(bytes: (try? JSONSerialization.data(withJSONObject: object)) ?? Data())
    }

    /// Microseconds from sending to the first body byte, and the `Engram-Memory` header.
    static func firstByte(url: String, body: ByteBuffer, key: String?) async throws -> (micros: UInt64, memory: String) {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let key { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        request.body = .bytes(body)
        let started = ContinuousClock.now
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        guard response.status == .ok else { throw BenchProxyError(description: "\(url) answered \(response.status.code)") }
        var iterator = response.body.makeAsyncIterator()
        _ = try await iterator.next()
        let elapsed = (ContinuousClock.now - started).microseconds
        while try await iterator.next() != nil {}
        return (elapsed, response.headers.first(name: "Engram-Memory") ?? "-")
    }

    /// A streaming chat-completions upstream that answers at once: three events and [DONE].
    static func startUpstream(port: Int) async throws -> Task<Void, any Error> {
        let router = Router()
        router.post("v1/chat/completions") { request, _ in
            _ = try await request.body.collect(upTo: 16 * 1024 * 1024)
            return Response(
                status: .ok, headers: [.contentType: "text/event-stream"],
                body: ResponseBody { writer in
                    for text in ["Hello", " there", "."] {
                        try await writer.write(ByteBuffer(string: "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\(text)\"}}]}\n\n"))
                    }
                    try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                    try await writer.finish(nil)
                })
        }
        var logger = Logger(label: "bench-upstream")
        logger.logLevel = .critical
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Bool.self)
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "bench-upstream"),
            onServerRunning: { _ in
                readyContinuation.yield(true)
                readyContinuation.finish()
            }, logger: logger)
        let task = Task {
            defer { readyContinuation.finish() }
            try await app.runService(gracefulShutdownSignals: [])
        }
        var listening = false
        for await value in ready { listening = value }
        guard listening else {
            task.cancel()
            throw BenchProxyError(description: "the bench upstream could not listen on 127.0.0.1:\(port)")
        }
        return task
    }

    func row(_ label: String, _ histogram: Histogram<UInt64>) -> String {
        func ms(_ p: Double) -> String { String(format: "%8.2f", Double(histogram.valueAtPercentile(p)) / 1000) }
        return label.padding(toLength: 28, withPad: " ", startingAt: 0) + ms(50) + " " + ms(95) + " " + ms(99) + " "
            + String(format: "%8.2f", Double(histogram.max) / 1000)
    }
}

/// Why the proxy bench stopped (an upstream or gateway that did not answer as expected).
struct BenchProxyError: Error, CustomStringConvertible {
    let description: String
}

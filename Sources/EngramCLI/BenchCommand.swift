import ArgumentParser
import AsyncHTTPClient
import EngramCore
import EngramQueue
import EngramStore
import EngramTools
import Foundation
import Histogram

/// `engram bench`: the load benchmark of the service levels (docs/architecture.md). Seeds the store
/// deterministically, then drives a RUNNING gateway over HTTP at fixed arrival rates, open loop:
/// request i is due at t0 + i/rate whatever the server does, and its latency counts from that due
/// time (coordinated omission corrected), into HDR histograms in microseconds. Extraction lag is
/// seen from the store: the bench polls for each acknowledged event's processed-event row.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Load benchmark: seed, drive a running gateway at fixed rates (open loop), report p50/p95/p99 per path against the service levels.",
        discussion: """
            Reads ENGRAM_DATABASE_URL, ENGRAM_MASTER_KEY (seeding), ENGRAM_API_KEY, ENGRAM_WEBHOOK_SECRET and ENGRAM_REDIS_URL \
            like the services (./data/dev.env fills what the environment lacks). Targets only a loopback gateway. \
            `make bench` runs the standard profile against throwaway services.
            """)

    @Option(help: "Regular callers to seed (phone numbers +1555200xxxx).") var callers = 1_000
    @Option(help: "Memories per regular caller.") var memories = 100
    @Option(help: "Memories of the one heavy caller.") var heavy = 20_000
    @Option(help: "Seconds of load (all paths at once).") var duration = 20.0
    @Option(help: "Signed post-call webhooks per second.") var ratePostcall = 200.0
    @Option(help: "Pre-call (conversation-init) webhooks per second.") var ratePrecall = 50.0
    @Option(help: "search-memory tool calls per second.") var rateSearch = 50.0
    @Option(help: "Share of conversation-init and search-memory requests for the heavy caller (0...1).") var heavyShare = 0.1
    @Option(help: "Base URL of the running gateway (loopback only).") var gateway = "http://127.0.0.1:8080"
    @Option(help: "Seed of the generated data and of the request mix.") var seed: UInt64 = 42
    @Option(help: "Seconds per step of --find-max-postcall.") var stepDuration = 5.0
    @Option(help: "Worker throughput: post-calls sent at --burst-rate after the mixed load, timed until stored (0: off).") var workerBurst = 0
    @Option(help: "Worker throughput for one caller: remember calls for the heavy caller at --burst-rate, timed until stored (0: off).")
    var rememberBurst = 0
    @Option(help: "Requests per second of the worker bursts.") var burstRate = 1_000.0
    @Flag(help: "Seed the store and stop.") var seedOnly = false
    @Flag(help: "Do not seed (use what the store holds).") var skipSeed = false
    @Flag(
        inversion: .prefixedNo, exclusivity: .chooseLast,
        help: "Also step the post-call rate up and report the highest rate whose p99 stays under 50 ms with no errors.") var findMaxPostcall = false
    @Flag(help: "One JSON object.") var json = false

    static let maxPostcallSteps: [Double] = [250, 500, 1_000, 1_500, 2_000, 3_000, 4_000, 5_000]
    static let maxPostcallP99Ms = 50.0
    static let lagPollInterval = Duration.milliseconds(20)
    static let drainDeadline = Duration.seconds(60)

    func validate() throws {
        guard (1...99_999).contains(callers) else { throw ValidationError("--callers must be in 1...99999") }
        guard (0...10_000).contains(memories) else { throw ValidationError("--memories must be in 0...10000") }
        guard (0...1_000_000).contains(heavy) else { throw ValidationError("--heavy must be in 0...1000000") }
        guard duration >= 1, duration <= 600 else { throw ValidationError("--duration must be in 1...600 seconds") }
        guard stepDuration >= 1, stepDuration <= 60 else { throw ValidationError("--step-duration must be in 1...60 seconds") }
        for (name, rate) in [("--rate-postcall", ratePostcall), ("--rate-precall", ratePrecall), ("--rate-search", rateSearch)] {
            guard rate >= 0, rate <= 20_000 else { throw ValidationError("\(name) must be in 0...20000 per second") }
        }
        guard (0...100_000).contains(workerBurst), (0...100_000).contains(rememberBurst) else {
            throw ValidationError("--worker-burst and --remember-burst must be in 0...100000")
        }
        guard burstRate >= 1, burstRate <= 20_000 else { throw ValidationError("--burst-rate must be in 1...20000 per second") }
        guard heavyShare >= 0, heavyShare <= 1 else { throw ValidationError("--heavy-share must be in 0...1") }
        guard !(seedOnly && skipSeed) else { throw ValidationError("--seed-only and --skip-seed exclude each other") }
        guard let url = URLComponents(string: gateway), url.scheme == "http", let host = url.host, Self.isLoopback(host) else {
            throw ValidationError("--gateway must be an http:// URL on this machine (127.0.0.0/8, localhost or [::1])")
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        let h = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        if h == "localhost" || h == "::1" { return true }
        let parts = h.split(separator: ".")
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }

    func run() async throws {
        let context = try await CLIContext()
        let configuration = context.configuration
        let tenant = try await context.tenant("default")
        let profile = BenchSeeder.Profile(callers: callers, memoriesPerCaller: memories, heavyMemories: heavy, seed: seed)
        let seeder = BenchSeeder(vault: context.vault, tenant: tenant, profile: profile)
        var report = BenchReport(profile: .init(self, profile: profile))

        // 1. Seed.
        if skipSeed {
            report.seeding = .init(status: "skipped (--skip-seed)")
        } else if try await seeder.isSeeded() {
            report.seeding = .init(status: "already seeded")
            note("store already seeded (the heavy caller holds \(heavy) memories); not seeding again")
        } else {
            note("seeding \(profile.totalMemories) memories: \(callers) callers × \(memories) + a heavy caller with \(heavy)")
            // Progress lines only for a person watching: not with --json, not into a pipe or file.
            let showProgress = !json && isatty(STDERR_FILENO) == 1
            let seeded = try await seeder.seed(progress: { if showProgress { note($0) } })
            report.seeding = .init(status: "seeded", memoriesWritten: seeded.memoriesWritten, seconds: seeded.seconds)
            note(
                "seeded \(seeded.memoriesWritten) memories in \(String(format: "%.1f", seeded.seconds)) s (\(seeded.batchesSkipped) batches were already there)"
            )
        }
        if seedOnly { return try emit(report) }

        // 2. Drive the gateway.
        let secret = try configuration.require(\.webhookSecret, "ENGRAM_WEBHOOK_SECRET")
        let apiKey = try configuration.require(\.apiKey, "ENGRAM_API_KEY")
        let queue = RedisEventQueue(
            endpoint: configuration.redis, timeout: configuration.redisTimeout, keys: QueueKeys(prefix: configuration.queuePrefix))
        var clientConfiguration = HTTPClient.Configuration()
        clientConfiguration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 256)
        clientConfiguration.timeout = .init(connect: .seconds(10), read: .seconds(10))  // waiting for a pooled connection counts as connecting
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
        let base = gateway.hasSuffix("/") ? String(gateway.dropLast()) : gateway
        let load = LoadGenerator(
            client: client, base: base, apiKey: apiKey, secret: secret, seeder: seeder, seed: seed, heavyShare: heavyShare, runID: Self.runID())
        do {
            try await load.checkReady()
            try await load.warmUp()
            report.paths = try await mainRun(load, queue: queue, store: context.store, tenant: tenant.id, report: &report)
            if workerBurst > 0 {
                report.workerBursts.append(
                    await self.workerBurst(load, queue: queue, path: .postCall, label: "post-call burst", count: workerBurst, rate: burstRate))
            }
            if rememberBurst > 0 {
                report.workerBursts.append(
                    await self.workerBurst(
                        load, queue: queue, path: .rememberHeavy, label: "remember burst, heavy caller", count: rememberBurst, rate: burstRate))
            }
            if findMaxPostcall {
                if report.queueDrained == false {
                    // The steps should not start behind the mixed run's backlog.
                    note("waiting up to \(Int(Self.drainDeadline.seconds)) s more for the worker's backlog before the post-call steps")
                    _ = await Self.waitForDrain(queue, deadline: Self.drainDeadline)
                }
                report.maxPostcall = try await findMax(load, queue: queue)
            }
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
        try emit(report)
    }

    /// All paths at once for `duration`, then the queue drains and the lag tracker finishes.
    func mainRun(_ load: LoadGenerator, queue: RedisEventQueue, store: any MemoryStore, tenant: String, report: inout BenchReport) async throws
        -> [PathResult]
    {
        let before = try? await queue.stats()
        let tracker = LagTracker(store: store, tenant: tenant)
        let poller = Task { await tracker.poll(every: Self.lagPollInterval) }
        let postRequests = load.prepareRun(.postCall, label: "m", rate: ratePostcall, duration: duration)
        let preRequests = load.prepareRun(.conversationInit, label: "m", rate: ratePrecall, duration: duration)
        let searchRequests = load.prepareRun(.searchMemory, label: "m", rate: rateSearch, duration: duration)
        note(
            "driving \(load.base) for \(Int(duration)) s: post-call \(ratePostcall)/s, conversation-init \(ratePrecall)/s, search-memory \(rateSearch)/s (open loop)"
        )
        let start = ContinuousClock.now + .milliseconds(50)
        async let post = load.drive(postRequests, rate: ratePostcall, start: start, tracker: tracker)
        async let pre = load.drive(preRequests, rate: ratePrecall, start: start, tracker: nil)
        async let search = load.drive(searchRequests, rate: rateSearch, start: start, tracker: nil)
        let (postResult, preResult, searchResult) = await (post, pre, search)

        note("load done; waiting for the queue to drain (deadline \(Int(Self.drainDeadline.seconds)) s)")
        let drain = await Self.waitForDrain(queue, deadline: Self.drainDeadline)
        report.queueDrained = drain.drained
        report.drainSeconds = drain.seconds
        // The last rows may land just after the queue empties: give the poller a moment.
        let settle = ContinuousClock.now + .seconds(drain.drained ? 5 : 1)
        while await tracker.outstandingCount > 0, ContinuousClock.now < settle { try await Task.sleep(for: .milliseconds(20)) }
        poller.cancel()
        _ = await poller.value
        if let after = try? await queue.stats(), let before {
            report.deadLettersAdded = after.dead - before.dead
            report.retriesPending = after.retry
        }
        let lag = await tracker.result(offeredRate: ratePostcall, start: start)
        return [
            postResult.summary(path: "post-call ack", offered: ratePostcall, start: start, targetMs: 5),
            preResult.summary(path: "conversation-init", offered: ratePrecall, start: start, targetMs: 20),
            searchResult.summary(path: "search-memory", offered: rateSearch, start: start, targetMs: 10),
            lag,
        ]
    }

    /// Steps the post-call rate, `stepDuration` each, until p99 reaches 50 ms or errors appear.
    /// The queue is not drained between steps: any step outruns one worker, which then works
    /// flat out beside the gateway either way (one host, as `make run` deploys it).
    func findMax(_ load: LoadGenerator, queue: RedisEventQueue) async throws -> MaxPostcallResult {
        var result = MaxPostcallResult(criterion: "p99 < \(Int(Self.maxPostcallP99Ms)) ms and no errors, \(Int(stepDuration)) s per step")
        for rate in Self.maxPostcallSteps {
            try await Task.sleep(for: .seconds(1))
            note("find-max-postcall: \(Int(rate))/s for \(Int(stepDuration)) s")
            let requests = load.prepareRun(.postCall, label: "max\(Int(rate))", rate: rate, duration: stepDuration)
            let start = ContinuousClock.now + .milliseconds(50)
            let recorded = await load.drive(requests, rate: rate, start: start, tracker: nil)
            let step = recorded.summary(path: "post-call ack", offered: rate, start: start, targetMs: Self.maxPostcallP99Ms)
            let passed = step.errors == 0 && step.p99Ms < Self.maxPostcallP99Ms && step.achievedRate >= 0.95 * rate
            result.steps.append(
                .init(
                    rate: rate, achievedRate: step.achievedRate, p50Ms: step.p50Ms, p99Ms: step.p99Ms, maxMs: step.maxMs, errors: step.errors,
                    sendDelayP99Ms: step.sendDelayP99Ms ?? 0, passed: passed))
            guard passed else { break }
            result.sustainableRate = rate
        }
        result.queuePendingAfter = try? await queue.stats().pending
        return result
    }

    static func waitForDrain(_ queue: RedisEventQueue, deadline: Duration) async -> (drained: Bool, seconds: Double) {
        let started = ContinuousClock.now
        while ContinuousClock.now - started < deadline {
            if let stats = try? await queue.stats(), stats.pending + stats.processing == 0 {
                return (true, (ContinuousClock.now - started).seconds)
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return (false, (ContinuousClock.now - started).seconds)
    }

    static func runID() -> String { String(UInt64(Date().timeIntervalSince1970 * 1000), radix: 36) }

    func emit(_ report: BenchReport) throws {
        if json { return try printJSON(report) }
        print(report.table())
    }
}

/// Progress and notes go to stderr; results to stdout.
func note(_ text: String) {
    FileHandle.standardError.write(Data(("bench: " + text + "\n").utf8))
}

// MARK: - load generation

/// The three HTTP paths under test.
enum BenchPath: Sendable {
    case postCall, conversationInit, searchMemory
    /// The `remember` tool for the heavy caller (worker bursts only).
    case rememberHeavy
}

/// Sends requests at a fixed arrival rate and records what came back.
struct LoadGenerator: Sendable {
    let client: HTTPClient
    let base: String
    let apiKey: String
    let secret: String
    let seeder: BenchSeeder
    let seed: UInt64
    let heavyShare: Double
    let runID: String

    /// One request, ready to send.
    struct Prepared: Sendable {
        var url: String
        var headers: [(String, String)]
        var body: Data
        /// The processed-event key a post-call will produce.
        var eventKey: String?
        var expectReturning: Bool
    }

    func checkReady() async throws {
        var request = HTTPClientRequest(url: base + "/health/ready")
        request.method = .GET
        do {
            let response = try await client.execute(request, timeout: .seconds(5))
            _ = try await response.body.collect(upTo: 64 * 1024)
            guard response.status.code == 200 else { throw BenchError.gatewayNotReady("\(base)/health/ready answered \(response.status.code)") }
        } catch let error as BenchError {
            throw error
        } catch {
            throw BenchError.gatewayNotReady("\(base) does not answer (\(type(of: error))); start it first (make run, or make bench)")
        }
    }

    /// A few unrecorded requests per path: connections open, the heavy caller's vectors load.
    func warmUp() async throws {
        var rng = SplitMix64.derived(seed, 0x5741_524D)  // "WARM"
        for path in [BenchPath.conversationInit, .searchMemory] {
            for i in 0..<10 {
                let prepared = prepare(path, id: "warm-\(i)", rng: &rng, heavy: i < 2)
                _ = await send(prepared)
            }
        }
        for i in 0..<5 { _ = await send(prepare(.postCall, id: "warm-\(i)", rng: &rng, heavy: false)) }
    }

    /// The request for `path`: a seeded caller (`heavyShare` the heavy one, for reads), seeded content.
    func prepare(_ path: BenchPath, id: String, rng: inout SplitMix64, heavy forceHeavy: Bool? = nil) -> Prepared {
        let profile = seeder.profile
        let useHeavy = forceHeavy ?? (profile.heavyMemories > 0 && rng.unit() < heavyShare)
        let phone = useHeavy ? BenchSeeder.heavyPhone : BenchSeeder.phone(caller: rng.below(profile.callers))
        switch path {
        case .postCall:
            // Post-calls come from regular callers only: the heavy caller is a read-path stress.
            let caller = BenchSeeder.phone(caller: rng.below(profile.callers))
            let conversationID = "bench-\(runID)-\(id)"
            let now = Int(Date().timeIntervalSince1970)
            let transcript = BenchVocabulary.transcript(&rng).enumerated().map { i, turn in
                #"{"role":\#(jsonLiteral(turn.role)),"message":\#(jsonLiteral(turn.message)),"time_in_call_secs":\#(i * 8)}"#
            }
            // Built by hand: JSONSerialization costs more than the gateway's whole answer.
            let body = Data(
                ("""
                {"type":"post_call_transcription","event_timestamp":\(now),"data":{"agent_id":"agent_bench",\
                "conversation_id":\(jsonLiteral(conversationID)),"status":"done","transcript":[\(transcript.joined(separator: ","))],\
                "metadata":{"start_time_unix_secs":\(now - 60),"call_duration_secs":45,\
                "phone_call":{"external_number":\(jsonLiteral(caller)),"direction":"inbound"}},"analysis":{}}}
                """).utf8)
            let header = WebhookSigner.header(body: body, secret: secret, timestamp: Int64(now))
            return Prepared(
                url: base + "/v1/elevenlabs/post-call", headers: [("Content-Type", "application/json"), ("ElevenLabs-Signature", header)],
                body: body, eventKey: "\(EventType.postCallTranscription):\(conversationID)", expectReturning: false)
        case .conversationInit:
            let body =
                #"{"caller_id":\#(jsonLiteral(phone)),"agent_id":"agent_bench","called_number":"+15550100000","call_sid":\#(jsonLiteral("bench-\(runID)-\(id)"))}"#
            return Prepared(
                url: base + "/v1/elevenlabs/conversation-init",
                headers: [("Content-Type", "application/json"), ("Authorization", "Bearer \(apiKey)")],
                body: Data(body.utf8), eventKey: nil, expectReturning: true)
        case .rememberHeavy:
            let fact = BenchVocabulary.query(&rng) + " (note \(id))"
            let body =
                #"{"fact":\#(jsonLiteral(fact)),"caller_id":\#(jsonLiteral(BenchSeeder.heavyPhone)),"conversation_id":\#(jsonLiteral("bench-\(runID)-\(id)"))}"#
            return Prepared(
                url: base + "/v1/tools/remember", headers: [("Content-Type", "application/json"), ("Authorization", "Bearer \(apiKey)")],
                body: Data(body.utf8), eventKey: nil, expectReturning: false)
        case .searchMemory:
            let query = BenchVocabulary.query(&rng)
            let body =
                #"{"query":\#(jsonLiteral(query)),"caller_id":\#(jsonLiteral(phone)),"conversation_id":\#(jsonLiteral("bench-\(runID)-\(id)")),"limit":5}"#
            return Prepared(
                url: base + "/v1/tools/search-memory", headers: [("Content-Type", "application/json"), ("Authorization", "Bearer \(apiKey)")],
                body: Data(body.utf8), eventKey: nil, expectReturning: false)
        }
    }

    enum Outcome: Sendable {
        case ok(degraded: Bool)
        case status(Int)
        case transport(String)
    }

    func send(_ prepared: Prepared) async -> Outcome {
        var request = HTTPClientRequest(url: prepared.url)
        request.method = .POST
        for (name, value) in prepared.headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(prepared.body)
        do {
            let response = try await client.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 4 * 1024 * 1024)
            guard response.status.code == 200 else { return .status(Int(response.status.code)) }
            // Pre-call never fails a call: a slow or failing store answers the neutral set, which
            // is counted apart (every bench caller is a returning caller).
            let degraded = prepared.expectReturning && body.readableBytesView.firstRange(of: Array(#""is_returning_caller":true"#.utf8)) == nil
            return .ok(degraded: degraded)
        } catch {
            return .transport(Self.describe(error))
        }
    }

    static func describe(_ error: any Error) -> String {
        let text = String(describing: error)
        return String(text.prefix(80))
    }

    /// Every request of a run at `rate` for `duration`, built before it starts: building them
    /// (transcripts, HMAC signatures) during the run would take CPU from the server on the same
    /// cores, and at thousands per second that is the generator measuring itself.
    func prepareRun(_ path: BenchPath, label: String, rate: Double, duration: Double) -> [Prepared] {
        guard rate > 0 else { return [] }
        let count = Int((rate * duration).rounded())
        var rng = SplitMix64.derived(seed, path.streamID, UInt64(rate.rounded()))
        return (0..<count).map { i in prepare(path, id: "\(label)-\(i)", rng: &rng) }
    }

    /// Open loop: request i is due at start + i/rate; it is sent then (or at once when the
    /// generator is late) without waiting for earlier answers, and its latency counts from its
    /// due time, so a server that stalls is charged for the requests that queued behind it.
    func drive(_ requests: [Prepared], rate: Double, start: ContinuousClock.Instant, tracker: LagTracker?) async -> PathRecorder {
        let recorder = PathRecorder()
        guard rate > 0 else { return recorder }
        await withDiscardingTaskGroup { group in
            for (i, prepared) in requests.enumerated() {
                let due = start + .nanoseconds(Int64((Double(i) * 1e9 / rate).rounded()))
                if ContinuousClock.now < due { try? await Task.sleep(until: due, tolerance: .microseconds(100), clock: .continuous) }
                group.addTask {
                    let sent = ContinuousClock.now
                    let outcome = await send(prepared)
                    let done = ContinuousClock.now
                    recorder.record(outcome, latency: done - due, sendDelay: sent - due, at: done)
                    if case .ok = outcome, let key = prepared.eventKey, let tracker {
                        await tracker.acknowledged(key: key, sent: sent)
                    }
                }
            }
        }
        return recorder
    }
}

extension BenchPath {
    var streamID: UInt64 {
        switch self {
        case .postCall: return 1
        case .conversationInit: return 2
        case .searchMemory: return 3
        case .rememberHeavy: return 4
        }
    }
}

enum BenchError: Error, CustomStringConvertible {
    case gatewayNotReady(String)
    var description: String {
        switch self {
        case .gatewayNotReady(let why): return "gateway not ready: \(why)"
        }
    }
}

/// A JSON string literal (quotes, backslashes and control characters escaped).
func jsonLiteral(_ text: String) -> String {
    var out = "\""
    out.reserveCapacity(text.utf8.count + 2)
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20:
            out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

/// Microsecond HDR histogram, 1 µs to 2 minutes, 3 significant digits.
func latencyHistogram() -> Histogram<UInt64> {
    Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
}

extension Duration {
    var microseconds: UInt64 {
        let (s, atto) = components
        return UInt64(max(0, s)) * 1_000_000 + UInt64(max(0, atto) / 1_000_000_000_000)
    }
}

/// What one path's requests came back with (thread-safe: answers arrive on many tasks).
final class PathRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var histogram = latencyHistogram()
    /// How late the generator sent each request (its own floor, included in the latencies).
    private var sendDelays = latencyHistogram()
    private var ok = 0
    private var degraded = 0
    private var errorKinds: [String: Int] = [:]
    private var lastCompletion: ContinuousClock.Instant?

    func record(_ outcome: LoadGenerator.Outcome, latency: Duration, sendDelay: Duration, at: ContinuousClock.Instant) {
        lock.lock()
        defer { lock.unlock() }
        lastCompletion = max(lastCompletion ?? at, at)
        _ = sendDelays.record(min(sendDelay.microseconds, sendDelays.highestTrackableValue))
        switch outcome {
        case .ok(let wasDegraded):
            ok += 1
            if wasDegraded { degraded += 1 }
            _ = histogram.record(min(latency.microseconds, histogram.highestTrackableValue))
        case .status(let code):
            errorKinds["http \(code)", default: 0] += 1
        case .transport(let what):
            errorKinds[what, default: 0] += 1
        }
    }

    /// Latency over successful answers; errors are counted apart.
    func summary(path: String, offered: Double, start: ContinuousClock.Instant, targetMs: Double) -> PathResult {
        lock.lock()
        defer { lock.unlock() }
        let span = lastCompletion.map { max(0.001, ($0 - start).seconds) } ?? 0
        var result = PathResult(
            path: path, offeredRate: offered, achievedRate: span > 0 ? Double(ok) / span : 0, requests: ok + errorKinds.values.reduce(0, +),
            ok: ok, errors: errorKinds.values.reduce(0, +), errorKinds: errorKinds, degraded: degraded, histogram: histogram, targetMs: targetMs)
        if sendDelays.totalCount > 0 {
            result.sendDelayP50Ms = Double(sendDelays.valueAtPercentile(50)) / 1000
            result.sendDelayP99Ms = Double(sendDelays.valueAtPercentile(99)) / 1000
        }
        return result
    }
}

/// Extraction lag seen from the store: every acknowledged post-call is outstanding until its
/// processed-event row (written in the same transaction as its memories) appears. Polled every
/// 20 ms, oldest first (the queue is FIFO), so a lag is exact to the polling interval plus the
/// time one poll takes: it may read up to ~20 ms high, never low. The lag counts from when the
/// bench sent the request, so it includes the acknowledgement and the time in the queue.
actor LagTracker {
    let store: any MemoryStore
    let tenant: String
    private var outstanding: [(key: String, sent: ContinuousClock.Instant)] = []
    private var histogram = latencyHistogram()
    private var stored = 0
    private var lastSeen: ContinuousClock.Instant?
    static let window = 256
    static let maxMisses = 16

    init(store: any MemoryStore, tenant: String) {
        self.store = store
        self.tenant = tenant
    }

    func acknowledged(key: String, sent: ContinuousClock.Instant) { outstanding.append((key, sent)) }

    var outstandingCount: Int { outstanding.count }

    func poll(every interval: Duration) async {
        while !Task.isCancelled {
            await check()
            try? await Task.sleep(for: interval)
        }
        await check()
    }

    /// Oldest first; stops after a few consecutive misses (workers take events in order, so a
    /// long run of unprocessed ones means the rest are not done either), which keeps each poll
    /// cheap when a backlog builds up.
    private func check() async {
        let window = Array(outstanding.prefix(Self.window))
        var seen = Set<String>()
        var misses = 0
        for item in window {
            if (try? await store.isProcessed(tenant: tenant, idempotencyKey: item.key)) == true {
                let now = ContinuousClock.now
                _ = histogram.record(min((now - item.sent).microseconds, histogram.highestTrackableValue))
                stored += 1
                lastSeen = now
                seen.insert(item.key)
                misses = 0
            } else {
                misses += 1
                if misses >= Self.maxMisses { break }
            }
        }
        // Only the window can hold what was seen: the rest of a long backlog is not rehashed on every poll.
        if !seen.isEmpty {
            let head = min(window.count, outstanding.count)
            let kept = outstanding.prefix(head).filter { !seen.contains($0.key) }
            outstanding.replaceSubrange(0..<head, with: kept)
        }
    }

    func result(offeredRate: Double, start: ContinuousClock.Instant) -> PathResult {
        let span = lastSeen.map { max(0.001, ($0 - start).seconds) } ?? 0
        let missing = outstanding.count
        return PathResult(
            path: "extraction (event→stored)", offeredRate: offeredRate, achievedRate: span > 0 ? Double(stored) / span : 0,
            requests: stored + missing, ok: stored, errors: missing, errorKinds: missing > 0 ? ["not stored before the deadline": missing] : [:],
            degraded: 0, histogram: histogram, targetMs: 100)
    }
}

// MARK: - report

struct PathResult: Encodable {
    var path: String
    var offeredRate: Double
    var achievedRate: Double
    var requests: Int
    var ok: Int
    var errors: Int
    var errorKinds: [String: Int]
    var degraded: Int
    var p50Ms: Double
    var p95Ms: Double
    var p99Ms: Double
    var maxMs: Double
    var targetP95Ms: Double
    var verdict: String
    /// How late the generator itself sent requests (part of every latency above).
    var sendDelayP50Ms: Double?
    var sendDelayP99Ms: Double?

    enum CodingKeys: String, CodingKey {
        case path
        case offeredRate = "offered_rate"
        case achievedRate = "achieved_rate"
        case requests, ok, errors
        case errorKinds = "error_kinds"
        case degraded
        case p50Ms = "p50_ms"
        case p95Ms = "p95_ms"
        case p99Ms = "p99_ms"
        case maxMs = "max_ms"
        case targetP95Ms = "target_p95_ms"
        case verdict
        case sendDelayP50Ms = "send_delay_p50_ms"
        case sendDelayP99Ms = "send_delay_p99_ms"
    }

    init(
        path: String, offeredRate: Double, achievedRate: Double, requests: Int, ok: Int, errors: Int, errorKinds: [String: Int], degraded: Int,
        histogram: Histogram<UInt64>, targetMs: Double
    ) {
        self.path = path
        self.offeredRate = offeredRate
        self.achievedRate = achievedRate
        self.requests = requests
        self.ok = ok
        self.errors = errors
        self.errorKinds = errorKinds
        self.degraded = degraded
        let empty = histogram.totalCount == 0
        func ms(_ percentile: Double) -> Double { empty ? 0 : Double(histogram.valueAtPercentile(percentile)) / 1000 }
        p50Ms = ms(50)
        p95Ms = ms(95)
        p99Ms = ms(99)
        maxMs = empty ? 0 : Double(histogram.max) / 1000
        targetP95Ms = targetMs
        if empty { verdict = offeredRate > 0 ? "no data" : "not run" } else { verdict = p95Ms < targetMs ? "meets" : "misses" }
    }
}

struct MaxPostcallResult: Encodable {
    struct Step: Encodable {
        var rate: Double
        var achievedRate: Double
        var p50Ms: Double
        var p99Ms: Double
        var maxMs: Double
        var errors: Int
        var sendDelayP99Ms: Double
        var passed: Bool
        enum CodingKeys: String, CodingKey {
            case rate
            case achievedRate = "achieved_rate"
            case p50Ms = "p50_ms"
            case p99Ms = "p99_ms"
            case maxMs = "max_ms"
            case errors
            case sendDelayP99Ms = "send_delay_p99_ms"
            case passed
        }
    }
    var criterion: String
    var sustainableRate: Double = 0
    var steps: [Step] = []
    /// Events still queued for the worker when the steps ended.
    var queuePendingAfter: Int?
    enum CodingKeys: String, CodingKey {
        case criterion
        case sustainableRate = "sustainable_rate"
        case steps
        case queuePendingAfter = "queue_pending_after"
    }
}

struct BenchReport: Encodable {
    struct Profile: Encodable {
        var callers: Int
        var memoriesPerCaller: Int
        var heavyMemories: Int
        var totalMemories: Int
        var seed: UInt64
        var durationSeconds: Double
        var gateway: String
        var heavyShare: Double
        var cores: Int
        enum CodingKeys: String, CodingKey {
            case callers
            case memoriesPerCaller = "memories_per_caller"
            case heavyMemories = "heavy_memories"
            case totalMemories = "total_memories"
            case seed
            case durationSeconds = "duration_seconds"
            case gateway
            case heavyShare = "heavy_share"
            case cores
        }
        init(_ command: BenchCommand, profile: BenchSeeder.Profile) {
            callers = profile.callers
            memoriesPerCaller = profile.memoriesPerCaller
            heavyMemories = profile.heavyMemories
            totalMemories = profile.totalMemories
            seed = profile.seed
            durationSeconds = command.duration
            gateway = command.gateway
            heavyShare = command.heavyShare
            cores = ProcessInfo.processInfo.activeProcessorCount
        }
    }
    struct Seeding: Encodable {
        var status: String
        var memoriesWritten: Int = 0
        var seconds: Double = 0
        enum CodingKeys: String, CodingKey {
            case status
            case memoriesWritten = "memories_written"
            case seconds
        }
    }

    var profile: Profile
    var seeding = Seeding(status: "not run")
    var paths: [PathResult] = []
    var queueDrained: Bool?
    var drainSeconds: Double?
    var deadLettersAdded: Int?
    var retriesPending: Int?
    var maxPostcall: MaxPostcallResult?
    var workerBursts: [WorkerBurstResult] = []
    var notes = [
        "open loop: latency counts from each request's due time (coordinated omission corrected); percentiles over successful answers",
        "extraction lag: acknowledged post-call → its processed-event row seen by a 20 ms poll (reads up to ~20 ms high)",
        "post-calls come from regular seeded callers; conversation-init and search-memory pick the heavy caller with --heavy-share (default 10%)",
        "post-call target is p95 < 5 ms at 1,000 req/s; the verdict here is at the offered rate",
    ]

    enum CodingKeys: String, CodingKey {
        case profile, seeding, paths
        case queueDrained = "queue_drained"
        case drainSeconds = "drain_seconds"
        case deadLettersAdded = "dead_letters_added"
        case retriesPending = "retries_pending"
        case maxPostcall = "max_postcall"
        case workerBursts = "worker_bursts"
        case notes
    }

    func table() -> String {
        var lines: [String] = []
        lines.append(
            "Engram load benchmark: \(profile.totalMemories) memories (\(profile.callers) callers × \(profile.memoriesPerCaller) + heavy caller \(profile.heavyMemories)), \(profile.cores) cores, gateway \(profile.gateway)"
        )
        lines.append(
            "seeding: \(seeding.status)"
                + (seeding.memoriesWritten > 0 ? ", \(seeding.memoriesWritten) memories in \(String(format: "%.1f", seeding.seconds)) s" : ""))
        guard !paths.isEmpty else { return lines.joined(separator: "\n") }
        lines.append(
            "load: \(Int(profile.durationSeconds)) s, open loop, heavy caller in \(Int((profile.heavyShare * 100).rounded()))% of reads, latency from each request's due time (ms)"
        )
        lines.append("")
        func pad(_ s: String, _ n: Int, left: Bool = false) -> String {
            s.count >= n ? s : (left ? s + String(repeating: " ", count: n - s.count) : String(repeating: " ", count: n - s.count) + s)
        }
        func f(_ x: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", x) }
        lines.append(
            pad("path", 27, left: true) + pad("offered/s", 10) + pad("achieved/s", 11) + pad("ok", 7) + pad("p50", 9) + pad("p95", 9) + pad("p99", 9)
                + pad("max", 9) + pad("errors", 8) + pad("target p95", 12) + "  verdict")
        for p in paths {
            lines.append(
                pad(p.path, 27, left: true) + pad(f(p.offeredRate, 1), 10) + pad(f(p.achievedRate, 1), 11) + pad(String(p.ok), 7) + pad(f(p.p50Ms), 9)
                    + pad(f(p.p95Ms), 9) + pad(f(p.p99Ms), 9) + pad(f(p.maxMs), 9) + pad(String(p.errors), 8)
                    + pad("< " + f(p.targetP95Ms, 0) + " ms", 12) + "  " + p.verdict)
        }
        // Pre-call fallbacks are always stated, also when there are none (issue 14's target).
        for p in paths where !p.errorKinds.isEmpty || p.degraded > 0 || p.path == "conversation-init" {
            var detail = p.errorKinds.sorted { $0.value > $1.value }.map { "\($0.key): \($0.value)" }
            if p.degraded > 0 || p.path == "conversation-init" {
                detail.append("answered with the neutral set (budget or store error): \(p.degraded) of \(p.ok)")
            }
            lines.append("  \(p.path): " + detail.joined(separator: "; "))
        }
        let delays = paths.compactMap { p in p.sendDelayP99Ms.map { "\(p.path) p50 \(f(p.sendDelayP50Ms ?? 0)) / p99 \(f($0))" } }
        if !delays.isEmpty { lines.append("generator send delay after due time (ms, included above): " + delays.joined(separator: "; ")) }
        if let queueDrained, let drainSeconds {
            lines.append(
                "queue: " + (queueDrained ? "drained \(f(drainSeconds, 1)) s after the load" : "NOT drained within \(f(drainSeconds, 0)) s")
                    + (deadLettersAdded.map { ", \($0) new dead letters" } ?? "") + (retriesPending.map { ", \($0) retries pending" } ?? ""))
        }
        if !workerBursts.isEmpty {
            lines.append("")
            lines.append("worker throughput (one worker, local extractor and embedder):")
            lines.append(contentsOf: workerBursts.map { "  " + $0.line })
        }
        if let maxPostcall {
            lines.append("")
            lines.append("maximum post-call rate (\(maxPostcall.criterion)): \(f(maxPostcall.sustainableRate, 0))/s")
            lines.append(
                pad("rate/s", 8) + pad("achieved/s", 11) + pad("p50", 9) + pad("p99", 9) + pad("max", 9) + pad("errors", 8)
                    + pad("send delay p99", 16) + "  result")
            for s in maxPostcall.steps {
                lines.append(
                    pad(f(s.rate, 0), 8) + pad(f(s.achievedRate, 1), 11) + pad(f(s.p50Ms), 9) + pad(f(s.p99Ms), 9) + pad(f(s.maxMs), 9)
                        + pad(String(s.errors), 8) + pad(f(s.sendDelayP99Ms), 16) + "  " + (s.passed ? "pass" : "fail"))
            }
            if let pending = maxPostcall.queuePendingAfter { lines.append("events still queued for the worker after the steps: \(pending)") }
        }
        lines.append("")
        lines.append(contentsOf: notes.map { "note: " + $0 })
        return lines.joined(separator: "\n")
    }
}

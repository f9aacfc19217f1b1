import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import Synchronization
import Testing

@testable import EngramCore
@testable import EngramObservability
@testable import EngramQueue

/// `/metrics` of the real gateway and worker processes: every family has HELP (what `promtool
/// check metrics` insists on), the process and build families exist, counters start at zero,
/// and `engram_redis_up` tells a Redis outage from an empty queue.
@Suite("Prometheus exposition of the gateway and worker processes", .timeLimit(.minutes(1)))
struct MetricsExpositionTests {
    /// GET `url`: the status and body, or nil while nothing answers.
    func get(_ url: String, headers: [(String, String)] = []) async -> (status: UInt, body: String)? {
        var request = HTTPClientRequest(url: url)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(3)),
            let body = try? await response.body.collect(upTo: 4 << 20)
        else { return nil }
        return (response.status.code, String(buffer: body))
    }

    /// Waits until `url` answers 200 with a body that satisfies `condition`; returns that body.
    func scrape(_ url: String, until condition: @escaping (String) -> Bool = { _ in true }) async throws -> String {
        let last = Mutex<String>("")
        try await waitUntil(timeout: .seconds(30), "\(url) answers as expected") {
            guard let (status, body) = await get(url), status == 200 else { return false }
            last.withLock { $0 = body }
            return condition(body)
        }
        return last.withLock { $0 }
    }

    /// Families with `# TYPE` but no `# HELP`.
    static func familiesWithoutHelp(_ exposition: String) -> [String] {
        var typed: [String] = []
        var helped = Set<String>()
        for line in exposition.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 3)
            guard parts.count >= 3, parts[0] == "#" else { continue }
            if parts[1] == "TYPE" { typed.append(String(parts[2])) }
            if parts[1] == "HELP", parts.count == 4, !parts[3].trimmingCharacters(in: .whitespaces).isEmpty { helped.insert(String(parts[2])) }
        }
        return typed.filter { !helped.contains($0) }
    }

    /// The value of the first sample whose line starts with `prefix` (name and labels).
    static func value(_ exposition: String, _ prefix: String) -> Double? {
        exposition.split(separator: "\n").first { $0.hasPrefix(prefix + " ") }.flatMap { $0.split(separator: " ").last.flatMap { Double($0) } }
    }

    static let standardFamilies = [
        "process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds",
        "process_max_fds", "process_start_time_seconds", "engram_build_info", "engram_redis_up",
    ]

    func checkCommonFamilies(_ text: String, who: String) {
        #expect(text.contains("# TYPE"), "\(who) exposes families")
        #expect(Self.familiesWithoutHelp(text).isEmpty, "\(who): families without HELP: \(Self.familiesWithoutHelp(text))")
        for family in Self.standardFamilies { #expect(text.contains("# TYPE \(family) "), "\(who) has \(family)") }
        #expect(text.contains("engram_build_info{version=\"\(Engram.version)\"} 1"), "\(who) build info")
        #expect((Self.value(text, "process_resident_memory_bytes") ?? 0) > 0, "\(who) resident memory read from /proc")
        #expect((Self.value(text, "process_open_fds") ?? 0) > 0)
        #expect((Self.value(text, "process_start_time_seconds") ?? 0) > 1_700_000_000)
    }

    @Test(
        "gateway and worker: HELP on every family, process and build families, counters at zero, redis up; the public port has no /metrics without a key"
    )
    func helpOnEveryFamily() async throws {
        let env = try TestEnvironment()
        let port = try freePort()
        let environment = serviceEnvironment(env, port: port)
        let gateway = try ServiceProcess("engram-gateway", environment: environment, directory: env.directory)
        let worker = try ServiceProcess("engram-worker", environment: environment, directory: env.directory)
        do {
            try await waitForGatewayReady(port: port)
            let gatewayURL = "http://127.0.0.1:\(environment["ENGRAM_GATEWAY_METRICS_PORT"]!)/metrics"
            let workerURL = "http://127.0.0.1:\(environment["ENGRAM_METRICS_PORT"]!)/metrics"
            // A request on the public port, so the request families exist.
            #expect(await get("http://127.0.0.1:\(port)/health/live")?.status == 200)
            #expect(await get("http://127.0.0.1:\(port)/metrics")?.status == 404, "no /metrics on the public port without ENGRAM_METRICS_KEY")

            let gatewayText = try await scrape(gatewayURL)
            checkCommonFamilies(gatewayText, who: "gateway")
            #expect(Self.value(gatewayText, "engram_redis_up") == 1)
            #expect(Self.value(gatewayText, #"engram_postcall_events_total{outcome="queued"}"#) == 0, "counters exist at zero")
            #expect(!gatewayText.contains("engram_events_processed_total"), "worker series stay out of the gateway")
            #expect(gatewayText.contains("# TYPE engram_http_request_duration_seconds histogram"))
            for line in gatewayText.split(separator: "\n") where line.hasPrefix("engram_http_request_duration_seconds") {
                #expect(!line.contains("status="), "no status label on the latency histogram: \(line)")
            }
            #expect(!gatewayText.contains(#"route="/metrics""#), "scrapes are not counted")
            #expect(await get("http://127.0.0.1:\(environment["ENGRAM_GATEWAY_METRICS_PORT"]!)/health/live")?.status == 200)

            let workerText = try await scrape(workerURL) { Self.value($0, "engram_redis_up") == 1 }
            checkCommonFamilies(workerText, who: "worker")
            #expect(Self.value(workerText, #"engram_events_processed_total{outcome="stored"}"#) == 0, "counters exist at zero")
            #expect(workerText.contains("engram_queue_depth"))
            #expect(await get("http://127.0.0.1:\(environment["ENGRAM_METRICS_PORT"]!)/health/live")?.status == 200, "the worker's liveness probe")
        } catch {
            Issue.record("gateway log: \(gateway.output.suffix(2000))\nworker log: \(worker.output.suffix(2000))")
            throw error
        }
        _ = await gateway.terminate()
        _ = await worker.terminate()
        await env.cleanUp()
    }

    @Test("with Redis down, engram_redis_up is 0 on both; the worker logs the outage once with the address, not once per loop")
    func redisDownGauge() async throws {
        let env = try TestEnvironment()
        let port = try freePort()
        var environment = serviceEnvironment(env, port: port)
        let deadPort = try freePort()
        environment["ENGRAM_REDIS_URL"] = "redis://:sekret-password@127.0.0.1:\(deadPort)/0"
        let gateway = try ServiceProcess("engram-gateway", environment: environment, directory: env.directory)
        let worker = try ServiceProcess("engram-worker", environment: environment, directory: env.directory)
        do {
            let gatewayText = try await scrape("http://127.0.0.1:\(environment["ENGRAM_GATEWAY_METRICS_PORT"]!)/metrics") {
                Self.value($0, "engram_redis_up") == 0
            }
            #expect(Self.familiesWithoutHelp(gatewayText).isEmpty)
            let workerText = try await scrape("http://127.0.0.1:\(environment["ENGRAM_METRICS_PORT"]!)/metrics") {
                Self.value($0, "engram_redis_up") == 0
            }
            #expect(Self.familiesWithoutHelp(workerText).isEmpty)
            try await waitUntil(timeout: .seconds(20), "the worker logs the queue failure") { worker.output.contains("cannot use the queue") }
            // Two scrapes later the processor has failed many times (one take per second, plus the
            // retry scheduler twice a second): still one line each.
            _ = try await scrape("http://127.0.0.1:\(environment["ENGRAM_METRICS_PORT"]!)/metrics")
            let log = worker.output
            let queueLines = log.split(separator: "\n").filter { $0.contains("cannot use the queue") }
            #expect(queueLines.count == 1, "one line for the outage so far, got \(queueLines.count)")
            #expect(queueLines.first?.contains("127.0.0.1:\(deadPort)") == true, "the line names the address: \(queueLines.first ?? "")")
            #expect(queueLines.first?.contains("ENGRAM_REDIS_URL") == true)
            #expect(log.split(separator: "\n").filter { $0.contains("\"job\":\"retry-scheduler\"") || $0.contains("job=retry-scheduler") }.count <= 1)
            #expect(!log.contains("sekret-password"), "the password never shows")
        } catch {
            Issue.record("gateway log: \(gateway.output.suffix(2000))\nworker log: \(worker.output.suffix(2000))")
            throw error
        }
        _ = await gateway.terminate()
        _ = await worker.terminate()
        await env.cleanUp()
    }
}

/// The outage log's arithmetic, on an injected clock.
@Suite("RepeatingFailureLog", .timeLimit(.minutes(1)))
struct RepeatingFailureLogTests {
    final class Lines: @unchecked Sendable {
        let lines = Mutex<[(Logger.Level, String, Logger.Metadata)]>([])
    }

    struct Capture: LogHandler {
        let sink: Lines
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            sink.lines.withLock { $0.append((event.level, event.message.description, event.metadata ?? [:])) }
        }
    }

    @Test("a failure every 250 ms for 70 s logs the first, one line per 30 s with a count, and one recovery line")
    func throttles() {
        let sink = Lines()
        let logger = Logger(label: "test") { _ in Capture(sink: sink) }
        let log = RepeatingFailureLog("cannot use the queue", interval: .seconds(30))
        let start = ContinuousClock.now
        for tick in 0..<280 {
            log.failed(
                RedisError.connection("redis://127.0.0.1:1/0 (ENGRAM_REDIS_URL): Connection refused"), logger: logger,
                now: start + .milliseconds(250 * tick))
        }
        log.succeeded(logger: logger, now: start + .seconds(71))
        log.succeeded(logger: logger, now: start + .seconds(72))
        let lines = sink.lines.withLock { $0 }
        #expect(lines.count == 4, "first, two reminders, one recovery: \(lines.map(\.1))")
        #expect(lines.first?.2["error"]?.description.contains("ENGRAM_REDIS_URL") == true)
        #expect(lines.dropFirst().first?.2["failures_since_last_log"]?.description == "120")
        #expect(lines.last?.1.contains("recovered") == true)
        #expect(lines.last?.2["failures"]?.description == "280")
    }
}

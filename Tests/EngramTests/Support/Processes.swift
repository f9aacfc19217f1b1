import AsyncHTTPClient
import Foundation
import NIOCore
import Synchronization
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramProviders
@testable import EngramStore

#if canImport(Glibc)
    import Glibc
#endif

/// A free TCP port on 127.0.0.1 for a server a test starts.
///
/// Not one the kernel picks: those come from the ephemeral range, where any outgoing connection
/// of the parallel tests can take the port between this call and the server's bind ("Address
/// already in use" seen under load). Ports below the ephemeral range are handed out in turn, each
/// once per test process, and checked to be bindable now.
func freePort() throws -> Int {
    for _ in 0..<2_000 {
        let port = PortAllocator.next()
        if canBind(port) { return port }
    }
    throw TestSetupError.timeout("no free port below the ephemeral range")
}

/// Hands out ports 20000–32767 in turn, from a random start per test process.
enum PortAllocator {
    static let range = 20_000..<32_768
    private static let cursor = Mutex(Int.random(in: 0..<(32_768 - 20_000)))

    static func next() -> Int {
        cursor.withLock { offset in
            offset = (offset + 1) % range.count
            return range.lowerBound + offset
        }
    }
}

private func canBind(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var reuse: Int32 = 1
    _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

/// The directory of the built executables (next to the test bundle).
var productsDirectory: URL {
    let fromArguments = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    if FileManager.default.fileExists(atPath: fromArguments.appendingPathComponent("engram-gateway").path) { return fromArguments }
    return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent(".build/debug")
}

extension TestEnvironment {
    /// The environment for a real engram-gateway or engram-worker process pointed at this test's
    /// Redis prefix, database and keys (nothing inherited from the caller's ENGRAM_ variables).
    func processEnvironment(httpPort: Int) -> [String: String] { serviceEnvironment(self, port: httpPort) }
}

/// A started Engram executable with its output captured to a file.
final class ServiceProcess: @unchecked Sendable {
    let process: ChildProcess
    let logURL: URL

    init(_ name: String, environment: [String: String], directory: URL) throws {
        logURL = directory.appendingPathComponent("\(name)-\(UUID().uuidString.prefix(6)).log")
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        process = try ChildProcess(
            executable: productsDirectory.appendingPathComponent(name).path, arguments: [], environment: environment,
            directory: directory.path, output: logURL.path)
    }

    var output: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// SIGTERM, then the exit status (or nil if it did not exit within the deadline; then SIGKILL).
    func terminate(within deadline: Duration = .seconds(15)) async -> Int32? {
        guard process.isRunning else { return process.terminationStatus }
        kill(process.processIdentifier, SIGTERM)
        let end = ContinuousClock.now + deadline
        while process.isRunning && ContinuousClock.now < end { try? await Task.sleep(for: .milliseconds(50)) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            return nil
        }
        return process.terminationStatus
    }

    func kill9() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// The environment of a gateway or worker process on this test's Redis prefix, store and keys,
/// with no `ENGRAM_*` or OpenTelemetry variable inherited from the test runner.
func serviceEnvironment(_ env: TestEnvironment, port: Int) -> [String: String] {
    var environment = ProcessInfo.processInfo.environment.filter {
        !$0.key.hasPrefix("ENGRAM_") && !$0.key.hasPrefix("OTEL_") && $0.key != "OPENAI_API_KEY"
    }
    switch env.databaseLocation {
    case .sqlite(let path): environment["ENGRAM_DATABASE_URL"] = "sqlite://" + path
    case .postgres(let url): environment["ENGRAM_DATABASE_URL"] = url
    }
    environment["ENGRAM_REDIS_URL"] = "redis://\(env.redis.host):\(env.redis.port)/\(env.redis.database)"
    environment["ENGRAM_QUEUE_PREFIX"] = env.prefix
    environment["ENGRAM_MASTER_KEY"] = env.masterKey.base64
    environment["ENGRAM_API_KEY"] = env.apiKey
    environment["ENGRAM_WEBHOOK_SECRET"] = env.webhookSecret
    environment["ENGRAM_HTTP_PORT"] = String(port)
    environment["ENGRAM_HEARTBEAT_TTL_MS"] = "1000"
    environment["ENGRAM_METRICS_PORT"] = String((try? freePort()) ?? 0)
    environment["ENGRAM_GATEWAY_METRICS_PORT"] = String((try? freePort()) ?? 0)
    environment["ENGRAM_SPOOL_DIR"] = env.directory.appendingPathComponent("spool").path
    return environment
}

/// Waits until the gateway process on `port` answers `/health/ready` with 200.
func waitForGatewayReady(port: Int, timeout: Duration = .seconds(30)) async throws {
    try await waitUntil(timeout: timeout, "gateway ready") {
        let request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/health/ready")
        return (try? await HTTPClient.shared.execute(request, timeout: .seconds(2)))?.status == .ok
    }
}

/// Posts the signed fixture to the gateway process on `port` (expecting 200) and waits until the
/// worker process has stored its memories in this test's SQLite file.
func postFixtureAndWaitForMemories(_ env: TestEnvironment, port: Int) async throws {
    let body = try fixtureTranscript()
    var post = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/elevenlabs/post-call")
    post.method = .POST
    post.headers.add(name: "ElevenLabs-Signature", value: signedHeader(body, secret: env.webhookSecret))
    post.body = .bytes(ByteBuffer(bytes: body))
    let response = try await HTTPClient.shared.execute(post, timeout: .seconds(5))
    #expect(response.status == .ok)

    // The environment's own backend (SQLite or PostgreSQL), read as the processes wrote it.
    let store = try await env.openStore()
    let vault = MemoryVault(store: store, keyRing: KeyRing(master: env.masterKey), embedder: LocalEmbedder())
    do {
        try await waitUntil(timeout: .seconds(20), "memories stored by the worker process") {
            guard let tenant = try await vault.tenant("default") else { return false }
            return try await !vault.memories(tenant: "default", user: tenant.userKeys.key(for: .phone(Fixtures.fixturePhone))).isEmpty
        }
    } catch {
        await store.close()
        throw error
    }
    await store.close()
}

/// What a run of the `engram` executable printed, and how it exited.
struct CLIRun {
    var status: Int32
    var stdout: String
    var stderr: String
    /// The non-empty lines of stderr.
    var errorLines: [Substring] { stderr.split(separator: "\n") }
}

/// Runs the real `engram` executable with only the given environment (no dev.env in `directory`)
/// and optional standard input, to its exit (at most `timeout`, then SIGKILL and an error).
func runEngram(
    _ arguments: [String], environment: [String: String], directory: URL, input: String? = nil, timeout: Duration = .seconds(60)
) async throws -> CLIRun {
    try await runToExit(
        productsDirectory.appendingPathComponent("engram").path, arguments, environment: environment, directory: directory,
        input: input, timeout: timeout, label: "engram \(arguments.joined(separator: " "))")
}

/// Runs an executable to its exit (at most `timeout`, then SIGKILL and an error). Its output goes
/// to files (no pipe to fill) and no thread is blocked while it runs.
func runToExit(
    _ executable: String, _ arguments: [String], environment: [String: String], directory: URL, input: String? = nil,
    timeout: Duration, label: String
) async throws -> CLIRun {
    let id = UUID().uuidString.prefix(6)
    let out = directory.appendingPathComponent("run-\(id).out")
    let err = directory.appendingPathComponent("run-\(id).err")
    let inURL = directory.appendingPathComponent("run-\(id).in")
    _ = FileManager.default.createFile(atPath: out.path, contents: nil)
    _ = FileManager.default.createFile(atPath: err.path, contents: nil)
    _ = FileManager.default.createFile(atPath: inURL.path, contents: Data((input ?? "").utf8))
    defer { for url in [out, err, inURL] { try? FileManager.default.removeItem(at: url) } }
    let process = try ChildProcess(
        executable: executable, arguments: arguments, environment: environment,
        directory: directory.path, output: out.path, input: inURL.path, errors: err.path)
    let end = ContinuousClock.now + timeout
    while process.isRunning {
        if ContinuousClock.now > end {
            kill(process.processIdentifier, SIGKILL)
            throw TestSetupError.timeout("\(label) did not exit within \(timeout)")
        }
        try await Task.sleep(for: .milliseconds(20))
    }
    return CLIRun(
        status: process.terminationStatus, stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
        stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
}

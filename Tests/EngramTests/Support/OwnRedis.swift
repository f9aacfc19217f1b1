import Foundation

@testable import EngramCore
@testable import EngramQueue

#if canImport(Glibc)
    import Glibc
#endif

/// A Redis server of the test's own, for tests that stop and restart it.
final class OwnRedis: @unchecked Sendable {
    let port: Int
    let directory: URL
    /// Extra `redis-server` arguments (they override the defaults below).
    let extraArguments: [String]
    private var process: ChildProcess?

    init(directory: URL, extraArguments: [String] = []) throws {
        port = try freePort()
        self.directory = directory
        self.extraArguments = extraArguments
    }

    var endpoint: RedisEndpoint { RedisEndpoint(host: "127.0.0.1", port: port) }

    func start() async throws {
        let process = try ChildProcess(
            executable: "/usr/bin/redis-server",
            arguments: [
                "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir",
                directory.path,
            ]
                + extraArguments,
            environment: ProcessInfo.processInfo.environment, directory: directory.path, output: nil)
        self.process = process
        let client = RedisClient(endpoint: endpoint, timeout: .milliseconds(500), connections: 1)
        try await waitUntil("own redis answers") { (try? await client.ping()) != nil }
    }

    /// kill -9 (what an outage looks like), then wait until the port stops answering.
    func stop() async {
        guard let process else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
        let client = RedisClient(endpoint: endpoint, timeout: .milliseconds(200), connections: 1)
        try? await waitUntil("own redis is gone") { (try? await client.ping()) == nil }
    }

    deinit { if let process, process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

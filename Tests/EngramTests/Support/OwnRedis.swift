import Foundation
import Testing

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

    /// Starts redis-server on this port and waits until it answers (30 s at most).
    ///
    /// It used to wait 4 s, then kill the server and start it again (three times), because in the
    /// full suite servers "stopped after their first log line and never listened". They had not:
    /// at 4 s each was running, idle in its event loop, its port accepting connections, and its
    /// log ended "Ready to accept connections". With every suite starting at once on two shared
    /// cores, its start and the test's PING took longer than 4 s, and killing it only started the
    /// wait again. A server that answers late is now waited for, and reported (with the time
    /// its log says it was ready); one that exits is reported with its log and started again
    /// (e.g. its port was taken), three times at most.
    func start() async throws {
        let log = directory.appendingPathComponent("redis.log")
        for attempt in 1...3 {
            let spawned = Date()
            let began = ContinuousClock.now
            let process = try ChildProcess(
                executable: "/usr/bin/redis-server",
                arguments: [
                    "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir",
                    directory.path,
                ]
                    + extraArguments,
                environment: ProcessInfo.processInfo.environment, directory: directory.path, output: log.path)
            self.process = process
            let client = RedisClient(endpoint: endpoint, timeout: .milliseconds(500), connections: 1)
            do {
                try await waitUntil(timeout: .seconds(30), "own redis answers") {
                    guard process.isRunning else { throw TestSetupError.timeout("redis-server exited") }
                    return (try? await client.ping()) != nil
                }
                let waited = ContinuousClock.now - began
                if waited > .seconds(4) {
                    let ready = ((try? String(contentsOf: log, encoding: .utf8)) ?? "").split(separator: "\n").last { $0.contains("Ready to accept") }
                    print(
                        "OwnRedis: redis-server on port \(port) answered \(waited) after its start at \(Self.clock(spawned)); its log: \(ready ?? "no ready line")"
                    )
                }
                return
            } catch {
                print(
                    "OwnRedis: redis-server on port \(port), start \(attempt) at \(Self.clock(spawned)), no answer: \(Self.diagnose(process, port: port, log: log))"
                )
                // Only while not reaped: once reaped, its pid may be another process's.
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                process.waitUntilExit()
                self.process = nil
                guard attempt < 3 else {
                    let text = (try? String(contentsOf: log, encoding: .utf8)) ?? "no log"
                    Issue.record("redis-server on port \(port) did not answer after 3 starts: \(text.suffix(1_000))")
                    throw error
                }
            }
        }
    }

    /// HH:mm:ss.SSS in UTC, as redis-server's log writes its times.
    static func clock(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "HH:mm:ss.SSS"
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }

    /// The process's state (or how it ended), whether its port accepts a TCP connection, and
    /// the end of its log.
    static func diagnose(_ process: ChildProcess, port: Int, log: URL) -> String {
        let pid = process.processIdentifier
        var state = "exited with \(process.isRunning ? -1 : process.terminationStatus) (128+n: signal n)"
        if process.isRunning {
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? "?"
            let wchan = (try? String(contentsOfFile: "/proc/\(pid)/wchan", encoding: .utf8)) ?? "?"
            let field = stat.split(separator: ")").last?.split(separator: " ").first ?? "?"
            state = "running, state \(field), wchan \(wchan)"
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        close(fd)
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? "no log"
        return "pid \(pid) \(state); TCP connect to the port \(connected ? "accepted" : "refused"); log: \(text.suffix(600))"
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

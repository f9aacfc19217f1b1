import Foundation
import Testing

@testable import EngramCore
@testable import EngramQueue

/// Concurrent commands on one Redis connection are pipelined (`RedisClient.Lane`): each caller
/// still gets its own reply, an error reply fails only its command, and a connection lost with
/// commands in flight fails them with a connection error and reconnects for the next ones.
@Suite("Redis pipelining across concurrent callers", .serialized, .timeLimit(.minutes(1)))
struct RedisPipelineTests {
    @Test("500 concurrent commands on one connection each get their own reply, in order per caller")
    func concurrentReplies() async throws {
        let env = try TestEnvironment()
        let client = env.redisClient()  // one connection: everything goes through one lane
        let prefix = env.prefix + "pipeline-"
        let replies = try await withThrowingTaskGroup(of: (Int, Int64?, Data?).self) { group in
            for i in 0..<500 {
                group.addTask {
                    let key = RedisArgument(prefix + String(i))
                    try await client.command("SET", key, RedisArgument(String(i * 3)))
                    let incremented = try await client.command("INCRBY", key, RedisArgument(String(i))).int
                    let read = try await client.command("GET", key).data
                    return (i, incremented, read)
                }
            }
            return try await group.reduce(into: [(Int, Int64?, Data?)]()) { $0.append($1) }
        }
        #expect(replies.count == 500)
        for (i, incremented, read) in replies {
            #expect(incremented == Int64(i * 4))
            #expect(read == Data(String(i * 4).utf8))
        }
        // Large arguments travel whole through a batch too.
        let big = Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0) })
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<20 {
                group.addTask {
                    let key = RedisArgument(prefix + "big-" + String(i))
                    try await client.command("SET", key, RedisArgument(big + Data([UInt8(i)])))
                    #expect(try await client.command("GET", key).data == big + Data([UInt8(i)]))
                }
            }
            try await group.waitForAll()
        }
        await env.cleanUp()
    }

    @Test("an error reply inside a batch fails only its own command")
    func errorInBatch() async throws {
        let env = try TestEnvironment()
        let client = env.redisClient()
        let text = RedisArgument(env.prefix + "pipeline-text")
        try await client.command("SET", text, "not a number")
        let outcomes = await withTaskGroup(of: (Int, Bool).self) { group in
            for i in 0..<200 {
                group.addTask {
                    do {
                        if i % 10 == 0 {
                            _ = try await client.command("INCR", text)  // WRONGTYPE-like error reply
                        } else {
                            _ = try await client.command("PING")
                        }
                        return (i, true)
                    } catch RedisError.server {
                        return (i, false)
                    } catch {
                        Issue.record("unexpected \(type(of: error))")
                        return (i, false)
                    }
                }
            }
            return await group.reduce(into: [(Int, Bool)]()) { $0.append($1) }
        }
        for (i, succeeded) in outcomes { #expect(succeeded == (i % 10 != 0), "command \(i)") }
        await env.cleanUp()
    }

    @Test("a connection lost with a batch in flight fails those commands; the next ones reconnect")
    func connectionLoss() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("engram-pipeline-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let redis = try OwnRedis(directory: directory, extraArguments: ["--enable-debug-command", "yes"])
        try await redis.start()
        let client = RedisClient(endpoint: redis.endpoint, timeout: .seconds(1), connections: 1)
        try await client.ping()
        // Commands that block the server's single thread, so a batch is in flight when it dies.
        async let stalled: [Bool] = withTaskGroup(of: Bool.self) { group in
            for _ in 0..<50 {
                group.addTask { (try? await client.command("DEBUG", "SLEEP", "0.05")) != nil }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        try await Task.sleep(for: .milliseconds(100))
        await redis.stop()
        let results = await stalled
        #expect(results.contains(false), "some commands were in flight when Redis died")
        do {
            try await client.ping()
            Issue.record("a ping to a stopped Redis succeeded")
        } catch RedisError.connection {
        } catch {
            Issue.record("expected a connection error, got \(type(of: error))")
        }
        try await redis.start()
        try await waitUntil("the client reconnects") { (try? await client.ping()) != nil }
        await redis.stop()
    }
}

import ArgumentParser
import Foundation
import Shared

struct QueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "queue", abstract: "Inspect the event queue.", subcommands: [Stats.self, Dead.self])

    static func open() throws -> RedisEventQueue {
        let configuration = try EngramConfiguration.fromEnvironment()
        return RedisEventQueue(endpoint: configuration.redis, timeout: configuration.redisTimeout, keys: QueueKeys(prefix: configuration.queuePrefix))
    }

    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Pending, processing, retry and dead counts.")
        @Flag(help: "One JSON object.") var json = false

        func run() async throws {
            let stats = try await QueueCommand.open().stats()
            if json { return try printJSON(stats) }
            print("pending     \(stats.pending)")
            print("processing  \(stats.processing)")
            print("retry       \(stats.retry)")
            print("dead        \(stats.dead)")
        }
    }

    struct Dead: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List dead letters (error class and message; payloads stay encrypted).")
        @Option(help: "How many, newest first.") var limit = 20
        @Flag(help: "JSON.") var json = false

        func run() async throws {
            let letters = try await QueueCommand.open().deadLetters(limit: limit)
            struct Row: Encodable { var id: String; var errorClass: String; var errorMessage: String; var failedAt: Double; var worker: String }
            let rows = letters.map { Row(id: $0.id, errorClass: $0.errorClass, errorMessage: $0.errorMessage, failedAt: $0.failedAt, worker: $0.worker) }
            if json { return try printJSON(rows) }
            if rows.isEmpty { print("no dead letters") }
            for row in rows { print("\(row.id)  \(isoDay.string(from: Date(timeIntervalSince1970: row.failedAt)))  \(row.errorClass): \(row.errorMessage)") }
        }
    }
}

import ArgumentParser
import EngramApp
import EngramCore
import EngramQueue
import Foundation

struct QueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue", abstract: "Inspect the event queue.", subcommands: [Stats.self, Peek.self, Dead.self])

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

    struct Peek: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the next N pending envelopes (payloads stay encrypted unless --decrypt).")
        @Argument(help: "How many envelopes to show (1...1000).") var count = 10
        @Flag(help: "Decrypt bodies with the master key (operators only; prints transcripts).") var decrypt = false
        @Flag(help: "One JSON array.") var json = false

        func run() async throws {
            let envelopes = try await QueueCommand.open().peek(max(1, min(count, 1000)))
            let cipher = decrypt ? try EngramConfiguration.fromEnvironment().keyRing().envelopeCipher : nil
            struct Row: Encodable {
                var id: String
                var tenant: String
                var type: String
                var attempt: Int
                /// Times a worker stopped while holding it (handled alone after one).
                var deaths: Int
                var receivedAt: String
                var body: String
            }
            let rows = envelopes.map { e in
                Row(
                    id: e.id, tenant: e.tenant, type: e.type, attempt: e.attempt, deaths: e.deaths ?? 0,
                    receivedAt: isoDay.string(from: Date(timeIntervalSince1970: e.receivedAt)),
                    body: cipher.flatMap { try? e.openBody(cipher: $0) }.map { String(decoding: $0, as: UTF8.self) }
                        ?? "<encrypted \(e.body.count) bytes>")
            }
            if json { return try printJSON(rows) }
            if rows.isEmpty { print("queue is empty") }
            for row in rows { print("\(row.id)  \(row.tenant)  \(row.type)  attempt \(row.attempt)  deaths \(row.deaths)  \(row.body)") }
        }
    }

    struct Dead: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Dead letters: list, show, replay, purge.", subcommands: [List.self, Show.self, Replay.self, Purge.self],
            defaultSubcommand: List.self)

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Dead letters, newest first: error class and message only.")
            @Option(help: "How many.") var limit = 20
            @Flag(help: "One JSON array.") var json = false

            func run() async throws {
                let letters = try await QueueCommand.open().deadLetters(limit: max(1, limit))
                struct Row: Encodable {
                    var id: String
                    var errorClass: String
                    var errorMessage: String
                    var failedAt: String
                    var worker: String
                }
                let rows = letters.map {
                    Row(
                        id: $0.id, errorClass: $0.errorClass, errorMessage: $0.errorMessage,
                        failedAt: isoDay.string(from: Date(timeIntervalSince1970: $0.failedAt)), worker: $0.worker)
                }
                if json { return try printJSON(rows) }
                if rows.isEmpty { print("no dead letters") }
                for row in rows { print("\(row.id)  \(row.failedAt)  \(row.errorClass): \(row.errorMessage)") }
            }
        }

        struct Show: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "One dead letter; the payload stays encrypted unless --decrypt.")
            @Argument(help: "Dead letter id, as `engram queue dead list` shows it.") var id: String
            @Flag(help: "Decrypt the body with the master key (prints the transcript).") var decrypt = false

            func run() async throws {
                guard let letter = try await QueueCommand.open().deadLetters(limit: 100_000).first(where: { $0.id == id }) else {
                    throw ValidationError("no dead letter \(id)")
                }
                print(
                    "id \(letter.id)\nerror \(letter.errorClass): \(letter.errorMessage)\nworker \(letter.worker)\nfailed \(isoDay.string(from: Date(timeIntervalSince1970: letter.failedAt)))"
                )
                if decrypt, let envelope = try? Envelope.decode(Data(letter.envelope.utf8)) {
                    let body = try envelope.openBody(cipher: try EngramConfiguration.fromEnvironment().keyRing().envelopeCipher)
                    print(String(decoding: body, as: UTF8.self))
                }
            }
        }

        struct Replay: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Return dead letters to the queue with a fresh attempt count (erased callers stay erased).")
            @Argument(help: "Dead letter id to replay (or --all).") var id: String?
            @Flag(help: "Replay every dead letter.") var all = false
            func validate() throws { if (id == nil) == !all { throw ValidationError("give an id or --all") } }
            func run() async throws {
                print("replayed \(try await QueueCommand.open().replayDead(id: all ? nil : id))")
            }
        }

        struct Purge: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Delete every dead letter.")
            func run() async throws { print("purged \(try await QueueCommand.open().purgeDead())") }
        }
    }
}

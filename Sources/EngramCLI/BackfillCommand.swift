import ArgumentParser
import EngramApp
import EngramCore
import EngramQueue
import Foundation

/// `engram backfill`: queue finished ElevenLabs conversations whose webhook never reached Engram.
struct BackfillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backfill",
        abstract: "Queue finished ElevenLabs conversations that Engram has not processed (missed or lost webhooks).",
        discussion: """
            Lists conversations through the ElevenLabs Conversations API (ELEVENLABS_API_KEY, \
            ELEVENLABS_API_BASE_URL) and queues each one with status done, a resolvable caller and \
            no processed event in the store, exactly as its post_call_transcription webhook would \
            have been queued. Re-running it, or the webhook arriving later, queues nothing twice. \
            A running worker does the extraction. Prints ids, times and outcomes only.
            """)

    @Option(help: "Earliest call start: YYYY-MM-DD (UTC midnight), an ISO 8601 time, or Unix seconds.") var since: String
    @Option(help: "Only calls that started before this (exclusive); same formats. Default: now.") var until: String?
    @Option(name: .customLong("agent-id"), help: "Only this agent's conversations (default: every agent the API key can see).") var agentID: String?
    @OptionGroup var tenant: TenantOption
    @Flag(help: "Report what would be queued; queue nothing.") var dryRun = false
    @Flag(help: "One JSON object.") var json = false

    func validate() throws {
        guard let start = CLIDate.parse(since) else { throw ValidationError("--since: expected YYYY-MM-DD, an ISO 8601 time or Unix seconds") }
        if let until {
            guard let end = CLIDate.parse(until) else { throw ValidationError("--until: expected YYYY-MM-DD, an ISO 8601 time or Unix seconds") }
            guard end > start else { throw ValidationError("--until must be after --since") }
        }
    }

    struct Output: Encodable {
        var tenant: String
        var agentID: String?
        var since: String
        var until: String?
        var dryRun: Bool
        var counts: [String: Int]
        var conversations: [BackfillItem]
        enum CodingKeys: String, CodingKey {
            case tenant
            case agentID = "agent_id"
            case since, until
            case dryRun = "dry_run"
            case counts, conversations
        }
    }

    func run() async throws {
        let configuration = try EngramConfiguration.fromEnvironment()
        let client = try configuration.elevenLabsClient()
        let context = try await CLIContext()
        let tenant = try await context.tenant(self.tenant.tenant)
        let backfill = ConversationBackfill(
            client: client, vault: context.vault,
            queue: RedisEventQueue(
                endpoint: configuration.redis, timeout: configuration.redisTimeout, keys: QueueKeys(prefix: configuration.queuePrefix)),
            dedupeTTLSeconds: configuration.dedupeTTLSeconds)
        guard let start = CLIDate.parse(since) else { throw ValidationError("--since: expected YYYY-MM-DD, an ISO 8601 time or Unix seconds") }
        let end = until.flatMap(CLIDate.parse)
        let progress = ProgressLine("reconciling conversations", json: json)
        let items = try await backfill.run(
            tenant: tenant, agentID: agentID, since: start, until: end, dryRun: dryRun, progress: { progress.update(done: $0, total: nil) })
        progress.finish()

        var counts: [String: Int] = [:]
        for outcome in BackfillOutcome.allCases { counts[outcome.rawValue] = 0 }
        for item in items { counts[item.outcome.rawValue, default: 0] += 1 }
        if json {
            try printJSON(
                Output(
                    tenant: tenant.id, agentID: agentID, since: isoDay.string(from: start), until: end.map(isoDay.string), dryRun: dryRun,
                    counts: counts, conversations: items))
        } else {
            printTable(items)
            let summary = BackfillOutcome.allCases.map { "\($0.rawValue) \(counts[$0.rawValue] ?? 0)" }.joined(separator: ", ")
            print((dryRun ? "dry run: " : "") + summary)
        }
        if (counts[BackfillOutcome.failed.rawValue] ?? 0) > 0 { throw ExitCode(1) }
    }

    func printTable(_ items: [BackfillItem]) {
        if items.isEmpty {
            print("no conversations in that range")
            return
        }
        let width = max(15, items.map(\.conversationID.count).max() ?? 0)
        func pad(_ text: String, _ n: Int) -> String { text.count >= n ? text : text + String(repeating: " ", count: n - text.count) }
        print(pad("conversation_id", width) + "  " + pad("started", 20) + "  " + pad("status", 12) + "  outcome")
        for item in items {
            let started = item.startTimeUnixSecs.map { isoDay.string(from: Date(timeIntervalSince1970: TimeInterval($0))) } ?? "-"
            let outcome = item.outcome.rawValue + (item.error.map { " (\($0))" } ?? "")
            print(pad(item.conversationID, width) + "  " + pad(started, 20) + "  " + pad(item.status ?? "-", 12) + "  " + outcome)
        }
    }
}

/// Dates on the command line: `YYYY-MM-DD` (UTC midnight), ISO 8601 with time, or Unix seconds.
enum CLIDate {
    static func parse(_ text: String) -> Date? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if let seconds = Int64(trimmed) {
            return (0...SafeNumber.maxUnixSeconds).contains(seconds) ? Date(timeIntervalSince1970: TimeInterval(seconds)) : nil
        }
        let day = ISO8601DateFormatter()
        day.formatOptions = [.withFullDate]
        if trimmed.count == 10, let date = day.date(from: trimmed) { return date }
        let time = ISO8601DateFormatter()
        if let date = time.date(from: trimmed) { return date }
        time.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return time.date(from: trimmed)
    }
}

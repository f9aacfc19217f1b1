import ArgumentParser
import EngramApp
import EngramCore
import EngramProviders
import Foundation
import Logging

/// `engram reextract`: redo, with the LLM, extractions that fell back to the local extractor.
struct ReextractCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reextract",
        abstract: "Replace memories stored by the local fallback extractor with the configured LLM extractor's.",
        discussion: """
            Engram keeps no transcripts: each affected conversation is fetched again from the \
            ElevenLabs Conversations API (ELEVENLABS_API_KEY), extracted with the OpenAI-compatible \
            extractor (OPENAI_API_KEY, ENGRAM_LLM_*), and its fallback memories are swapped for the \
            new ones in one transaction. If extraction fails again, the old memories stay. Running \
            it twice changes nothing the second time. Prints ids, counts and outcomes only.
            """)

    @OptionGroup var tenant: TenantOption
    @Option(help: "Only this caller: +E.164 phone number, u_ key or ext:<id>.") var user: String?
    @Flag(help: "List the conversations that would be re-extracted; fetch and change nothing.") var dryRun = false
    @Flag(help: "One JSON object.") var json = false

    struct Output: Encodable {
        var tenant: String
        var dryRun: Bool
        var counts: [String: Int]
        var conversations: [ReextractItem]
        enum CodingKeys: String, CodingKey {
            case tenant
            case dryRun = "dry_run"
            case counts, conversations
        }
    }

    func run() async throws {
        let configuration = try EngramConfiguration.fromEnvironment()
        let context = try await CLIContext()
        let tenant = try await context.tenant(self.tenant.tenant)
        let key = try user.map { try context.user($0, tenant: tenant) }

        let extractor: any Extractor
        let client: ElevenLabsClient
        if dryRun {
            // Nothing is fetched or extracted: no key is needed to look.
            extractor = LocalExtractor()
            client = ElevenLabsClient(baseURL: configuration.elevenLabsBaseURL, apiKey: configuration.elevenLabsAPIKey ?? "")
        } else {
            client = try configuration.elevenLabsClient()
            guard configuration.extractor == .openai else {
                throw ValidationError(
                    "reextract needs the LLM extractor: set OPENAI_API_KEY (and ENGRAM_LLM_BASE_URL for another OpenAI-compatible server); ENGRAM_EXTRACTOR is local"
                )
            }
            extractor = try ProviderFactory.extractor(configuration)
        }
        var logger = Logger(label: "engram-reextract") { label in StreamLogHandler.standardError(label: label) }
        logger.logLevel = .warning
        let progress = ProgressLine("re-extracting conversations", json: json)
        let items = try await Reextractor(vault: context.vault, extractor: extractor, client: client)
            .run(tenant: tenant, user: key, dryRun: dryRun, logger: logger, progress: { progress.update(done: $0, total: $1) })
        progress.finish()

        var counts: [String: Int] = [:]
        for outcome in ReextractOutcome.allCases { counts[outcome.rawValue] = 0 }
        for item in items { counts[item.outcome.rawValue, default: 0] += 1 }
        if json {
            try printJSON(Output(tenant: tenant.id, dryRun: dryRun, counts: counts, conversations: items))
        } else if items.isEmpty {
            print("no memories need re-extraction")
        } else {
            for item in items {
                let stored = item.stored.map { ", stored \($0)" } ?? ""
                let error = item.error.map { " (\($0))" } ?? ""
                print("\(item.conversationID ?? "-")  \(item.user)  flagged \(item.flagged)\(stored)  \(item.outcome.rawValue)\(error)")
            }
            let summary = ReextractOutcome.allCases.map { "\($0.rawValue) \(counts[$0.rawValue] ?? 0)" }.joined(separator: ", ")
            print((dryRun ? "dry run: " : "") + summary)
        }
        let failures: Set<ReextractOutcome> = [.extractionFailed, .fetchFailed, .transcriptUnavailable]
        let failed = items.filter { failures.contains($0.outcome) }.count
        if failed > 0 { throw ExitCode(1) }
    }
}

import ArgumentParser
import EngramTools
import Foundation
import Logging

struct EvalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "eval", abstract: "Recall evaluations.", subcommands: [LoCoMo.self])

    struct LoCoMo: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "locomo", abstract: "Recall@k on LoCoMo through the real post-call and search paths (self-contained, offline).")
        @Option(help: "Path of the LoCoMo JSON (e.g. ../shared/eval/locomo-dev.json); read in place, never copied.") var data: String
        @Option(help: "Evaluate only the first N conversations (after --skip).") var conversations: Int?
        @Option(help: "Pass over the first N conversations (e.g. --skip 3 --conversations 2 for a held-out part).") var skip = 0
        @Flag(help: "One JSON object.") var json = false

        func run() async throws {
            var logger = Logger(label: "engram-eval")
            logger.logLevel = .warning
            let line = ProgressLine("evaluating conversations", json: json)
            let report = try await LoCoMoEvaluation(dataURL: URL(fileURLWithPath: data), limitConversations: conversations, skipConversations: skip)
                .run(logger: logger, progress: { line.update(done: $0, total: $1) })
            line.finish()
            if json { return try printJSON(report) }
            print("LoCoMo recall (\(report.questions) questions, \(report.memoriesStored) memories, \(String(format: "%.1f", report.seconds)) s)")
            let budgets = LoCoMoEvaluation.characterBudgets.map { "≤\($0 / 1000)k".padding(toLength: 7, withPad: " ", startingAt: 0) }.joined()
            print("category       @5     @10    @25    \(budgets)questions")
            for name in ["single-hop", "multi-hop", "temporal", "open-domain"] {
                if let r = report.byCategory[name] { print(row(name, r)) }
            }
            print(row("overall", report.overall))
            print("mean characters in the top 10: \(Int(report.meanCharsAt10))")
            print("≤1k/≤2k/≤4k: recall of the answer cut at 1,000/2,000/4,000 characters (shared/eval/README.md)")
            let strict = LoCoMoEvaluation.characterBudgets.map {
                String(format: "≤%dk %.1f", $0 / 1000, report.overall.recallWithinCharsStrict[String($0)] ?? 0)
            }
            print("overall, the walk stopped at the first memory that does not fit: " + strict.joined(separator: "  "))
        }

        func row(_ name: String, _ r: LoCoMoEvaluation.Report.Recall) -> String {
            name.padding(toLength: 14, withPad: " ", startingAt: 0)
                + ([r.recallAt5, r.recallAt10, r.recallAt25] + LoCoMoEvaluation.characterBudgets.map { r.recallWithinChars[String($0)] ?? 0 })
                .map { String(format: "%5.1f  ", $0) }.joined() + "\(r.questions)"
        }
    }
}

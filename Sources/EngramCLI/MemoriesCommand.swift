import ArgumentParser
import EngramApp
import EngramCore
import EngramStore
import Foundation
import Logging

struct MemoriesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "memories", abstract: "Inspect a caller's memories.", subcommands: [List.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a caller's memories, decrypted, for an operator.")
        @Option(help: "Phone number (+E.164), u_ key or ext:<id>.") var user: String
        @OptionGroup var tenant: TenantOption
        @Flag(help: "Include superseded and archived memories.") var history = false
        @Flag(help: "One JSON array.") var json = false

        struct Row: Encodable {
            var id: String
            var content: String
            var sector: String
            var slot: String?
            var salience: Double
            var status: String
            var sensitive: Bool
            var validFrom: String
            var validTo: String?
            var supersededBy: String?
            var sourceTurns: [Int]
            var conversationIDs: [String]
            var extractor: String?
            enum CodingKeys: String, CodingKey {
                case id, content, sector, slot, salience, status, sensitive
                case validFrom = "valid_from"
                case validTo = "valid_to"
                case supersededBy = "superseded_by"
                case sourceTurns = "source_turns"
                case conversationIDs = "conversation_ids"
                case extractor
            }
        }

        func run() async throws {
            let context = try await CLIContext()
            let tenant = try await context.tenant(self.tenant.tenant)
            let key = try context.user(user, tenant: tenant)
            let now = Date()
            let rows = try await context.vault.memories(tenant: tenant.id, user: key, includeHistory: history).map { memory in
                Row(
                    id: memory.id, content: memory.content, sector: memory.sector.rawValue, slot: memory.slot,
                    salience: (Salience.of(memory, at: now) * 1000).rounded() / 1000, status: memory.status.rawValue,
                    sensitive: memory.sensitive, validFrom: isoDay.string(from: memory.validFrom),
                    validTo: memory.validTo.map(isoDay.string), supersededBy: memory.supersededBy, sourceTurns: memory.sourceTurns,
                    conversationIDs: Array(Set(memory.sources.compactMap(\.conversationID))).sorted(),
                    extractor: memory.sources.first?.extractor)
            }
            if json { return try printJSON(rows) }
            if rows.isEmpty {
                print("no memories for this user (\(key.rawValue))")
                return
            }
            print("user \(key.rawValue): \(rows.count) memories")
            var table = TextTable(
                header: ["ID", "SECTOR/SLOT", "SALIENCE", "STATUS", "VALID FROM", "VALID TO", "CONTENT"],
                rows: rows.map { row in
                    [
                        row.id, row.sector + (row.slot.map { "/\($0)" } ?? ""), String(format: "%.3f", row.salience),
                        row.status + (row.sensitive ? " (sensitive)" : ""), row.validFrom, row.validTo ?? "-", row.content,
                    ]
                })
            table.maxCellWidth = 120
            print(table.rendered)
        }
    }
}

struct VariablesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "variables", abstract: "Print the pre-call dynamic variables for a caller (for outbound calls).")
    @Option(help: "Phone number (+E.164), u_ key or ext:<id>.") var user: String
    @OptionGroup var tenant: TenantOption

    func run() async throws {
        let context = try await CLIContext()
        let tenant = try await context.tenant(self.tenant.tenant)
        let key = try context.user(user, tenant: tenant)
        let builder = PrecallContextBuilder(vault: context.vault, characterBudget: context.configuration.precallContextChars)
        let (variables, _) = try await builder.variables(
            tenant: tenant, user: key, includeSensitive: tenant.record.allowSensitivePrecall || context.configuration.precallIncludeSensitive)
        struct Output: Encodable {
            var dynamicVariables: PrecallVariables
            var userID: String
            enum CodingKeys: String, CodingKey {
                case dynamicVariables = "dynamic_variables"
                case userID = "user_id"
            }
        }
        try printJSON(Output(dynamicVariables: variables, userID: key.rawValue))
    }
}

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply database migrations (also done at start), or copy an SQLite store into PostgreSQL.",
        discussion: """
            Without options: applies the migrations of ENGRAM_DATABASE_URL.
            With --from sqlite://PATH --to postgres://...: copies every row into the (empty) PostgreSQL
            database in one transaction and checks the row counts. Content stays sealed and keys stay
            wrapped: run it with the same ENGRAM_MASTER_KEY, then point ENGRAM_DATABASE_URL at PostgreSQL.
            Stop the gateway and workers first, so nothing is written to SQLite during the copy.
            """)

    @Option(help: "The SQLite store to copy from (sqlite://PATH).") var from: String?
    @Option(help: "The PostgreSQL store to copy into (postgres://user:password@host:port/db).") var to: String?

    func validate() throws {
        if (from == nil) != (to == nil) { throw ValidationError("--from and --to go together") }
    }

    func run() async throws {
        let logger = Logger(label: "engram-cli")
        guard let from, let to else {
            let configuration = try EngramConfiguration.fromEnvironment()
            _ = try await StoreFactory.open(configuration, logger: logger)
            print("migrations applied")
            return
        }
        guard case .sqlite(let path) = try DatabaseLocation.parse(from, variable: "--from") else {
            throw ValidationError("--from must be sqlite://PATH")
        }
        guard FileManager.default.fileExists(atPath: path) else { throw ValidationError("--from: no SQLite file at \(path)") }
        guard case .postgres(let url) = try DatabaseLocation.parse(to, variable: "--to") else {
            throw ValidationError("--to must be postgres://user:password@host:port/database")
        }
        let source = try SQLiteMemoryStore(path: path)
        let settings = try PostgresSettings.parse(url, variable: "--to")
        let target = try await PostgresMemoryStore.connect(settings, logger: logger)
        let started = ContinuousClock.now
        // Progress on stderr (the report below goes to stdout): a line per table copied, at most one
        // a second in between, and one before the vector index is built (57 s per 100,000 memories measured).
        FileHandle.standardError.write(
            Data("copying \(path) → \(settings.redacted) in one transaction; about a minute per 100,000 memories\n".utf8))
        let progress = MigrationProgress()
        let copied: Result<StoreCopy.Report, any Error>
        do {
            copied = .success(
                try await StoreCopy.copy(from: source, to: target, logger: logger) { step in
                    if let line = progress.line(for: step) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
                })
        } catch {
            copied = .failure(error)
        }
        await target.close()
        let report = try copied.get()
        print("copied \(path) → \(settings.redacted) in \(ContinuousClock.now - started); row counts match:")
        for table in report.tables { print("  \(table.name.padding(toLength: 18, withPad: " ", startingAt: 0)) \(table.rows)") }
    }
}

import ArgumentParser
import EngramApp
import EngramCore
import EngramStore
import Foundation
import Logging

/// `engram`: the operator CLI. Every subcommand reads `./data/dev.env` when present and needs
/// only the variables it uses.
@main
struct EngramCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "engram",
        abstract: "Operate Engram: memories, queue, ElevenLabs configuration, evaluation.",
        subcommands: [
            MemoriesCommand.self, QueueCommand.self, ElevenLabsCommand.self, VariablesCommand.self, MigrateCommand.self, EvalCommand.self,
            TenantCommand.self, KeysCommand.self, BackupCommand.self, BenchCommand.self, BenchSearchCommand.self, BenchProxyCommand.self,
            BackfillCommand.self, ReextractCommand.self,
        ])

    /// Usage errors (unknown option, failed `validate()`) print usage and exit 64 as ArgumentParser
    /// does; an error thrown while a command runs is one line, `engram: <cause>`, and exit 1.
    static func main() async {
        var command: any ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            exit(withError: error)
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error where error is ExitCode || error is CleanExit || CLIFailure.isParserSignal(error) {
            exit(withError: error)
        } catch {
            FileHandle.standardError.write(Data("engram: \(CLIFailure.describe(error))\n".utf8))
            Foundation.exit(1)
        }
    }
}

/// How a failure of a running command reads on stderr: its cause on one line.
enum CLIFailure {
    /// ArgumentParser's own errors other than `ValidationError`: `--help` and `help` are parsed
    /// into a command whose `run()` throws its internal `CommandError`, which must print help.
    static func isParserSignal(_ error: any Error) -> Bool {
        !(error is ValidationError) && String(reflecting: type(of: error)).hasPrefix("ArgumentParser.")
    }

    static func describe(_ error: any Error) -> String {
        let text: String
        switch error {
        case let error as ValidationError: text = error.message
        case let error as any CustomStringConvertible: text = error.description
        case let error as any LocalizedError: text = error.errorDescription ?? String(describing: error)
        default: text = String(describing: error)
        }
        return text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: "; ")
    }
}

/// Shared option: the tenant a command acts on.
struct TenantOption: ParsableArguments {
    @Option(help: "Tenant id (`engram tenant list` shows them).") var tenant = "default"
}

enum CLIError: Error, CustomStringConvertible {
    case invalidUser
    case unknownTenant(String)
    var description: String {
        switch self {
        case .invalidUser: return "--user must be a u_ key, a +E.164 phone number or ext:<id>"
        case .unknownTenant(let id): return "no tenant named \(id)"
        }
    }
}

/// Opens what a data command needs: configuration, vault, tenant.
struct CLIContext {
    let configuration: EngramConfiguration
    let vault: MemoryVault
    /// The store itself, for the benchmarks only (they time it without the vault); every data
    /// command goes through `vault`.
    let store: any MemoryStore

    init() async throws {
        configuration = try EngramConfiguration.fromEnvironment()
        store = try await StoreFactory.open(configuration, logger: Logger(label: "engram-cli"))
        vault = MemoryVault(
            store: store, keyRing: try configuration.keyRing(), embedder: try ProviderFactory.embedder(configuration),
            termIndexCache: TermIndexCache(maxBytes: configuration.termIndexMaxBytes))
    }

    func tenant(_ id: String) async throws -> TenantContext {
        guard let tenant = try await vault.tenant(id, create: id == "default", consentMode: configuration.consentMode) else {
            throw CLIError.unknownTenant(id)
        }
        return tenant
    }

    func user(_ raw: String, tenant: TenantContext) throws -> UserKey {
        guard let identity = CallerReference.parse(raw) else { throw CLIError.invalidUser }
        return tenant.userKeys.key(for: identity)
    }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

let isoDay: DateFormatter = {
    let f = DateFormatter()
    f.locale = Locale(identifier: "en_US_POSIX")
    f.timeZone = TimeZone(identifier: "UTC")
    f.dateFormat = "yyyy-MM-dd'T'HH:mm:ss'Z'"
    return f
}()

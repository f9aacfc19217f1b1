import ArgumentParser
import EngramApp
import EngramQueue
import EngramStore
import Foundation

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup", abstract: "SQLite online backups: create, verify, restore.", subcommands: [Create.self, Verify.self, Restore.self])

    static func sqlite() throws -> (EngramConfiguration, AppDatabase) {
        let configuration = try EngramConfiguration.fromEnvironment()
        switch configuration.database {
        case .sqlite(let path):
            return (configuration, try AppDatabase(path: path))
        case .postgres(let url):
            let settings = try PostgresSettings.parse(url)
            throw ValidationError(
                """
                engram backup is for the SQLite store. On PostgreSQL, back up with PostgreSQL's own tools:
                a logical dump with pg_dump (use the client of the server's major version), e.g.

                  PGPASSWORD=... pg_dump --format=custom --file=engram-$(date +%Y%m%dT%H%M%S).dump \\
                      --host=\(settings.host) --port=\(settings.port) --username=\(settings.username) \(settings.database)

                restored with `pg_restore --clean --dbname=...`, or continuous archiving with point-in-time
                recovery (base backups + WAL archive, e.g. pgBackRest). Content in a dump stays sealed and keys
                stay wrapped: keep ENGRAM_MASTER_KEY apart from the dumps. Erasures made after a dump are not
                in it: after restoring one, erase those callers again (the audit log lists every user.erase).
                """)
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Copy the live database (online), check it, keep the last N.")
        @Option(help: "Directory (default ENGRAM_BACKUP_DIR).") var to: String?
        @Option(help: "How many backups to keep (default ENGRAM_BACKUP_KEEP).") var keep: Int?
        func run() async throws {
            let (configuration, database) = try BackupCommand.sqlite()
            let url = try SQLiteBackup.create(from: database, to: to ?? configuration.backupDirectory, keep: keep ?? configuration.backupKeep)
            print("backup written and verified: \(url.path)")
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Integrity-check a backup file.")
        @Argument(help: "Path of the backup file.") var file: String
        func run() async throws {
            try SQLiteBackup.verify(file)
            print("ok: \(file)")
        }
    }

    struct Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: """
                Restore a backup into the live database, re-applying every erasure the live database and the retained backups \
                (ENGRAM_BACKUP_DIR) hold; refuses while workers are running unless --force.
                """)
        @Argument(help: "Path of the backup file (`engram backup create` writes them).") var file: String
        @Flag(help: "Restore even though services may be writing.") var force = false
        func run() async throws {
            let (configuration, database) = try BackupCommand.sqlite()
            if !force {
                let queue = RedisEventQueue(
                    endpoint: configuration.redis, timeout: configuration.redisTimeout, keys: QueueKeys(prefix: configuration.queuePrefix))
                guard let alive = try? await queue.liveWorkers() else {
                    throw ValidationError("cannot reach Redis to check that no worker is running; stop the services or use --force")
                }
                if !alive.isEmpty {
                    throw ValidationError("\(alive.count) worker(s) are running; stop the gateway and workers first, or use --force")
                }
            }
            let result = try await SQLiteBackup.restore(file, into: database, backupDirectory: configuration.backupDirectory)
            print("restored \(result.restored) memories; re-applied \(result.tombstonesReapplied) erasures")
        }
    }
}

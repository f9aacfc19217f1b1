import Foundation
import Testing

/// What an on-call engineer sees from the real `engram` executable: failures are one line with
/// their cause and exit 1, usage only for usage errors, tenants and keys listed, warnings where
/// the output would not work.
@Suite("engram CLI: errors, listings and warnings, as an operator sees them", .timeLimit(.minutes(1)))
struct OperatorCLITests {

    func environment(_ env: TestEnvironment) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("ENGRAM_") && $0.key != "OPENAI_API_KEY" }
        environment["ENGRAM_DATABASE_URL"] = "sqlite://" + env.databasePath
        environment["ENGRAM_REDIS_URL"] = "redis://\(env.redis.host):\(env.redis.port)/\(env.redis.database)"
        environment["ENGRAM_QUEUE_PREFIX"] = env.prefix
        environment["ENGRAM_MASTER_KEY"] = env.masterKey.base64
        return environment
    }

    /// A failure while running: exit 1, exactly one stderr line `engram: <cause>`, no usage text.
    func expectRuntimeFailure(_ run: CLIRun, mentioning words: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(run.status == 1, "exit status \(run.status); stderr: \(run.stderr)", sourceLocation: sourceLocation)
        #expect(run.errorLines.count == 1, "one line, got: \(run.stderr)", sourceLocation: sourceLocation)
        #expect(run.stderr.hasPrefix("engram: "), "stderr: \(run.stderr)", sourceLocation: sourceLocation)
        #expect(!run.stderr.contains("USAGE") && !run.stderr.contains("SUBCOMMANDS"), "no usage text: \(run.stderr)", sourceLocation: sourceLocation)
        for word in words { #expect(run.stderr.contains(word), "stderr names \(word): \(run.stderr)", sourceLocation: sourceLocation) }
    }

    @Test("errors raised while a command runs are one line with the cause and exit 1; usage errors keep usage and exit 64")
    func runtimeErrorsAreOneLine() async throws {
        let env = try TestEnvironment()
        defer { try? FileManager.default.removeItem(at: env.directory) }
        let base = environment(env)

        let created = try await runEngram(["tenant", "create", "acme"], environment: base, directory: env.directory)
        #expect(created.status == 0, "stderr: \(created.stderr)")
        expectRuntimeFailure(
            try await runEngram(["tenant", "create", "acme"], environment: base, directory: env.directory), mentioning: ["acme exists already"])
        expectRuntimeFailure(
            try await runEngram(["tenant", "set-webhook-secret", "acme"], environment: base, directory: env.directory, input: "short\n"),
            mentioning: ["16 to 256"])
        expectRuntimeFailure(
            try await runEngram(["tenant", "show", "nobody"], environment: base, directory: env.directory), mentioning: ["no tenant named nobody"])
        expectRuntimeFailure(
            try await runEngram(["keys", "revoke", "key_missing", "--tenant", "acme"], environment: base, directory: env.directory),
            mentioning: ["key_missing"])
        var noMaster = base
        noMaster["ENGRAM_MASTER_KEY"] = "not-base64"
        expectRuntimeFailure(
            try await runEngram(["tenant", "list"], environment: noMaster, directory: env.directory), mentioning: ["ENGRAM_MASTER_KEY"])

        // Usage errors: a wrong choice names the choices; usage and exit 64 as before.
        let wrongChoice = try await runEngram(["tenant", "create", "beta", "--consent", "sometimes"], environment: base, directory: env.directory)
        #expect(wrongChoice.status == 64, "stderr: \(wrongChoice.stderr)")
        #expect(wrongChoice.stderr.contains("implicit") && wrongChoice.stderr.contains("explicit"), "stderr: \(wrongChoice.stderr)")
        let help = try await runEngram(["keys", "create", "--help"], environment: base, directory: env.directory)
        #expect(help.status == 0)
        #expect(help.stdout.contains("tool") && help.stdout.contains("admin"), "help lists the scopes: \(help.stdout)")
        #expect(try await runEngram(["help", "tenant"], environment: base, directory: env.directory).status == 0, "help is not a failure")
        let unknown = try await runEngram(["tenant", "frobnicate"], environment: base, directory: env.directory)
        #expect(unknown.status == 64)
    }

    @Test("with Redis down, the error names the address and ENGRAM_REDIS_URL, never the password")
    func redisDownNamesTheAddress() async throws {
        let env = try TestEnvironment()
        defer { try? FileManager.default.removeItem(at: env.directory) }
        let port = try freePort()  // nothing listens there
        var down = environment(env)
        down["ENGRAM_REDIS_URL"] = "redis://opsuser:hunter2-secret@127.0.0.1:\(port)/0"
        for arguments in [["queue", "stats"], ["queue", "stats", "--json"], ["queue", "dead", "list"]] {
            let run = try await runEngram(arguments, environment: down, directory: env.directory)
            expectRuntimeFailure(run, mentioning: ["127.0.0.1:\(port)", "ENGRAM_REDIS_URL"])
            #expect(!run.stderr.contains("hunter2"), "the password never shows: \(run.stderr)")
        }
        var tls = environment(env)
        tls["ENGRAM_REDIS_URL"] = "rediss://127.0.0.1:\(port)"
        expectRuntimeFailure(
            try await runEngram(["queue", "stats"], environment: tls, directory: env.directory), mentioning: ["ENGRAM_REDIS_URL", "stunnel"])
    }

    @Test("tenant list and show, with --json; keys list shows stored keys, the environment's keys and says when there are none")
    func tenantsAndKeys() async throws {
        let env = try TestEnvironment()
        defer { try? FileManager.default.removeItem(at: env.directory) }
        var base = environment(env)

        let empty = try await runEngram(["keys", "list"], environment: base, directory: env.directory)
        #expect(empty.status == 0, "stderr: \(empty.stderr)")
        #expect(empty.stdout.contains("no keys"), "an empty list says so: \(empty.stdout)")

        base["ENGRAM_API_KEY"] = "ek_env_0123456789abcdef"
        let withEnv = try await runEngram(["keys", "list"], environment: base, directory: env.directory)
        #expect(withEnv.stdout.contains("ENGRAM_API_KEY"), "the environment's key is listed: \(withEnv.stdout)")
        #expect(!withEnv.stdout.contains("ek_env_0123456789abcdef"), "never the key itself")

        let created = try await runEngram(["tenant", "create", "acme", "--consent", "explicit"], environment: base, directory: env.directory)
        #expect(created.status == 0, "stderr: \(created.stderr)")
        let issued = try #require(try JSONSerialization.jsonObject(with: Data(created.stdout.utf8)) as? [String: Any])
        let apiKey = try #require(issued["api_key"] as? String)

        let list = try await runEngram(["tenant", "list", "--json"], environment: base, directory: env.directory)
        #expect(list.status == 0, "stderr: \(list.stderr)")
        let tenants = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
        let acme = try #require(tenants.first { $0["id"] as? String == "acme" })
        #expect(acme["consent_mode"] as? String == "explicit")
        #expect((acme["active_keys"] as? [Any])?.count == 2)
        #expect(ISO8601DateFormatter().date(from: acme["created_at"] as? String ?? "") != nil)
        #expect(!list.stdout.contains(apiKey))

        let table = try await runEngram(["tenant", "list"], environment: base, directory: env.directory)
        #expect(table.stdout.hasPrefix("TENANT"), "a table with a header: \(table.stdout)")
        #expect(table.stdout.contains("acme"))

        let show = try await runEngram(["tenant", "show", "acme", "--json"], environment: base, directory: env.directory)
        let shown = try #require(try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any])
        #expect(shown["webhook_secret"] as? String == "none")
        _ = try await runEngram(
            ["tenant", "set-webhook-secret", "acme"], environment: base, directory: env.directory, input: "wsec_0123456789abcdef\n")
        let after = try await runEngram(["tenant", "show", "acme"], environment: base, directory: env.directory)
        #expect(after.stdout.contains("webhook secret      set"), "stdout: \(after.stdout)")
        #expect(!after.stdout.contains("wsec_0123456789abcdef"))

        let keys = try await runEngram(["keys", "list", "--tenant", "acme", "--json"], environment: base, directory: env.directory)
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(keys.stdout.utf8)) as? [[String: Any]])
        #expect(Set(rows.compactMap { $0["scope"] as? String }) == ["tool", "admin"])
        #expect(!keys.stdout.contains(apiKey))
    }

    @Test("elevenlabs config warns on stderr when ENGRAM_PUBLIC_BASE_URL is unset, loopback or plain http; silent for a public https URL")
    func elevenLabsConfigWarnings() async throws {
        let env = try TestEnvironment()
        defer { try? FileManager.default.removeItem(at: env.directory) }
        var base = environment(env)

        let unset = try await runEngram(["elevenlabs", "config"], environment: base, directory: env.directory)
        #expect(unset.status == 0)
        #expect(unset.stderr.contains("ENGRAM_PUBLIC_BASE_URL is not set"), "stderr: \(unset.stderr)")
        #expect((try? JSONSerialization.jsonObject(with: Data(unset.stdout.utf8))) != nil, "stdout stays one JSON document")

        base["ENGRAM_PUBLIC_BASE_URL"] = "http://localhost:8080"
        let loopback = try await runEngram(["elevenlabs", "config"], environment: base, directory: env.directory)
        #expect(loopback.stderr.contains("loopback"), "stderr: \(loopback.stderr)")
        #expect(loopback.stderr.contains("not https"), "stderr: \(loopback.stderr)")

        let plain = try await runEngram(
            ["elevenlabs", "config", "--base-url", "http://engram.example.com"], environment: base, directory: env.directory)
        #expect(plain.stderr.contains("not https") && !plain.stderr.contains("loopback"), "stderr: \(plain.stderr)")

        base["ENGRAM_PUBLIC_BASE_URL"] = "https://engram.example.com/"
        // tenant create prints a post-call URL from the same base: the same warnings.
        var unsetBase = base
        unsetBase["ENGRAM_PUBLIC_BASE_URL"] = nil
        let created = try await runEngram(["tenant", "create", "warned"], environment: unsetBase, directory: env.directory)
        #expect(created.status == 0)
        #expect(created.stderr.contains("ENGRAM_PUBLIC_BASE_URL is not set"), "stderr: \(created.stderr)")
        #expect((try? JSONSerialization.jsonObject(with: Data(created.stdout.utf8))) != nil, "stdout stays one JSON document")

        let good = try await runEngram(["elevenlabs", "config"], environment: base, directory: env.directory)
        #expect(good.status == 0)
        #expect(good.stderr.isEmpty, "no warning: \(good.stderr)")
        #expect(good.stdout.contains("https://engram.example.com/v1/tools/search-memory"))
    }
}

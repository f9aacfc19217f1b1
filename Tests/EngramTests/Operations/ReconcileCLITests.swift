import Foundation
import Testing

/// The `engram backfill` and `engram reextract` executables: what an operator sees.
@Suite("engram backfill and reextract on the command line", .timeLimit(.minutes(3)))
struct ReconcileCLITests {

    func environment(_ env: TestEnvironment, _ server: FakeElevenLabsServer, apiKey: String?) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter {
            !$0.key.hasPrefix("ENGRAM_") && !$0.key.hasPrefix("ELEVENLABS_") && $0.key != "OPENAI_API_KEY"
        }
        environment["ENGRAM_DATABASE_URL"] = "sqlite://" + env.databasePath
        environment["ENGRAM_REDIS_URL"] = "redis://\(env.redis.host):\(env.redis.port)/\(env.redis.database)"
        environment["ENGRAM_QUEUE_PREFIX"] = env.prefix
        environment["ENGRAM_MASTER_KEY"] = env.masterKey.base64
        environment["ELEVENLABS_API_BASE_URL"] = server.baseURL
        environment["ELEVENLABS_API_KEY"] = apiKey
        return environment
    }

    @Test("engram backfill queues missed calls and prints ids and outcomes only; a missing or refused key fails naming ELEVENLABS_API_KEY")
    func backfillCommand() async throws {
        let env = try TestEnvironment()
        do {
            try await withFakeElevenLabs { server in
                let start: Int64 = 1_763_683_200  // 2025-11-21
                server.add(try .fixture(id: "conv_cli_a", start: start + 60, phone: "+14155550161"))
                server.add(try .fixture(id: "conv_cli_b", start: start + 120, phone: "+14155550162"))
                server.add(try .fixture(id: "conv_cli_live", start: start + 180, status: "in-progress", phone: "+14155550163"))
                let ok = environment(env, server, apiKey: server.apiKey)
                let arguments = ["backfill", "--since", "2025-11-21", "--until", "2025-11-22", "--agent-id", "agent_test"]

                let first = try await runEngram(arguments + ["--json"], environment: ok, directory: env.directory)
                #expect(first.status == 0, "stderr: \(first.stderr)")
                let report = try #require(try JSONSerialization.jsonObject(with: Data(first.stdout.utf8)) as? [String: Any])
                let counts = try #require(report["counts"] as? [String: Int])
                #expect(counts["enqueued"] == 2)
                #expect(counts["skipped_not_done"] == 1)
                #expect(report["dry_run"] as? Bool == false)
                #expect(try await env.queue().stats().pending == 2)

                let second = try await runEngram(arguments, environment: ok, directory: env.directory)
                #expect(second.status == 0, "stderr: \(second.stderr)")
                #expect(second.stdout.contains("conv_cli_a"))
                #expect(second.stdout.contains("already_queued"))
                #expect(try await env.queue().stats().pending == 2)

                for run in [first, second] {
                    for secret in ["+1415555016", "4155550161", "Friday", "Dana"] {
                        #expect(!run.stdout.contains(secret) && !run.stderr.contains(secret), "output leaks \(secret)")
                    }
                }

                let refused = try await runEngram(arguments, environment: environment(env, server, apiKey: "xi_wrong"), directory: env.directory)
                #expect(refused.status != 0)
                #expect(refused.stderr.contains("ELEVENLABS_API_KEY"))
                #expect(refused.stderr.contains("401"))

                let missing = try await runEngram(arguments, environment: environment(env, server, apiKey: nil), directory: env.directory)
                #expect(missing.status != 0)
                #expect(missing.stderr.contains("ELEVENLABS_API_KEY"))

                let badDate = try await runEngram(["backfill", "--since", "last tuesday"], environment: ok, directory: env.directory)
                #expect(badDate.status != 0)
                #expect(badDate.stderr.contains("--since"))
            }
        } catch {
            await env.cleanUp()
            throw error
        }
        await env.cleanUp()
    }

    @Test("engram reextract without an LLM refuses with a message naming OPENAI_API_KEY; a dry run with nothing marked says so")
    func reextractCommand() async throws {
        let env = try TestEnvironment()
        do {
            try await withFakeElevenLabs { server in
                let ok = environment(env, server, apiKey: server.apiKey)
                let noLLM = try await runEngram(["reextract"], environment: ok, directory: env.directory)
                #expect(noLLM.status != 0)
                #expect(noLLM.stderr.contains("OPENAI_API_KEY"))

                let dry = try await runEngram(["reextract", "--dry-run"], environment: ok, directory: env.directory)
                #expect(dry.status == 0, "stderr: \(dry.stderr)")
                #expect(dry.stdout.contains("no memories need re-extraction"))
                #expect(server.requests.isEmpty)
            }
        } catch {
            await env.cleanUp()
            throw error
        }
        await env.cleanUp()
    }
}

import ArgumentParser
import EngramApp
import EngramCore
import EngramProviders
import EngramStore
import EngramTools
import Foundation
import Histogram

/// `engram bench-search`: the search path at scale, per backend, without HTTP. Seeds the
/// configured store (the same deterministic data as `engram bench`), then times
/// `MemoryVault.search` (what the search_memory tool runs: query embedding, keyword postings,
/// vectors, ranking, decryption) for random callers, sequentially, into HDR histograms. On
/// PostgreSQL it also times the vector part alone both ways pgvector can do it: exact per user
/// (B-tree on the user, every vector measured) and the HNSW index with iterative scans.
struct BenchSearchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-search",
        abstract: "Search latency at scale on the configured store (no HTTP): seed, then p50/p95/p99 per caller kind.")

    @Option(help: "Regular callers to seed.") var callers = 1_000
    @Option(help: "Memories per regular caller.") var memories = 100
    @Option(help: "Memories of the one heavy caller.") var heavy = 20_000
    @Option(help: "Searches per caller kind.") var queries = 500
    @Option(help: "Seed of the generated data and of the queries.") var seed: UInt64 = 42
    @Flag(help: "Do not seed (use what the store holds).") var skipSeed = false
    @Flag(help: "On PostgreSQL, skip the HNSW timing (e.g. when the index was dropped for a faster seed).") var noHnsw = false

    func run() async throws {
        let context = try await CLIContext()
        let tenant = try await context.tenant("default")
        let profile = BenchSeeder.Profile(callers: callers, memoriesPerCaller: memories, heavyMemories: heavy, seed: seed)
        let seeder = BenchSeeder(vault: context.vault, tenant: tenant, profile: profile)
        let backend = if case .postgres = context.configuration.database { "postgresql" } else { "sqlite" }
        if !skipSeed, try await !seeder.isSeeded() {
            note("seeding \(profile.totalMemories) memories into \(backend)...")
            let report = try await seeder.seed { note($0) }
            note("seeded \(report.memoriesWritten) memories in \(String(format: "%.0f", report.seconds)) s")
        }
        print(
            "backend \(backend), \(profile.totalMemories) memories (\(callers) callers × \(memories) + one with \(heavy)), \(queries) searches per row, sequential"
        )
        print("path                          p50 ms   p95 ms   p99 ms   max ms")
        for kind in ["regular", "heavy"] {
            var rng = SplitMix64.derived(seed, kind == "heavy" ? 2 : 1)
            var histogram = latencyHistogram()
            for _ in 0..<queries {
                let user = kind == "heavy" ? seeder.heavyUser : seeder.user(caller: rng.below(callers))
                let query = BenchVocabulary.query(&rng)
                let started = ContinuousClock.now
                _ = try await context.vault.search(tenant: tenant.id, user: user, query: query, limit: 5, includeSensitive: false)
                histogram.record((ContinuousClock.now - started).microseconds)
            }
            print(row("vault search, \(kind) caller", histogram))
        }
        // What the search_memory tool now runs: the search read wide, then packed into its answer.
        for kind in ["regular", "heavy"] {
            var rng = SplitMix64.derived(seed, kind == "heavy" ? 2 : 1)
            var histogram = latencyHistogram()
            for _ in 0..<queries {
                let user = kind == "heavy" ? seeder.heavyUser : seeder.user(caller: rng.below(callers))
                let query = BenchVocabulary.query(&rng)
                let started = ContinuousClock.now
                let hits = try await context.vault.search(
                    tenant: tenant.id, user: user, query: query, limit: AnswerPacker.searchCandidates, includeSensitive: false)
                _ = AnswerPacker.pack(hits.map(\.memory), budget: context.configuration.searchAnswerChars)
                histogram.record((ContinuousClock.now - started).microseconds)
            }
            print(row("tool answer, \(kind) caller", histogram))
        }
        guard let postgres = context.store as? PostgresMemoryStore else { return }
        // The tenant's own embedder, as the vault wrote the vectors: the keyed local embedder
        // stores them under another id (`local-keyed-384-v2`) with other buckets, so the unkeyed
        // one matched no row and these rows timed empty searches (0 of 25 rows).
        let embedder = try await context.vault.embedder(forTenant: tenant.id)
        for exact in noHnsw ? [true] : [true, false] {
            for kind in ["regular", "heavy"] {
                var rng = SplitMix64.derived(seed, kind == "heavy" ? 4 : 3)
                var histogram = latencyHistogram()
                var returned = 0
                let runs = exact ? queries : min(queries, 100)
                for _ in 0..<runs {
                    let user = kind == "heavy" ? seeder.heavyUser : seeder.user(caller: rng.below(callers))
                    let vector = try await embedder.embed([BenchVocabulary.query(&rng)]).first ?? []
                    let started = ContinuousClock.now
                    let found = try await postgres.nearest(
                        tenant: tenant.id, user: user, embedder: embedder.id, query: vector, limit: 25, exact: exact
                    ).count
                    histogram.record((ContinuousClock.now - started).microseconds)
                    // Exact search sees every vector of the caller: fewer rows than the caller
                    // holds (up to 25) means the query missed the stored vectors, and the timing
                    // is of an empty search, which must not pass for a figure.
                    if exact, found < min(25, kind == "heavy" ? heavy : memories) {
                        throw ValidationError(
                            "pgvector exact search returned \(found) of 25 rows for a \(kind) caller: the query does not match the stored vectors (embedder \(embedder.id))"
                        )
                    }
                    returned += found
                }
                print(
                    row("pgvector \(exact ? "exact" : "hnsw "), \(kind) caller", histogram)
                        + String(format: "   (%d searches, %.1f of 25 rows returned on average)", runs, Double(returned) / Double(runs)))
            }
        }
    }

    func row(_ label: String, _ histogram: Histogram<UInt64>) -> String {
        func ms(_ p: Double) -> String { String(format: "%8.2f", Double(histogram.valueAtPercentile(p)) / 1000) }
        return label.padding(toLength: 28, withPad: " ", startingAt: 0) + ms(50) + " " + ms(95) + " " + ms(99) + " "
            + String(format: "%8.2f", Double(histogram.max) / 1000)
    }
}

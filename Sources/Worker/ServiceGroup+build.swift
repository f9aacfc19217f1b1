import EngramApp
import EngramCore
import EngramProviders
import EngramQueue
import Foundation
import Logging
import ServiceLifecycle

/// The worker's parts, built from configuration; tests drive `processor` directly.
struct WorkerRuntime {
    let processor: EventProcessor
    let queue: any EventQueue
    let vault: MemoryVault
    let services: [any Service]
}

/// Services in dependency order: the store's connection pool first (closed last, after every
/// user of the store has stopped), the heartbeat, then the processor, then the periodic jobs.
func buildWorker(configuration: EngramConfiguration, clock: WallClock = .system, extractor: (any Extractor)? = nil, logger: Logger) async throws
    -> WorkerRuntime
{
    let keyRing = try configuration.keyRing()
    let store = try await StoreFactory.open(configuration, logger: logger)
    let vault = MemoryVault(store: store, keyRing: keyRing, embedder: try ProviderFactory.embedder(configuration), clock: clock)
    var ingestor = EventIngestor(
        vault: vault, extractor: try extractor ?? ProviderFactory.extractor(configuration), policy: configuration.llmFailurePolicy,
        maxAttempts: configuration.maxAttempts, envelopeCipher: keyRing.envelopeCipher, defaultConsentMode: configuration.consentMode)
    ingestor.previousEnvelopeCiphers = Array(keyRing.envelopeCiphers.dropFirst())
    ingestor.budget = ExtractionBudget(maxMemories: configuration.maxMemoriesPerEvent, maxTurns: configuration.maxTurnsPerEvent)
    let queue = RedisEventQueue(
        endpoint: configuration.redis, timeout: configuration.redisTimeout, keys: QueueKeys(prefix: configuration.queuePrefix))
    var processorLogger = logger
    processorLogger[metadataKey: "worker"] = "\(configuration.workerID)"
    let processor = EventProcessor(
        queue: queue, ingestor: ingestor, worker: configuration.workerID, maxAttempts: configuration.maxAttempts,
        retryBase: configuration.retryBase, retryMax: configuration.retryMax, logger: processorLogger, batchLimit: configuration.workerBatch,
        lanes: configuration.workerConcurrency)
    let services: [any Service] =
        StoreFactory.services(for: store) + [
            Heartbeat(queue: queue, worker: configuration.workerID, ttl: configuration.heartbeatTTL, logger: logger),
            processor,
            Reaper.job(queue: queue, interval: configuration.reaperInterval, maxAttempts: configuration.maxAttempts, logger: logger),
            RetryScheduler.job(queue: queue, interval: .milliseconds(500), logger: logger),
            Sweeper.job(vault: vault, clock: clock, interval: configuration.sweepInterval, logger: logger),
            MetricsServer.sampler(queue: queue, vault: vault, logger: logger),
            erasureJob(vault: vault, queue: queue, configuration: configuration, logger: logger),
        ] + backupJobs(vault: vault, configuration: configuration, logger: logger)
    return WorkerRuntime(processor: processor, queue: queue, vault: vault, services: services)
}

/// The scheduled SQLite backup (interval 0 turns it off).
func backupJobs(vault: MemoryVault, configuration: EngramConfiguration, logger: Logger) -> [any Service] {
    guard vault.isSQLite, configuration.backupInterval > .zero else { return [] }
    return [
        PeriodicJob(name: "backup", interval: configuration.backupInterval, logger: logger) {
            guard let url = try vault.backup(to: configuration.backupDirectory, keep: configuration.backupKeep) else { return }
            logger.info("backup written and verified", metadata: ["file": "\(url.lastPathComponent)"])
        }
    ]
}

/// Carries erasures to the queue, Redis' files and the SQLite backups; expires dead letters.
func erasureJob(vault: MemoryVault, queue: RedisEventQueue, configuration: EngramConfiguration, logger: Logger) -> PeriodicJob {
    let purge = ErasurePurge(
        vault: vault, queue: queue, backupDirectory: vault.isSQLite ? configuration.backupDirectory : nil,
        deadLetterRetention: Double(configuration.deadLetterRetentionDays) * 86_400)
    return PeriodicJob(name: "erasure-purge", interval: configuration.erasurePurgeInterval, logger: logger) {
        let report = try await purge.run()
        if report.lastRewriteFailed {
            logger.warning("redis' last AOF rewrite or snapshot failed; asked again, as old copies stay in its files until one succeeds")
        }
        if let refused = report.persistence?.refused, !refused.isEmpty {
            logger.warning(
                "redis refused to rewrite its files; erased callers' old events stay in them until it does", metadata: ["commands": "\(refused)"])
        }
        if report.queue.total + report.untaggedRemoved + report.backups.erasures + report.deadLettersExpired > 0 {
            logger.info(
                "erasures propagated",
                metadata: [
                    "queued_events_removed": "\(report.queue.total + report.untaggedRemoved)", "backups_scrubbed": "\(report.backups.scrubbed)",
                    "dead_letters_expired": "\(report.deadLettersExpired)",
                ])
        }
    }
}

/// The production service list: the runtime's services and the metrics endpoint.
func workerServices(_ runtime: WorkerRuntime, configuration: EngramConfiguration, logger: Logger) -> [any Service] {
    runtime.services + [MetricsServer.application(host: configuration.metricsHost, port: configuration.metricsPort, logger: logger)]
}

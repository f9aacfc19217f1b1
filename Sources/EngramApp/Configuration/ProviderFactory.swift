import EngramCore
import EngramProviders
import EngramStore
import Logging
import ServiceLifecycle

/// Picks the extractor, embedder and store that the configuration names.
public enum ProviderFactory {
    public static func client(_ configuration: EngramConfiguration, breakerName: String) throws -> OpenAIClient {
        OpenAIClient(
            baseURL: configuration.llmBaseURL, apiKey: try configuration.require(\.openAIKey, "OPENAI_API_KEY"),
            timeout: configuration.llmTimeout, breaker: CircuitBreaker(name: breakerName))
    }

    public static func extractor(_ configuration: EngramConfiguration) throws -> any Extractor {
        switch configuration.extractor {
        case .local: return LocalExtractor()
        case .openai: return OpenAIExtractor(client: try client(configuration, breakerName: "llm"), model: configuration.llmModel)
        }
    }

    public static func embedder(_ configuration: EngramConfiguration) throws -> any Embedder {
        switch configuration.embedder {
        case .local: return LocalEmbedder()
        case .openai:
            return OpenAIEmbedder(
                client: try client(configuration, breakerName: "embedding"), model: configuration.embeddingModel,
                dimension: configuration.embeddingDimension)
        }
    }
}

/// Opens the configured store backend and applies its migrations.
public enum StoreFactory {
    /// `callTimeout` bounds every call of the store (see `StoreDeadline`).
    public static func open(
        _ location: DatabaseLocation, embeddingDimension: Int? = nil, callTimeout: Duration = StoreDeadline.defaultTimeout,
        sqliteMapBytes: Int = AppDatabase.defaultMapBytes, logger: Logger
    ) async throws -> any MemoryStore {
        switch location {
        case .sqlite(let path):
            // Opening migrates and fsyncs synchronously: off the concurrency pool (OwnThread.swift).
            return try await onOwnThread { try SQLiteMemoryStore(path: path, mapBytes: sqliteMapBytes, callTimeout: callTimeout, logger: logger) }
        case .postgres(let url):
            return try await PostgresMemoryStore.connect(
                try PostgresSettings.parse(url), embeddingDimension: embeddingDimension, callTimeout: callTimeout, logger: logger)
        }
    }

    public static func open(_ configuration: EngramConfiguration, logger: Logger) async throws -> any MemoryStore {
        try await open(
            configuration.database,
            embeddingDimension: configuration.embedder == .openai ? configuration.embeddingDimension : LocalEmbedder().dimension,
            callTimeout: configuration.storeTimeout, sqliteMapBytes: configuration.sqliteMapBytes, logger: logger)
    }

    /// The store as a service of a `ServiceGroup` when it has a lifetime (PostgreSQL's pool): list it
    /// before the services that use the store, so it closes after them at graceful shutdown.
    public static func services(for store: any MemoryStore) -> [any Service] {
        if let postgres = store as? PostgresMemoryStore { return [postgres] }
        return [StoreLifetime(store: store)]
    }

    /// Closes the store's connections, if it has any (for commands and tests that opened it).
    public static func close(_ store: any MemoryStore) async {
        await store.close()
    }
}

/// Holds a store open until graceful shutdown, then closes it. Listed before the services that
/// use the store, so the `ServiceGroup` stops it after them (PostgreSQL's store is such a service
/// itself, as it also runs its pool).
struct StoreLifetime: Service {
    let store: any MemoryStore

    func run() async throws {
        // Cancelled rather than shut down gracefully: close all the same.
        try? await gracefulShutdown()
        await store.close()
    }
}

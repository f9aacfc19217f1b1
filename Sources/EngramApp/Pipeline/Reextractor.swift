import EngramCore
import EngramProviders
import EngramStore
import Foundation
import Logging

/// What `engram reextract` did with one conversation's fallback memories.
public enum ReextractOutcome: String, Sendable, Codable, CaseIterable {
    /// The fallback memories were replaced by the extractor's.
    case replaced
    /// Dry run: would have been re-extracted.
    case wouldReextract = "would_reextract"
    /// The re-extraction of this conversation was already recorded; nothing changed.
    case alreadyDone = "already_done"
    /// The extractor failed again; the fallback memories are left as they are.
    case extractionFailed = "extraction_failed"
    /// The conversation could not be fetched from ElevenLabs; memories left as they are.
    case fetchFailed = "fetch_failed"
    /// ElevenLabs returned no transcript (deleted, or PII removed); memories left as they are.
    case transcriptUnavailable = "transcript_unavailable"
    /// The memories name no conversation, so there is nothing to fetch.
    case noConversation = "no_conversation"
    /// The caller withdrew consent (or the tenant's mode is `off`): the transcript is not sent
    /// to the LLM again; the memories stay as they are until erased.
    case skippedNoConsent = "skipped_no_consent"
}

/// One conversation of a reextract run: ids and counts only, never content.
public struct ReextractItem: Sendable, Codable, Equatable {
    public var conversationID: String?
    /// The pseudonymous user key.
    public var user: String
    /// Fallback memories found for this conversation.
    public var flagged: Int
    /// Memories written by the new extraction (inserted; others reinforced existing ones).
    public var stored: Int?
    public var outcome: ReextractOutcome
    public var error: String?

    enum CodingKeys: String, CodingKey {
        case conversationID = "conversation_id"
        case user = "user_id"
        case flagged, stored, outcome, error
    }
}

/// Redoes extractions that fell back to the local extractor. Engram keeps no transcripts, so
/// each conversation is fetched again from ElevenLabs, extracted with the configured extractor,
/// run through the normal write (embed, conflict rules, seal) and swapped for its fallback
/// memories in one store transaction, under the idempotency key `reextract:<conversation id>`.
public struct Reextractor: Sendable {
    public let vault: MemoryVault
    public let extractor: any Extractor
    public let client: ElevenLabsClient

    public init(vault: MemoryVault, extractor: any Extractor, client: ElevenLabsClient) {
        self.vault = vault
        self.extractor = extractor
        self.client = client
    }

    public static let eventType = "reextract"

    public static func idempotencyKey(conversationID: String) -> String { "reextract:\(conversationID)" }

    /// Re-extracts the tenant's (or one user's) fallback memories, conversation by conversation.
    /// A refused API key stops the run; any other failure is reported and the memories of that
    /// conversation are left alone.
    /// `progress`: conversations done and their total, after each one.
    public func run(
        tenant: TenantContext, user: UserKey?, dryRun: Bool, logger: Logger, progress: (@Sendable (_ done: Int, _ total: Int) -> Void)? = nil
    ) async throws -> [ReextractItem] {
        let rows = try await vault.store.memoriesNeedingReextraction(tenant: tenant.id, user: user)
        var items: [ReextractItem] = []
        let groups = Self.groups(rows)
        defer { progress?(items.count, groups.count) }
        for group in groups {
            progress?(items.count, groups.count)
            var logger = logger
            logger[metadataKey: "tenant"] = "\(tenant.id)"
            logger[metadataKey: "conversation_id"] = "\(group.conversationID ?? "-")"
            var item = ReextractItem(
                conversationID: group.conversationID, user: group.user.rawValue, flagged: group.rows.count, outcome: .wouldReextract)
            guard let conversationID = group.conversationID else {
                item.outcome = .noConversation
                items.append(item)
                continue
            }
            if !dryRun {
                item = try await reextract(group, conversationID: conversationID, tenant: tenant, item: item, logger: logger)
            }
            items.append(item)
        }
        return items
    }

    private func reextract(_ group: Group, conversationID: String, tenant: TenantContext, item: ReextractItem, logger: Logger) async throws
        -> ReextractItem
    {
        var item = item
        let consent = try await vault.store.user(tenant: tenant.id, user: group.user)?.consent
        if tenant.record.consentMode == .off || consent == false {
            item.outcome = .skippedNoConsent
            return item
        }
        let details: Data
        do {
            details = try await client.conversation(id: conversationID)
        } catch let error as ElevenLabsAPIError {
            if case .unauthorized = error { throw error }
            item.outcome = .fetchFailed
            item.error = error.description
            logger.warning("conversation could not be fetched for re-extraction", metadata: ["error_class": "\(type(of: error))"])
            return item
        }
        guard let data = try? JSONDecoder().decode(PostCallData.self, from: details) else {
            item.outcome = .transcriptUnavailable
            return item
        }
        let firstSeen = group.rows.map(\.validFrom).min() ?? vault.clock.now()
        let conversation = Conversation(data, fallbackStart: firstSeen)
        guard !conversation.turns.isEmpty else {
            item.outcome = .transcriptUnavailable
            return item
        }
        let extraction: Extraction
        do {
            extraction = try await extractor.extract(conversation)
        } catch {
            item.outcome = .extractionFailed
            // Extraction errors carry a status or class, never a response body.
            item.error = (error as? ExtractionError)?.description ?? String(describing: type(of: error))
            logger.warning("re-extraction failed; fallback memories kept", metadata: ["error_class": "\(type(of: error))"])
            return item
        }
        let ids = group.rows.map(\.id)
        // Read before the batch is prepared: an erasure after this refuses the write (StoreError.erased).
        let erasedAt = try await vault.store.tombstone(tenant: tenant.id, user: group.user)
        var batch = try await vault.prepareWrite(
            tenant: tenant.id, user: group.user, extraction: extraction, conversationID: conversationID, callAt: conversation.startedAt,
            idempotencyKey: Self.idempotencyKey(conversationID: conversationID), eventID: UUIDv7.make(), eventType: Self.eventType,
            replacing: Set(ids))
        batch.erasedAt = erasedAt
        if try await vault.store.replaceExtraction(batch, replacing: ids) {
            item.outcome = .replaced
            item.stored = batch.inserts.count
            logger.info(
                "fallback memories re-extracted", metadata: ["outcome": "replaced", "removed": "\(ids.count)", "stored": "\(batch.inserts.count)"])
        } else {
            item.outcome = .alreadyDone
        }
        return item
    }

    struct Group {
        var user: UserKey
        var conversationID: String?
        var rows: [MemoryRow]
    }

    /// Fallback memories by (user, conversation), in the order the store lists them. A memory's
    /// conversation is the one its fallback source names.
    static func groups(_ rows: [MemoryRow]) -> [Group] {
        var groups: [Group] = []
        var index: [String: Int] = [:]
        for row in rows {
            let source = row.sources.first { $0.extractor.hasSuffix("-fallback") } ?? row.sources.first
            let conversation = source?.conversationID
            let key = "\(row.user.rawValue)|\(conversation ?? "")"
            if let at = index[key] {
                groups[at].rows.append(row)
            } else {
                index[key] = groups.count
                groups.append(Group(user: row.user, conversationID: conversation, rows: [row]))
            }
        }
        return groups
    }
}

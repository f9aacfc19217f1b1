import EngramCore
import EngramObservability
import EngramProviders
import EngramStore
import Foundation
import Logging

/// What became of one event.
public enum IngestOutcome: Sendable, Equatable {
    case stored(memories: Int, reinforced: Int, superseded: Int)
    case duplicate
    case noUser
    case noConsent
    case tombstoned
    case recorded
    case ignored
}

/// An event that must not be retried: it can never succeed (bad bytes, wrong key).
public struct PermanentEventError: Error, CustomStringConvertible, Sendable {
    public let errorClass: String
    public let message: String
    public var description: String { "\(errorClass): \(message)" }
}

/// Turns one queued event into stored memories: decrypt, decode, resolve the caller, check
/// tombstone and consent, extract (with the failure policy), resolve conflicts, write once.
public struct EventIngestor: Sendable {
    public let vault: MemoryVault
    public let extractor: any Extractor
    public let fallback: LocalExtractor
    public let policy: LLMFailurePolicy
    public let maxAttempts: Int
    public let envelopeCipher: FieldCipher
    /// Ciphers of previous master keys (rotation): envelopes queued before the switch still open.
    public var previousEnvelopeCiphers: [FieldCipher] = []
    public let defaultConsentMode: ConsentMode
    /// Bounds on the work of one event (turns in, memories out).
    public var budget = ExtractionBudget()

    public init(
        vault: MemoryVault, extractor: any Extractor, policy: LLMFailurePolicy, maxAttempts: Int, envelopeCipher: FieldCipher,
        defaultConsentMode: ConsentMode = .implicit
    ) {
        self.vault = vault
        self.extractor = extractor
        self.fallback = LocalExtractor()
        self.policy = policy
        self.maxAttempts = maxAttempts
        self.envelopeCipher = envelopeCipher
        self.defaultConsentMode = defaultConsentMode
    }

    public func ingest(_ envelope: Envelope, logger: Logger) async throws -> IngestOutcome {
        guard let body = ([envelopeCipher] + previousEnvelopeCiphers).lazy.compactMap({ try? envelope.openBody(cipher: $0) }).first else {
            throw PermanentEventError(errorClass: "DecryptionError", message: "envelope body cannot be decrypted with the current key")
        }
        guard let tenant = try await vault.tenant(envelope.tenant, create: envelope.tenant == "default", consentMode: defaultConsentMode) else {
            throw PermanentEventError(errorClass: "UnknownTenant", message: "tenant does not exist")
        }
        switch envelope.type {
        case EventType.postCallTranscription, EventType.callInitiationFailure:
            let (webhook, data, conversationID) = try Self.readPostCall(body)
            let key = Self.idempotencyKey(type: webhook.type, conversationID: conversationID)
            if envelope.type == EventType.callInitiationFailure {
                // Recorded only: the attempt is counted, nothing about the caller is kept.
                _ = try await vault.store.recordEvent(
                    tenant: tenant.id, idempotencyKey: key, eventID: envelope.id, eventType: envelope.type, user: nil, at: vault.clock.now())
                return .recorded
            }
            return try await ingestTranscript(
                data, conversationID: conversationID, idempotencyKey: key, envelope: envelope, tenant: tenant, logger: logger)
        case EventType.remember:
            let event: RememberEvent
            do {
                event = try JSONDecoder().decode(RememberEvent.self, from: body)
            } catch {
                throw PermanentEventError(errorClass: "DecodingError", message: "remember event is not valid")
            }
            guard let user = UserKey(event.user) else { throw PermanentEventError(errorClass: "DecodingError", message: "bad user key") }
            let saidAt = Date(checkedUnixSeconds: event.saidAt) ?? Self.receivedAt(envelope, now: vault.clock.now())
            let extraction = Extraction(
                memories: [
                    ExtractedMemory(
                        content: event.fact, sector: LocalExtractor.sector(of: event.fact), importance: 0.7, validFrom: saidAt,
                        sourceTurns: [], sensitive: LocalExtractor.isSensitive(event.fact), kind: "tool")
                ],
                summary: nil, userName: nil, extractor: "tool")
            return try await write(
                extraction, tenant: tenant, user: user, conversationID: event.conversationID, callAt: nil,
                idempotencyKey: "event:\(envelope.id)", envelope: envelope, consentFromCall: nil)
        default:
            _ = try await vault.store.recordEvent(
                tenant: tenant.id, idempotencyKey: "event:\(envelope.id)", eventID: envelope.id, eventType: envelope.type, user: nil,
                at: vault.clock.now())
            return .ignored
        }
    }

    /// The worker's reading of a post-call body: the gateway's parse (`PostCallIntake.classify`),
    /// so the same bytes give the same event; what it cannot read is a permanent failure.
    public static func readPostCall(_ body: Data) throws -> (webhook: PostCallWebhook, data: PostCallData, conversationID: String) {
        let webhook: PostCallWebhook
        do {
            webhook = try PostCallWebhook.parse(body)
        } catch let error as StrictJSONError {
            throw PermanentEventError(errorClass: "DecodingError", message: "post-call body refused: \(error.description)")
        } catch {
            throw PermanentEventError(errorClass: "DecodingError", message: "post-call body is not a valid event")
        }
        guard let data = webhook.data, let conversationID = data.conversationID, !conversationID.isEmpty else {
            throw PermanentEventError(errorClass: "DecodingError", message: "post-call body has no conversation id")
        }
        guard conversationID.utf8.count <= PostCallData.maxConversationIDBytes else {
            throw PermanentEventError(
                errorClass: "DecodingError", message: "conversation id is longer than \(PostCallData.maxConversationIDBytes) bytes")
        }
        return (webhook, data, conversationID)
    }

    /// When the gateway received the event; an envelope whose time is not a plausible date
    /// (it comes from Redis) counts as received now.
    static func receivedAt(_ envelope: Envelope, now: Date) -> Date {
        Date(checkedUnixSeconds: envelope.receivedAt) ?? now
    }

    /// The store's idempotency key of a webhook event: `<type>:<conversation_id>` (per tenant).
    public static func idempotencyKey(type: String, conversationID: String) -> String { "\(type):\(conversationID)" }

    /// The caller by the tenant's rule (`CallerResolution`): client ids are `data.user_id`, then
    /// the `user_id` dynamic variable; the phone number is the caller's.
    public static func identity(of data: PostCallData, trustClientIDs: Bool) -> CallerIdentity? {
        CallerResolution.resolve(clientIDs: clientIDs(of: data), phone: data.callerNumber, trustClientIDs: trustClientIDs)
    }

    /// The ids a client may have supplied for the caller, in order.
    public static func clientIDs(of data: PostCallData) -> [String?] {
        [data.userID, data.initiation?.dynamicVariables["user_id"]?.stringValue]
    }

    private func ingestTranscript(
        _ data: PostCallData, conversationID: String, idempotencyKey: String, envelope: Envelope, tenant: TenantContext, logger: Logger
    ) async throws -> IngestOutcome {
        guard let identity = Self.identity(of: data, trustClientIDs: tenant.record.trustClientUserIDs) else {
            _ = try await vault.store.recordEvent(
                tenant: tenant.id, idempotencyKey: idempotencyKey, eventID: envelope.id, eventType: envelope.type, user: nil, at: vault.clock.now())
            return .noUser
        }
        let user = tenant.userKeys.key(for: identity)
        if try await vault.store.isProcessed(tenant: tenant.id, idempotencyKey: idempotencyKey) { return .duplicate }

        let received = Self.receivedAt(envelope, now: vault.clock.now())
        var cuts = ExtractionBudget.Cuts()
        let conversation = budget.bound(Conversation(data, fallbackStart: received), cuts: &cuts)
        let consentFromCall = data.analysis?.dataCollectionResults["memory_consent"]?.value.flatMap { value -> Bool? in
            switch value {
            case .bool(let b): return b
            case .string(let s):
                return ["true", "yes", "1"].contains(s.lowercased()) ? true : (["false", "no", "0"].contains(s.lowercased()) ? false : nil)
            case .number(let n): return n != 0
            }
        }
        let extraction = budget.cap(try await extract(conversation, attempt: envelope.attempt, logger: logger), cuts: &cuts)
        if !cuts.isEmpty {
            // Counts only: what was cut is content.
            EngramMetrics.eventWorkCut(turns: cuts.turns, clippedTurns: cuts.clippedTurns, memories: cuts.memories)
            logger.warning(
                "event exceeded its work budget; the excess was not extracted",
                metadata: [
                    "turns_dropped": "\(cuts.turns)", "turns_clipped": "\(cuts.clippedTurns)", "memories_dropped": "\(cuts.memories)",
                    "max_turns": "\(budget.maxTurns)", "max_memories": "\(budget.maxMemories)",
                ])
        }
        return try await write(
            extraction, tenant: tenant, user: user, conversationID: conversationID, callAt: conversation.startedAt,
            idempotencyKey: idempotencyKey, envelope: envelope, consentFromCall: consentFromCall)
    }

    /// The configured extractor; on failure, retry via the queue, and on the last attempt
    /// (policy `retry-then-local`) the local extractor, its memories marked re-extractable.
    func extract(_ conversation: Conversation, attempt: Int, logger: Logger) async throws -> Extraction {
        try await EngramTracing.withSpan("extract") { span in
            span.attributes["engram.extractor"] = extractor.id
            span.attributes["engram.turns"] = conversation.turns.count
            let started = ContinuousClock.now
            do {
                let extraction = try await extractor.extract(conversation)
                EngramMetrics.providerCall(kind: "extraction", provider: extractor.id, duration: ContinuousClock.now - started, errorClass: nil)
                span.attributes["engram.memories.extracted"] = extraction.memories.count
                return extraction
            } catch {
                EngramMetrics.providerCall(
                    kind: "extraction", provider: extractor.id, duration: ContinuousClock.now - started, errorClass: "\(type(of: error))")
                let lastAttempt = attempt >= maxAttempts - 1
                guard policy == .retryThenLocal, lastAttempt, extractor.id != fallback.id else { throw error }
                logger.warning("extractor failed on the last attempt; extracting locally", metadata: ["error_class": "\(type(of: error))"])
                var local = fallback.extractNow(conversation)
                local.isFallback = true
                local.extractor = fallback.id + "-fallback"
                // The event succeeds, so the span is not failed; it says why the fallback ran.
                span.updateAttributes { attributes in
                    attributes["error.type"] = String(describing: type(of: error))
                    attributes["engram.extraction.fallback"] = true
                    attributes["engram.memories.extracted"] = local.memories.count
                }
                return local
            }
        }
    }

    private func write(
        _ extraction: Extraction, tenant: TenantContext, user: UserKey, conversationID: String?, callAt: Date?,
        idempotencyKey: String, envelope: Envelope, consentFromCall: Bool?
    ) async throws -> IngestOutcome {
        let store = vault.store
        let now = vault.clock.now()
        let received = Self.receivedAt(envelope, now: now)
        let existing = try await store.user(tenant: tenant.id, user: user)
        let erasedAt = try await store.tombstone(tenant: tenant.id, user: user)
        if let erasedAt {
            // Erased: only consent given after the erasure, to an event received after it, brings the caller back.
            let reconsented =
                existing?.consent == true && (existing?.consentAt ?? .distantPast) > erasedAt
                && received >= (existing?.consentAt ?? .distantFuture)
            if !reconsented {
                _ = try await store.recordEvent(
                    tenant: tenant.id, idempotencyKey: idempotencyKey, eventID: envelope.id, eventType: envelope.type, user: nil, at: now)
                return .tombstoned
            }
        }
        let mode = tenant.record.consentMode
        var allowed: Bool
        switch mode {
        case .off: allowed = false
        case .implicit: allowed = existing?.consent != false && consentFromCall != false
        case .explicit: allowed = existing?.consent == true || consentFromCall == true
        }
        if consentFromCall == true, existing?.consent != true {
            try await vault.setConsent(tenant: tenant.id, user: user, granted: true, at: now)
            allowed = mode != .off
        }
        guard allowed else {
            _ = try await store.recordEvent(
                tenant: tenant.id, idempotencyKey: idempotencyKey, eventID: envelope.id, eventType: envelope.type, user: nil, at: now)
            return .noConsent
        }
        var batch = try await vault.prepareWrite(
            tenant: tenant.id, user: user, extraction: extraction, conversationID: conversationID, callAt: callAt,
            idempotencyKey: idempotencyKey, eventID: envelope.id, eventType: envelope.type)
        // The store checks again inside its write transaction: an erasure since this decision wins.
        batch.erasedAt = erasedAt
        let applied: Bool
        do {
            applied = try await apply(batch, to: store)
        } catch StoreError.erased {
            _ = try await store.recordEvent(
                tenant: tenant.id, idempotencyKey: idempotencyKey, eventID: envelope.id, eventType: envelope.type, user: nil, at: now)
            return .tombstoned
        }
        guard applied else { return .duplicate }
        await vault.didApply(batch)
        return .stored(memories: batch.inserts.count, reinforced: batch.reinforcements.count, superseded: batch.supersessions.count)
    }

    private func apply(_ batch: WriteBatch, to store: any MemoryStore) async throws -> Bool {
        try await EngramTracing.withSpan("store write") { span in
            span.updateAttributes { attributes in
                attributes["engram.store"] = String(describing: type(of: store))
                attributes["engram.memories.inserted"] = batch.inserts.count
                attributes["engram.memories.reinforced"] = batch.reinforcements.count
                attributes["engram.memories.superseded"] = batch.supersessions.count
            }
            let applied = try await store.apply(batch)
            if !applied { span.attributes["engram.outcome"] = "duplicate" }
            return applied
        }
    }
}

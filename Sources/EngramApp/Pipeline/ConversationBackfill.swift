import EngramCore
import EngramProviders
import EngramQueue
import EngramStore
import Foundation

/// What `engram backfill` did with one conversation.
public enum BackfillOutcome: String, Sendable, Codable, CaseIterable {
    /// Put on the queue; the worker will process it like the webhook.
    case enqueued
    /// Dry run: would have been enqueued.
    case wouldEnqueue = "would_enqueue"
    /// The store already recorded this conversation's event.
    case alreadyProcessed = "already_processed"
    /// A dedupe mark exists: the webhook (or an earlier backfill) already queued it.
    case alreadyQueued = "already_queued"
    /// Not finished (`status` other than `done`).
    case skippedNotDone = "skipped_not_done"
    /// No resolvable caller (withheld number, widget call without `user_id`).
    case skippedNoCaller = "skipped_no_caller"
    /// The caller was erased after this call: queuing it now must not bring the call back.
    case skippedErased = "skipped_erased"
    /// The details could not be fetched (see the item's error).
    case failed
}

/// One conversation of a backfill run: ids, time and outcome only, never content or numbers.
public struct BackfillItem: Sendable, Codable, Equatable {
    public var conversationID: String
    public var agentID: String?
    public var startTimeUnixSecs: Int64?
    public var status: String?
    public var outcome: BackfillOutcome
    public var error: String?

    enum CodingKeys: String, CodingKey {
        case conversationID = "conversation_id"
        case agentID = "agent_id"
        case startTimeUnixSecs = "start_time_unix_secs"
        case status, outcome, error
    }
}

/// Reconciles Engram with ElevenLabs: lists an agent's conversations through the Conversations
/// API and queues each finished one that Engram has not processed, as the envelope its
/// `post_call_transcription` webhook would have produced, through the same deduplicated enqueue.
/// A later webhook, or a second backfill, is then a duplicate.
public struct ConversationBackfill: Sendable {
    public let client: ElevenLabsClient
    public let store: any MemoryStore
    public let queue: any EventQueue
    public let envelopeCipher: FieldCipher
    public let dedupeTTLSeconds: Int
    public let clock: WallClock
    public var pageSize = 100
    /// Tags queued envelopes with their callers' erasure tags (`EventOwner`); nil leaves them untagged.
    public var userTagKeyRing: KeyRing?

    public init(
        client: ElevenLabsClient, store: any MemoryStore, queue: any EventQueue, envelopeCipher: FieldCipher, dedupeTTLSeconds: Int,
        clock: WallClock = .system
    ) {
        self.client = client
        self.store = store
        self.queue = queue
        self.envelopeCipher = envelopeCipher
        self.dedupeTTLSeconds = dedupeTTLSeconds
        self.clock = clock
    }

    /// Conversations that started in `[since, until)`, newest first. A refused API key stops the
    /// run (`ElevenLabsAPIError.unauthorized`); a conversation whose details cannot be fetched is
    /// reported `failed` and the run goes on.
    /// `progress`: conversations reconciled so far (the total is not known until the last page).
    public func run(
        tenant: TenantContext, agentID: String?, since: Date, until: Date?, dryRun: Bool, progress: (@Sendable (_ done: Int) -> Void)? = nil
    ) async throws -> [BackfillItem] {
        let after = SafeNumber.clampedInt64(since.timeIntervalSince1970.rounded(.down))
        let before = until.map { SafeNumber.clampedInt64($0.timeIntervalSince1970.rounded(.up)) }
        var items: [BackfillItem] = []
        var seen = Set<String>()
        var cursor: String?
        repeat {
            // The API's "after" may be exclusive: ask from one second earlier and filter here.
            let page = try await client.listConversations(
                agentID: agentID, startedAfter: after.subtractingReportingOverflow(1).overflow ? after : after - 1, startedBefore: before,
                cursor: cursor, pageSize: pageSize)
            for summary in page.conversations where seen.insert(summary.conversationID).inserted {
                if let start = summary.startTimeUnixSecs {
                    if start < after { continue }
                    if let before, start >= before { continue }
                }
                if let agentID, let other = summary.agentID, other != agentID { continue }
                items.append(try await reconcile(summary, tenant: tenant, dryRun: dryRun))
                progress?(items.count)
            }
            cursor = page.hasMore ? page.nextCursor : nil
        } while cursor != nil
        return items
    }

    func reconcile(_ summary: ConversationSummary, tenant: TenantContext, dryRun: Bool) async throws -> BackfillItem {
        var item = BackfillItem(
            conversationID: summary.conversationID, agentID: summary.agentID, startTimeUnixSecs: summary.startTimeUnixSecs,
            status: summary.status, outcome: .skippedNotDone)
        guard summary.status == "done" else { return item }
        let type = EventType.postCallTranscription
        let key = EventIngestor.idempotencyKey(type: type, conversationID: summary.conversationID)
        if try await store.isProcessed(tenant: tenant.id, idempotencyKey: key) {
            item.outcome = .alreadyProcessed
            return item
        }
        let details: Data
        do {
            details = try await client.conversation(id: summary.conversationID)
        } catch let error as ElevenLabsAPIError {
            if case .unauthorized = error { throw error }
            item.outcome = .failed
            item.error = error.description
            return item
        }
        // Strict like the webhook (no duplicate keys), so the worker reads what is checked here.
        let data = (try? StrictJSON.check(details, maxDepth: PostCallWebhook.maxDepth - 1)).flatMap {
            try? JSONDecoder().decode(PostCallData.self, from: details)
        }
        if let status = (try? JSONSerialization.jsonObject(with: details) as? [String: Any])?["status"] as? String, status != "done" {
            item.status = status
            return item
        }
        guard let data, let identity = EventIngestor.identity(of: data, trustClientIDs: tenant.record.trustClientUserIDs) else {
            item.outcome = .skippedNoCaller
            return item
        }
        // The worker lets a caller erased and then re-consenting back in for events received
        // after the consent; a backfilled event is received now, so the call's own time decides.
        let startedAt = data.metadata?.startTimeUnixSecs ?? summary.startTimeUnixSecs
        if let erasedAt = try await store.tombstone(tenant: tenant.id, user: tenant.userKeys.key(for: identity)),
            startedAt.map({ Date(timeIntervalSince1970: TimeInterval($0)) < erasedAt }) ?? true
        {
            item.outcome = .skippedErased
            return item
        }
        if dryRun {
            item.outcome = .wouldEnqueue
            return item
        }
        let now = clock.now()
        let body = Self.webhookBody(details: details, eventTimestamp: SafeNumber.clampedInt64(now.timeIntervalSince1970))
        let envelope = try Envelope.seal(
            body, tenant: tenant.id, type: type, receivedAt: now, cipher: envelopeCipher,
            userTags: userTagKeyRing.map { EventOwner.tags(body: body, type: type, tenant: tenant, keyRing: $0) })
        let mark = PostCallIntake.eventDedupeMark(tenant: tenant.id, type: type, conversationID: summary.conversationID)
        item.outcome = try await queue.enqueue(envelope, dedupe: [mark], ttlSeconds: dedupeTTLSeconds) ? .enqueued : .alreadyQueued
        return item
    }

    /// The body of the `post_call_transcription` webhook for these details: the conversation
    /// object is the webhook's `data`, kept byte for byte.
    public static func webhookBody(details: Data, eventTimestamp: Int64) -> Data {
        var body = Data(#"{"type":"\#(EventType.postCallTranscription)","event_timestamp":\#(eventTimestamp),"data":"#.utf8)
        body.append(details)
        body.append(Data("}".utf8))
        return body
    }
}

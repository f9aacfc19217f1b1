import Foundation
import Synchronization

/// Group commit (issue 14): the worker's writes for a batch of events each commit in their own
/// transaction, as before, but the store may return from a commit before it is on disk; one
/// `GroupCommitStore.syncGroup` at the end of the batch makes all of them durable at once, and
/// only then are the events acknowledged. So one disk flush covers several events, while each
/// event keeps its own transaction (its idempotency key, tombstone check and memories together;
/// a failing event rolls back alone) and sees the events before it.
///
/// Active for the store calls made inside `GroupCommit.$current.withValue(group) { ... }`. A
/// backend that does not defer (PostgreSQL: every commit is durable) ignores it.
public final class GroupCommit: Sendable {
    /// The group the current task's store writes belong to; nil: every commit is durable on return.
    @TaskLocal public static var current: GroupCommit?

    private let unsynced = Atomic<Bool>(false)

    public init() {}

    /// Whether a write committed under this group may not be on disk yet.
    public var hasUnsyncedWrites: Bool { unsynced.load(ordering: .acquiring) }

    /// Called by a store after a commit it did not flush.
    public func noteUnsyncedWrite() { unsynced.store(true, ordering: .releasing) }

    /// Called by a store once every write of the group is durable.
    public func noteSynced() { unsynced.store(false, ordering: .releasing) }
}

/// A store that can defer the durability of writes made under a `GroupCommit`.
public protocol GroupCommitStore: Sendable {
    /// Makes every write committed under `group` durable (one flush for all of them). Throws if
    /// that cannot be confirmed: the group's events must then not be acknowledged.
    func syncGroup(_ group: GroupCommit) async throws
}

import Foundation
import GRDB
import Testing

@testable import EngramApp
@testable import EngramCore
@testable import EngramObservability
@testable import EngramStore

/// SQLite's point reads (`SQLiteMemoryStore.pointReading`) go the ordinary way when the point
/// reader fails, and each such fallback is counted by reason, so a point reader that always
/// fails shows in `engram_store_point_read_fallbacks_total`, not only as slowness.
@Suite("SQLite point-read fallbacks", .timeLimit(.minutes(1)))
struct PointReadFallbackTests {
    /// The value of `engram_store_point_read_fallbacks_total` for one reason (0 when absent).
    static func fallbacks(_ reason: String) -> Double {
        let prefix = #"engram_store_point_read_fallbacks_total{reason="\#(reason)"} "#
        let line = MetricsExport.render().split(separator: "\n").first { $0.hasPrefix(prefix) }
        return line.flatMap { Double($0.dropFirst(prefix.count)) } ?? 0
    }

    @Test("a real SQLITE_BUSY (another connection holds the file exclusively) is named busy; other failures are named error")
    func busyIsNamedBusy() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("engram-busy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("busy.sqlite").path
        var holding = Configuration()
        holding.allowsUnsafeTransactions = true
        let holder = try DatabaseQueue(path: path, configuration: holding)
        try holder.write { db in try db.execute(sql: "CREATE TABLE t (x INTEGER)") }
        var reading = Configuration()
        reading.readonly = true
        reading.busyMode = .immediateError
        let reader = try DatabaseQueue(path: path, configuration: reading)
        #expect(try reader.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM t") } == 0)

        // An exclusive transaction left open: every other connection's read is refused with SQLITE_BUSY.
        try holder.inDatabase { db in try db.execute(sql: "BEGIN EXCLUSIVE") }
        let refused = #expect(throws: DatabaseError.self) { try reader.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM t") } }
        #expect(refused?.resultCode == .SQLITE_BUSY)
        #expect(SQLiteMemoryStore.pointReadFallbackReason(try #require(refused)) == "busy")
        try holder.inDatabase { db in try db.execute(sql: "COMMIT") }
        #expect(try reader.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM t") } == 0)

        // Anything else is an error: a statement SQLite refuses, or not a database error at all (a
        // closed point reader: the test below).
        let refusedStatement = #expect(throws: DatabaseError.self) { try holder.read { try Int.fetchOne($0, sql: "SELECT * FROM absent") } }
        #expect(SQLiteMemoryStore.pointReadFallbackReason(try #require(refusedStatement)) == "error")
        #expect(SQLiteMemoryStore.pointReadFallbackReason(CancellationError()) == "error")
    }

    @Test("a point reader that fails for another reason (closed) is counted as error, and the read still fails")
    func errorIsCounted() async throws {
        MetricsExport.bootstrap()
        #expect(EngramMetrics.help["engram_store_point_read_fallbacks_total"] != nil)
        let env = try await TestEnvironment.make(.sqlite)
        let store = try await env.openStore()
        let errorsBefore = Self.fallbacks("error")
        await StoreFactory.close(store)
        await #expect(throws: (any Error).self) { try await store.user(tenant: "t_closed", user: UserKey("u_pointclosedaaaaaaaaaaaaaa2")!) }
        #expect(Self.fallbacks("error") >= errorsBefore + 1)
        await env.cleanUp()
    }
}

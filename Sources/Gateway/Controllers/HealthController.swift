import EngramApp
import EngramCore
import EngramObservability
import EngramQueue
import Hummingbird

/// Probes: live = the process answers; ready = the database answers and Redis is reachable.
struct HealthController {
    let vault: MemoryVault
    let queue: any EventQueue
    let spool: Spool

    /// Public: no authentication (probes carry no key).
    var endpoints: RouteCollection<GatewayRequestContext> {
        let routes = RouteCollection(context: GatewayRequestContext.self)
        routes.get("/health/live") { _, _ in try Response.json(["status": "ok"]) }
        routes.get("/health/ready") { _, _ in
            var checks: [String: String] = [:]
            do {
                try await withTimeout(.seconds(2)) { try await vault.ping() }
                checks["database"] = "ok"
            } catch { checks["database"] = "unavailable" }
            do {
                try await withTimeout(.seconds(2)) { try await queue.ping() }
                checks["redis"] = "ok"
            } catch { checks["redis"] = "unavailable" }
            // A Redis outage does not take the gateway out of rotation while the spool can keep events.
            checks["spool"] = spool.isWritable ? "ok" : "unwritable"
            checks["spool_depth"] = String(spool.depth)
            let ready = checks["database"] == "ok" && (checks["redis"] == "ok" || checks["spool"] == "ok")
            checks["status"] = ready ? "ready" : "not_ready"
            return try Response.json(checks, status: ready ? .ok : .serviceUnavailable)
        }
        return routes
    }
}

import EngramObservability
import Metrics

extension EngramMetrics {
    public static func queueDepth(_ stats: QueueStats) {
        for (list, value) in [("events", stats.pending), ("processing", stats.processing), ("retry", stats.retry), ("dead", stats.dead)] {
            Gauge(label: "engram_queue_depth", dimensions: [("list", list)]).record(value)
        }
    }
}

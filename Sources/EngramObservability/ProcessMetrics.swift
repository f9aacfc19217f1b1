import Foundation
import Prometheus
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The standard `process_*` metrics (as Prometheus' own clients name them), read from /proc at
/// each scrape: CPU seconds, resident and virtual memory, open and maximum file descriptors,
/// start time. Absent where /proc is (macOS): the families stay at zero.
public final class ProcessMetrics: Sendable {
    public static let shared = ProcessMetrics()

    private struct Handles: Sendable {
        var cpu: Prometheus.Counter
        var resident: Prometheus.Gauge
        var virtual: Prometheus.Gauge
        var openFDs: Prometheus.Gauge
        var maxFDs: Prometheus.Gauge
        var startTime: Prometheus.Gauge
    }

    private struct State: Sendable {
        var handles: Handles?
        var cpuReported = 0.0
    }

    private let state = Mutex(State())

    func register(in registry: PrometheusCollectorRegistry) {
        func d(_ name: String, _ help: String) -> MetricNameDescriptor { MetricNameDescriptor(metricName: name, unitName: "", helpText: help) }
        let handles = Handles(
            cpu: registry.makeCounter(descriptor: d("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.")),
            resident: registry.makeGauge(descriptor: d("process_resident_memory_bytes", "Resident memory size in bytes.")),
            virtual: registry.makeGauge(descriptor: d("process_virtual_memory_bytes", "Virtual memory size in bytes.")),
            openFDs: registry.makeGauge(descriptor: d("process_open_fds", "Number of open file descriptors.")),
            maxFDs: registry.makeGauge(descriptor: d("process_max_fds", "Maximum number of open file descriptors.")),
            startTime: registry.makeGauge(descriptor: d("process_start_time_seconds", "Start time of the process since unix epoch in seconds.")))
        state.withLock { $0.handles = handles }
        sample()
    }

    /// Reads /proc and updates the families; called before each render.
    public func sample() {
        guard let snapshot = Self.read() else { return }
        state.withLock { s in
            guard let h = s.handles else { return }
            // A counter only goes up: add what was used since the last sample.
            if snapshot.cpuSeconds > s.cpuReported {
                h.cpu.increment(by: snapshot.cpuSeconds - s.cpuReported)
                s.cpuReported = snapshot.cpuSeconds
            }
            h.resident.set(to: snapshot.residentBytes)
            h.virtual.set(to: snapshot.virtualBytes)
            h.openFDs.set(to: Double(snapshot.openFDs))
            if let maxFDs = snapshot.maxFDs { h.maxFDs.set(to: maxFDs) }
            if let start = snapshot.startTime { h.startTime.set(to: start) }
        }
    }

    struct Snapshot {
        var cpuSeconds: Double
        var residentBytes: Double
        var virtualBytes: Double
        var openFDs: Int
        var maxFDs: Double?
        var startTime: Double?
    }

    static func read() -> Snapshot? {
        #if os(Linux)
            guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return nil }
            // Fields after "pid (comm)": the command name may hold spaces and parentheses, so split after the last ')'.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // fields[0] is the state (field 3 of proc(5)); field n is fields[n - 3].
            func field(_ n: Int) -> Double? { fields.indices.contains(n - 3) ? Double(fields[n - 3]) : nil }
            let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
            let page = Double(sysconf(Int32(_SC_PAGESIZE)))
            guard ticks > 0, let utime = field(14), let stime = field(15) else { return nil }
            var startTime: Double?
            if let started = field(22), let boot = bootTime() { startTime = boot + started / ticks }
            let maxFDs = openFileLimit()
            let openFDs = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.count).map { max(0, $0 - 1) } ?? 0
            return Snapshot(
                cpuSeconds: (utime + stime) / ticks, residentBytes: (field(24) ?? 0) * page, virtualBytes: field(23) ?? 0,
                openFDs: openFDs, maxFDs: maxFDs, startTime: startTime)
        #else
            return nil
        #endif
    }

    /// The soft limit on open files, from the "Max open files" line of /proc/self/limits.
    static func openFileLimit() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/self/limits", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("Max open files") {
            return line.dropFirst("Max open files".count).split(separator: " ").first.flatMap { Double($0) }
        }
        return nil
    }

    /// Boot time (seconds since the epoch), from the `btime` line of /proc/stat.
    static func bootTime() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }
}

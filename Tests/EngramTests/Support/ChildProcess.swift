import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A child process started with `posix_spawn`, for the tests that run real executables.
///
/// Not Foundation's `Process`: on Linux (Swift 6.3.1) its `run()` reads `/proc/self/fd` with a
/// 256-byte over-read (swift-corelibs-foundation #5472) and crashes the test process now and
/// then once it has many descriptors open, as a suite of parallel tests does (seen here: SIGSEGV
/// in `Process.run()` at about 1,360 open descriptors). The child runs `sh -c 'cd DIR && exec …'`,
/// so its pid is the executable's; every descriptor above the standard three is closed in the
/// child (`posix_spawn_file_actions_addclosefrom_np`), as Foundation's `Process` does.
final class ChildProcess: Sendable {
    let processIdentifier: pid_t
    /// The exit status once reaped (128 + signal for a signal).
    private let exit = Mutex<Int32?>(nil)

    /// Starts `executable` with `arguments` in `directory`, with exactly `environment`; its
    /// standard output goes to `output` (nil: /dev/null), standard error to `errors` (nil: with the
    /// output), standard input comes from `input` (nil: /dev/null).
    init(
        executable: String, arguments: [String], environment: [String: String], directory: String, output: String?,
        input: String? = nil, errors: String? = nil
    ) throws {
        guard let closeFrom = Self.addCloseFrom else {
            throw TestSetupError.timeout("posix_spawn_file_actions_addclosefrom_np is missing (glibc 2.34+ needed)")
        }
        let shell = ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", directory, executable] + arguments
        // The child dies with the test process (SIGKILL on its death, whatever kills it), so a
        // crashed or killed test run leaves no gateway, worker or redis-server behind.
        let argv = Self.setpriv.map { [$0, "--pdeathsig", "KILL", "--"] + shell } ?? shell
        let envp = environment.map { "\($0.key)=\($0.value)" }
        let (status, pid) = SpawnThread.shared.run { () -> (Int32, pid_t) in
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            // Nothing of this process's but the three standard streams reaches the child (what
            // Foundation's Process does by walking /proc/self/fd), without reading that directory here.
            guard closeFrom(&actions, 3) == 0 else { return (ENOMEM, 0) }
            posix_spawn_file_actions_addopen(&actions, 0, input ?? "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, output ?? "/dev/null", O_WRONLY | O_APPEND | O_CREAT, 0o600)
            if let errors {
                posix_spawn_file_actions_addopen(&actions, 2, errors, O_WRONLY | O_APPEND | O_CREAT, 0o600)
            } else {
                posix_spawn_file_actions_adddup2(&actions, 1, 2)
            }
            // The calling thread blocks every asynchronous signal (libdispatch's worker threads
            // do), and a child inherits its mask: redis-server ignored SIGTERM. None is blocked.
            var attributes = posix_spawnattr_t()
            posix_spawnattr_init(&attributes)
            defer { posix_spawnattr_destroy(&attributes) }
            var none = sigset_t()
            sigemptyset(&none)
            posix_spawnattr_setsigmask(&attributes, &none)
            posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
            var pid: pid_t = 0
            let status = withCStrings(argv) { cArgv in
                withCStrings(envp) { cEnvp in posix_spawn(&pid, argv[0], &actions, &attributes, cArgv, cEnvp) }
            }
            return (status, pid)
        }
        guard status == 0 else { throw TestSetupError.timeout("posix_spawn \(executable) failed: \(status)") }
        processIdentifier = pid
    }

    /// util-linux `setpriv`, which sets PR_SET_PDEATHSIG before it execs the child (nil: not installed).
    private static let setpriv: String? = ["/usr/bin/setpriv", "/bin/setpriv"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34+), which Swift's Glibc module does not import.
    private static let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    /// True until the child has exited (it is reaped on the first call that sees it gone).
    var isRunning: Bool { reap(blocking: false) == nil }

    /// The exit status; only meaningful once `isRunning` is false.
    var terminationStatus: Int32 { reap(blocking: false) ?? -1 }

    func waitUntilExit() { _ = reap(blocking: true) }

    private func reap(blocking: Bool) -> Int32? {
        exit.withLock { known in
            if let known { return known }
            var status: Int32 = 0
            let result = waitpid(processIdentifier, &status, blocking ? 0 : WNOHANG)
            guard result == processIdentifier else { return nil }
            let code = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            known = code
            return code
        }
    }
}

/// NUL-terminated C strings for `posix_spawn`'s argv and envp, valid inside `body`.
private func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { for pointer in pointers { free(pointer) } }
    return body(pointers)
}

/// The one thread that starts every child, alive as long as the test process. PR_SET_PDEATHSIG
/// fires when the *thread* that created the child exits, not the process, and the threads of the
/// Swift concurrency pool come and go: a child started from one of them would be killed when
/// that thread retired. Callers block for the spawn itself (a millisecond or so).
final class SpawnThread: @unchecked Sendable {
    static let shared = SpawnThread()
    private let jobs = Mutex<[@Sendable () -> Void]>([])
    private let pending = DispatchSemaphore(value: 0)

    private init() {
        let thread = Thread { [self] in
            while true {
                pending.wait()
                let job = jobs.withLock { $0.isEmpty ? nil : $0.removeFirst() }
                job?()
            }
        }
        thread.name = "test-spawner"
        thread.start()
    }

    func run<R: Sendable>(_ body: @escaping @Sendable () -> R) -> R {
        let result = Mutex<R?>(nil)
        let done = DispatchSemaphore(value: 0)
        jobs.withLock {
            $0.append {
                let value = body()
                result.withLock { $0 = value }
                done.signal()
            }
        }
        pending.signal()
        done.wait()
        return result.withLock { $0 }!
    }
}

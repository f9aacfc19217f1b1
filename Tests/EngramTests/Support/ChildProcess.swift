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
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // Nothing of this process's but the three standard streams reaches the child (what
        // Foundation's Process does by walking /proc/self/fd), without reading that directory here.
        guard let closeFrom = Self.addCloseFrom, closeFrom(&actions, 3) == 0 else {
            throw TestSetupError.timeout("posix_spawn_file_actions_addclosefrom_np is missing (glibc 2.34+ needed)")
        }
        posix_spawn_file_actions_addopen(&actions, 0, input ?? "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output ?? "/dev/null", O_WRONLY | O_APPEND | O_CREAT, 0o600)
        if let errors {
            posix_spawn_file_actions_addopen(&actions, 2, errors, O_WRONLY | O_APPEND | O_CREAT, 0o600)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        let argv = ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", directory, executable] + arguments
        let envp = environment.map { "\($0.key)=\($0.value)" }
        var pid: pid_t = 0
        let status = withCStrings(argv) { cArgv in
            withCStrings(envp) { cEnvp in posix_spawn(&pid, "/bin/sh", &actions, nil, cArgv, cEnvp) }
        }
        guard status == 0 else { throw TestSetupError.timeout("posix_spawn \(executable) failed: \(status)") }
        processIdentifier = pid
    }

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

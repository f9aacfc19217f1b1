import ArgumentParser
import EngramCore
import EngramStore

// Choice options are enums so `--help` lists their values and a wrong value is a usage error
// that names them.

extension ConsentMode: CaseIterable, ExpressibleByArgument {
    public static var allCases: [ConsentMode] { [.implicit, .explicit, .off] }
}

extension APIKeyRecord.Scope: CaseIterable, ExpressibleByArgument {
    public static var allCases: [APIKeyRecord.Scope] { [.tool, .admin] }
}

/// A setting that is on or off (`engram tenant trust-client-ids NAME on|off`).
enum Switch: String, CaseIterable, ExpressibleByArgument {
    case on, off
}

import Foundation

/// The few fields of a post-call body that the gateway's classification reads: the type, the
/// conversation id and the caller identities (for the erasure tags). Everything else (the
/// transcript above all) stays opaque bytes until the worker decrypts it.
public struct PostCallFields: Sendable, Equatable {
    /// Empty when absent or not a string (as `PostCallWebhook.type`).
    public var type: String = ""
    /// `data` is an object (`PostCallWebhook.data != nil`).
    public var hasData = false
    public var conversationID: String?
    public var userID: String?
    /// `data.metadata.phone_call.external_number`.
    public var externalNumber: String?
    /// Only the dynamic variables that name the caller: `user_id`, `system__caller_id`, `caller_id`.
    public var callerVariables: [String: JSONScalar] = [:]

    /// The dynamic variables `EventIngestor` and `PostCallData.callerNumber` read.
    public static let callerVariableNames = ["user_id", "system__caller_id", "caller_id"]

    public init() {}

    /// The same fields from Foundation's typed decoding (the reference the scanner is tested against).
    public init(_ webhook: PostCallWebhook) {
        type = webhook.type
        guard let data = webhook.data else { return }
        hasData = true
        conversationID = data.conversationID
        userID = data.userID
        externalNumber = data.metadata?.phoneCall?.externalNumber
        for name in Self.callerVariableNames {
            if let value = data.initiation?.dynamicVariables[name] { callerVariables[name] = value }
        }
    }

    /// A `PostCallData` holding only these fields (no transcript), for code that takes one
    /// (`EventOwner.tags`); nil when the body had no `data` object.
    public var data: PostCallData? {
        guard hasData else { return nil }
        return PostCallData(fields: self)
    }
}

extension PostCallData {
    /// Only the identity fields; the rest empty.
    init(fields: PostCallFields) {
        agentID = nil
        conversationID = fields.conversationID
        userID = fields.userID
        transcript = []
        metadata = CallMetadata(phoneNumber: fields.externalNumber)
        analysis = nil
        initiation = InitiationClientData(variables: fields.callerVariables)
    }
}

extension CallMetadata {
    init(phoneNumber: String?) {
        startTimeUnixSecs = nil
        callDurationSecs = nil
        phoneCall = phoneNumber.map { PhoneCall(externalNumber: $0, direction: nil) }
        timezone = nil
    }
}

extension InitiationClientData {
    init(variables: [String: JSONScalar]) { dynamicVariables = variables }
}

extension PostCallWebhook {
    /// The gateway's read of a post-call body: the strict check (`StrictJSON`), then the fields
    /// by `PostCallFieldScanner`, or by Foundation's typed decoding when the scanner is not sure
    /// it would give the same answer. Throws what `parse` throws.
    public static func intakeFields(_ body: Data) throws -> PostCallFields {
        try StrictJSON.check(body, maxDepth: maxDepth)
        let scanned: PostCallFields? = body.withUnsafeBytes { PostCallFieldScanner.scan($0) }
        if let scanned { return scanned }
        return PostCallFields(try JSONDecoder().decode(PostCallWebhook.self, from: body))
    }
}

/// Finds the `PostCallFields` of a body that `StrictJSON.check` accepted, without Foundation and
/// without building the rest of the document. It answers only where its answer is provably the
/// typed decoding's; anything unusual on the way (a key or wanted value with an escape or a
/// non-ASCII byte, a number Foundation might refuse, invalid UTF-8, a surrogate escape anywhere,
/// a top level that is not an object) returns nil, and the caller decodes with Foundation.
///
/// Untrusted bytes: every read is bounds-checked, work is linear in the input, no recursion
/// (containers are skipped with a counter), no arithmetic that can trap.
public enum PostCallFieldScanner {
    public static func scan(_ raw: UnsafeRawBufferPointer) -> PostCallFields? {
        var scanner = Scanner(bytes: raw)
        return scanner.document()
    }

    /// A token of a JSON value, as far as the scanner needs to tell.
    enum Value {
        case string(String)
        /// A string with escapes or non-ASCII bytes: its value is not read here.
        case otherString
        case object(start: Int)
        case null
        /// A number, `true`, `false`, an array.
        case other
    }

    struct Scanner {
        let bytes: UnsafeRawBufferPointer
        var i = 0
        /// Set when the scanner must not answer.
        var unsure = false

        init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        var count: Int { bytes.count }

        func byte(_ at: Int) -> UInt8? { at >= 0 && at < bytes.count ? bytes[at] : nil }

        mutating func document() -> PostCallFields? {
            guard Self.isValidUTF8(bytes) else { return nil }
            var fields = PostCallFields()
            skipWhitespace()
            guard byte(i) == UInt8(ascii: "{") else { return nil }
            let top = i
            // The whole body is walked (numbers and surrogate escapes checked everywhere).
            forEachMember(ofObjectAt: top) { scanner, key, value in
                switch (key, value) {
                case ("type", .string(let text)): fields.type = text
                case ("type", .otherString): scanner.unsure = true
                case ("data", .object(let start)):
                    fields.hasData = true
                    scanner.readData(at: start, into: &fields)
                default: break
                }
            }
            return unsure ? nil : fields
        }

        /// `data`: conversation id, user id, metadata.phone_call, the dynamic variables.
        mutating func readData(at start: Int, into fields: inout PostCallFields) {
            forEachMember(ofObjectAt: start) { scanner, key, value in
                switch key {
                case "conversation_id": fields.conversationID = scanner.optionalString(value)
                case "user_id": fields.userID = scanner.optionalString(value)
                case "metadata":
                    guard case .object(let metadata) = value else { return }
                    scanner.forEachMember(ofObjectAt: metadata) { scanner, key, value in
                        guard key == "phone_call", case .object(let phoneCall) = value else { return }
                        // PhoneCall's synthesized decoding fails as a whole when either field is
                        // present with another type than a string (or null).
                        var number: String?
                        var valid = true
                        scanner.forEachMember(ofObjectAt: phoneCall) { scanner, key, value in
                            guard key == "external_number" || key == "direction" else { return }
                            switch value {
                            case .string(let text): if key == "external_number" { number = text }
                            case .null: break
                            case .otherString: scanner.unsure = true
                            case .object, .other: valid = false
                            }
                        }
                        fields.externalNumber = valid ? number : nil
                    }
                case "conversation_initiation_client_data":
                    guard case .object(let initiation) = value else { return }
                    scanner.forEachMember(ofObjectAt: initiation) { scanner, key, value in
                        guard key == "dynamic_variables", case .object(let variables) = value else { return }
                        scanner.forEachMember(ofObjectAt: variables) { scanner, key, value in
                            guard PostCallFields.callerVariableNames.contains(key) else { return }
                            switch value {
                            case .string(let text): fields.callerVariables[key] = .string(text)
                            case .null, .object: break  // not a scalar: left out, as JSONScalar's decoding fails
                            case .otherString: scanner.unsure = true
                            case .other:
                                // A number or a boolean (or an array): Foundation decides.
                                scanner.unsure = true
                            }
                        }
                    }
                default: break
                }
            }
        }

        /// A wanted string field: its text, nil when null or another type; unsure for escapes.
        mutating func optionalString(_ value: Value) -> String? {
            switch value {
            case .string(let text): return text
            case .otherString:
                unsure = true
                return nil
            default: return nil
            }
        }

        /// Calls `body` with each member of the object whose `{` is at `start`, then leaves `i`
        /// after its `}`. Keys with escapes or non-ASCII bytes make the scanner unsure (they
        /// could spell a wanted key); their members are skipped.
        mutating func forEachMember(ofObjectAt start: Int, _ body: (inout Scanner, String, Value) -> Void) {
            i = start + 1
            while !unsure {
                skipWhitespace()
                guard let c = byte(i) else { return fail() }
                if c == UInt8(ascii: "}") {
                    i += 1
                    return
                }
                if c == UInt8(ascii: ",") {
                    i += 1
                    continue
                }
                guard c == UInt8(ascii: "\"") else { return fail() }
                guard let key = readString() else { return fail() }
                skipWhitespace()
                guard byte(i) == UInt8(ascii: ":") else { return fail() }
                i += 1
                skipWhitespace()
                guard case .plain(let keyText) = key else {
                    unsure = true
                    return
                }
                guard let value = readValue() else { return fail() }
                let resume = i
                body(&self, keyText, value)
                if unsure { return }
                // An object the visitor did not walk is skipped here; one it walked ends where it stopped.
                if case .object(let objectStart) = value, i == resume {
                    i = objectStart
                    skipContainer()
                } else if case .object = value {
                    // walked by the visitor: `i` is after its `}`
                } else {
                    i = resume
                }
            }
        }

        mutating func fail() { unsure = true }

        /// Reads the value at `i`. Containers are not consumed for objects (the visitor may walk
        /// them; `i` stays at `{`); arrays are skipped whole; scalars consumed.
        mutating func readValue() -> Value? {
            guard let c = byte(i) else { return nil }
            switch c {
            case UInt8(ascii: "{"):
                return .object(start: i)
            case UInt8(ascii: "["):
                skipContainer()
                return unsure ? nil : .other
            case UInt8(ascii: "\""):
                switch readString() {
                case .plain(let text)?: return .string(text)
                case .escaped?: return .otherString
                case nil: return nil
                }
            case UInt8(ascii: "n"):
                i += 4
                return i <= count ? .null : nil
            case UInt8(ascii: "t"):
                i += 4
                return i <= count ? .other : nil
            case UInt8(ascii: "f"):
                i += 5
                return i <= count ? .other : nil
            default:
                return skipNumber() ? .other : nil
            }
        }

        enum StringToken {
            case plain(String)
            case escaped
        }

        /// The string whose opening quote is at `i`; `i` ends after its closing quote. Plain: no
        /// escape and ASCII only. A surrogate escape (`\uD800`...) anywhere makes the scanner unsure.
        mutating func readString() -> StringToken? {
            i += 1
            let start = i
            var plain = true
            while let c = byte(i) {
                if c == UInt8(ascii: "\"") {
                    let end = i
                    i += 1
                    guard plain else { return .escaped }
                    return .plain(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self))
                }
                if c >= 0x80 { plain = false }
                if c == UInt8(ascii: "\\") {
                    plain = false
                    guard let e = byte(i + 1) else { return nil }
                    if e == UInt8(ascii: "u") {
                        guard let h = byte(i + 2), let h2 = byte(i + 3) else { return nil }
                        if h == UInt8(ascii: "d") || h == UInt8(ascii: "D"),
                            (UInt8(ascii: "8")...UInt8(ascii: "9")).contains(h2) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(h2 | 0x20)
                        {
                            unsure = true
                        }
                    }
                    i += 2
                    continue
                }
                i += 1
            }
            return nil
        }

        /// A number token; unsure for exponents and long literals (Foundation's limits are not
        /// this scanner's business).
        mutating func skipNumber() -> Bool {
            let start = i
            while let c = byte(i) {
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."): i += 1
                case UInt8(ascii: "e"), UInt8(ascii: "E"), UInt8(ascii: "+"):
                    unsure = true
                    i += 1
                default:
                    if i - start > 17 { unsure = true }
                    return i > start
                }
            }
            if i - start > 17 { unsure = true }
            return i > start
        }

        /// Skips the object or array whose opening bracket is at `i`, strings and numbers
        /// included (both are still checked), with a depth counter instead of recursion.
        mutating func skipContainer() {
            var depth = 0
            while let c = byte(i) {
                switch c {
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                    i += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    i += 1
                    if depth <= 0 { return }
                case UInt8(ascii: "\""):
                    guard readString() != nil else { return fail() }
                case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                    guard skipNumber() else { return fail() }
                default:
                    i += 1
                }
                if unsure { return }
            }
            fail()  // ran off the end: not the validated document this expects
        }

        mutating func skipWhitespace() {
            while let c = byte(i), c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { i += 1 }
        }

        /// ASCII fast; otherwise the standard library's UTF-8 validation.
        static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
            var ascii = true
            for b in bytes where b >= 0x80 {
                ascii = false
                break
            }
            if ascii { return true }
            return String(validating: bytes, as: UTF8.self) != nil
        }
    }
}

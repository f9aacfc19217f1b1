import Foundation

/// Why a JSON text was refused by `StrictJSON.check`. Never carries content.
public enum StrictJSONError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not JSON (byte offset of the first fault).
    case malformed(offset: Int)
    /// One object names the same key twice: JSONSerialization and JSONDecoder would silently
    /// keep one of them, and two readers could then see two different events.
    case duplicateKey
    /// Objects and arrays nested deeper than allowed.
    case tooDeep(limit: Int)

    public var description: String {
        switch self {
        case .malformed(let offset): return "not valid JSON (at byte \(offset))"
        case .duplicateKey: return "an object has the same key twice"
        case .tooDeep(let limit): return "nested deeper than \(limit) levels"
        }
    }
}

/// A single-pass, non-recursive JSON validator that refuses what the Foundation decoders accept
/// silently: duplicate keys (compared as Swift strings, after escapes, so `"type"` and
/// `"typ\u0065"` are the same key, as they are to JSONDecoder) and excessive nesting. Linear
/// in the input; it allocates only the keys of the objects currently open.
public enum StrictJSON {
    /// Optimised even in debug builds (`@_optimize(speed)` on the scanner): the gateway runs it
    /// on every body, up to 2 MiB, and the test suite runs it 20,000 times.
    public static func check(_ data: Data, maxDepth: Int) throws {
        try data.withUnsafeBytes { raw in
            // Every read below is preceded by an explicit `i < count` check.
            guard let base = raw.bindMemory(to: UInt8.self).baseAddress, raw.count > 0 else { throw StrictJSONError.malformed(offset: 0) }
            var scanner = Scanner(bytes: Bytes(base: base, count: raw.count), maxDepth: maxDepth)
            try scanner.run()
        }
    }

    private enum State { case value, valueOrEnd, key, keyOrEnd, afterValue }

    /// Unchecked reads over a buffer whose bounds the scanner checks itself (fast in debug builds).
    private struct Bytes {
        let base: UnsafePointer<UInt8>
        let count: Int
        @inline(__always) subscript(_ index: Int) -> UInt8 { base[index] }
        func text(_ range: Range<Int>) -> UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(start: base + range.lowerBound, count: range.count) }
    }

    private struct Scanner {
        let bytes: Bytes
        let maxDepth: Int
        var i = 0
        /// One entry per open container: true for an object, false for an array.
        var open: [Bool] = []
        /// The keys seen so far in each open object, innermost last.
        var keySets: [Set<String>] = []

        init(bytes: Bytes, maxDepth: Int) {
            self.bytes = bytes
            self.maxDepth = maxDepth
        }

        var fault: StrictJSONError { .malformed(offset: i) }

        @_optimize(speed)
        mutating func skipWhitespace() {
            while i < bytes.count {
                switch bytes[i] {
                case 0x20, 0x09, 0x0A, 0x0D: i += 1
                default: return
                }
            }
        }

        @_optimize(speed)
        mutating func run() throws {
            var state = State.value
            while true {
                skipWhitespace()
                switch state {
                case .value, .valueOrEnd:
                    guard i < bytes.count else { throw fault }
                    let c = bytes[i]
                    if state == .valueOrEnd, c == UInt8(ascii: "]") {
                        i += 1
                        close()
                        state = .afterValue
                        continue
                    }
                    switch c {
                    case UInt8(ascii: "{"):
                        guard open.count < maxDepth else { throw StrictJSONError.tooDeep(limit: maxDepth) }
                        open.append(true)
                        keySets.append([])
                        i += 1
                        state = .keyOrEnd
                    case UInt8(ascii: "["):
                        guard open.count < maxDepth else { throw StrictJSONError.tooDeep(limit: maxDepth) }
                        open.append(false)
                        i += 1
                        state = .valueOrEnd
                    case UInt8(ascii: "\""):
                        _ = try string(decode: false)
                        state = .afterValue
                    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                        try number()
                        state = .afterValue
                    case UInt8(ascii: "t"):
                        try literal("true")
                        state = .afterValue
                    case UInt8(ascii: "f"):
                        try literal("false")
                        state = .afterValue
                    case UInt8(ascii: "n"):
                        try literal("null")
                        state = .afterValue
                    default: throw fault
                    }
                case .key, .keyOrEnd:
                    guard i < bytes.count else { throw fault }
                    if state == .keyOrEnd, bytes[i] == UInt8(ascii: "}") {
                        i += 1
                        close()
                        state = .afterValue
                        continue
                    }
                    guard bytes[i] == UInt8(ascii: "\"") else { throw fault }
                    let key = try string(decode: true) ?? ""
                    // The innermost container is this object (state .key only follows "{" or ",").
                    guard open.last == true, let last = keySets.indices.last else { throw fault }
                    guard keySets[last].insert(key).inserted else { throw StrictJSONError.duplicateKey }
                    skipWhitespace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fault }
                    i += 1
                    state = .value
                case .afterValue:
                    guard let isObject = open.last else {
                        guard i == bytes.count else { throw fault }  // trailing bytes after the top value
                        return
                    }
                    guard i < bytes.count else { throw fault }
                    switch bytes[i] {
                    case UInt8(ascii: ","):
                        i += 1
                        state = isObject ? .key : .value
                    case UInt8(ascii: "}") where isObject, UInt8(ascii: "]") where !isObject:
                        i += 1
                        close()
                        state = .afterValue
                    default: throw fault
                    }
                }
            }
        }

        mutating func close() {
            if open.popLast() == true { _ = keySets.popLast() }
        }

        @_optimize(speed)
        mutating func literal(_ word: String) throws {
            let expected = Array(word.utf8)
            guard bytes.count - i >= expected.count else { throw fault }
            for k in expected.indices where bytes[i + k] != expected[k] { throw fault }
            i += expected.count
        }

        @_optimize(speed)
        mutating func number() throws {
            if bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard i < bytes.count else { throw fault }
            if bytes[i] == UInt8(ascii: "0") {
                i += 1
            } else {
                guard digits() > 0 else { throw fault }
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
                i += 1
                guard digits() > 0 else { throw fault }
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
                i += 1
                if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
                guard digits() > 0 else { throw fault }
            }
        }

        @_optimize(speed)
        mutating func digits() -> Int {
            let start = i
            while i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) { i += 1 }
            return i - start
        }

        /// Reads a string starting at its opening quote; returns its text when `decode` is set.
        @_optimize(speed)
        mutating func string(decode: Bool) throws -> String? {
            i += 1
            let start = i
            var plain = true
            while true {
                guard i < bytes.count else { throw fault }
                let c = bytes[i]
                if c == UInt8(ascii: "\"") { break }
                if c < 0x20 { throw fault }  // control characters must be escaped
                if c == UInt8(ascii: "\\") {
                    plain = false
                    guard i + 1 < bytes.count else { throw fault }
                    switch bytes[i + 1] {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                        UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        i += 2
                    case UInt8(ascii: "u"):
                        guard bytes.count - i >= 6, (2..<6).allSatisfy({ Self.hexValue(bytes[i + $0]) != nil }) else { throw fault }
                        i += 6
                    default: throw fault
                    }
                    continue
                }
                i += 1
            }
            let end = i
            i += 1  // the closing quote
            guard decode else { return nil }
            let slice = bytes.text(start..<end)
            return plain ? String(decoding: slice, as: UTF8.self) : Self.unescape(slice)
        }

        static func hexValue(_ byte: UInt8) -> UInt32? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(byte - UInt8(ascii: "A") + 10)
            default: return nil
            }
        }

        /// The text of an already validated string body with escapes.
        static func unescape(_ body: UnsafeBufferPointer<UInt8>) -> String {
            var out: [UInt8] = []
            out.reserveCapacity(body.count)
            var k = 0
            var pendingHigh: UInt32?
            func emit(_ scalar: UInt32, into out: inout [UInt8]) {
                let value = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                out.append(contentsOf: Array(String(Character(value)).utf8))
            }
            func hex4(_ at: Int) -> UInt32 {
                (0..<4).reduce(UInt32(0)) { $0 << 4 | (hexValue(body[at + $1]) ?? 0) }
            }
            while k < body.count {
                let c = body[k]
                guard c == UInt8(ascii: "\\"), k + 1 < body.count else {
                    if let high = pendingHigh {
                        emit(high, into: &out)
                        pendingHigh = nil
                    }
                    out.append(c)
                    k += 1
                    continue
                }
                let e = body[k + 1]
                if e == UInt8(ascii: "u"), k + 5 < body.count {
                    let unit = hex4(k + 2)
                    k += 6
                    if (0xD800...0xDBFF).contains(unit) {
                        if let high = pendingHigh { emit(high, into: &out) }
                        pendingHigh = unit
                    } else if (0xDC00...0xDFFF).contains(unit), let high = pendingHigh {
                        emit(0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00), into: &out)
                        pendingHigh = nil
                    } else {
                        if let high = pendingHigh {
                            emit(high, into: &out)
                            pendingHigh = nil
                        }
                        emit(unit, into: &out)  // a lone surrogate becomes U+FFFD
                    }
                    continue
                }
                if let high = pendingHigh {
                    emit(high, into: &out)
                    pendingHigh = nil
                }
                switch e {
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                default: out.append(e)  // \" \\ \/
                }
                k += 2
            }
            if let high = pendingHigh { emit(high, into: &out) }
            return String(decoding: out, as: UTF8.self)
        }
    }
}

/// Dense vector helpers over contiguous Float32, written so the compiler vectorises them.
public enum VectorMath {
    @inline(__always)
    public static func dot(_ a: [Float], _ b: [Float]) -> Float {
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                guard let x = pa.baseAddress, let y = pb.baseAddress else { return 0 }  // an empty vector
                return dot(x, y, count: min(pa.count, pb.count))
            }
        }
    }

    @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        var s0 = SIMD8<Float>()
        var s1 = SIMD8<Float>()
        var i = 0
        while i + 16 <= count {
            let a0 = UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self)
            let b0 = UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
            let a1 = UnsafeRawPointer(a + i + 8).loadUnaligned(as: SIMD8<Float>.self)
            let b1 = UnsafeRawPointer(b + i + 8).loadUnaligned(as: SIMD8<Float>.self)
            s0 += a0 * b0
            s1 += a1 * b1
            i += 16
        }
        var total = (s0 + s1).sum()
        while i < count {
            total += a[i] * b[i]
            i += 1
        }
        return total
    }

    public static func normalized(_ v: [Float]) -> [Float] {
        let norm = dot(v, v).squareRoot()
        guard norm > 0 else { return v }
        return v.map { $0 / norm }
    }

    public static func toBytes(_ v: [Float]) -> [UInt8] {
        v.withUnsafeBytes { Array($0) }
    }

    public static func fromBytes(_ bytes: [UInt8]) -> [Float] {
        let count = bytes.count / MemoryLayout<Float>.size
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            bytes.withUnsafeBytes { raw in
                for i in 0..<count { buffer[i] = raw.loadUnaligned(fromByteOffset: i * 4, as: Float.self) }
            }
            initialized = count
        }
    }
}

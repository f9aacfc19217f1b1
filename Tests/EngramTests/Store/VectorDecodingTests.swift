import NIOCore
import Testing

@testable import EngramStore

/// Reading a caller's vectors from PostgreSQL appends them one row at a time. Reserving exactly
/// one more vector's room on each append defeated the array's geometric growth: every row copied
/// all the rows before it (73 s for the first search of a caller with 20,000 memories). Counting
/// how often the buffer moves catches that without timing anything.
@Suite("PostgreSQL vector decoding", .timeLimit(.minutes(1)))
struct VectorDecodingTests {
    /// pgvector's binary form: dimensions, an unused word, then the floats, big-endian.
    static func pgvector(_ values: [Float]) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(Int16(values.count))
        buffer.writeInteger(Int16(0))
        for value in values { buffer.writeInteger(value.bitPattern) }
        return buffer
    }

    @Test("2,000 vectors append in a number of reallocations that grows with the log of the count, not the count")
    func appendsGrowGeometrically() {
        var flat: [Float] = []
        var reallocations = 0
        var capacity = flat.capacity
        for row in 0..<2_000 {
            var buffer = Self.pgvector((0..<8).map { Float(row * 8 + $0) })
            #expect(PostgresMemoryStore.appendVector(&buffer, to: &flat))
            if flat.capacity != capacity {
                reallocations += 1
                capacity = flat.capacity
            }
        }
        #expect(flat.count == 16_000 && flat[8 * 1_234 + 5] == Float(8 * 1_234 + 5))
        #expect(reallocations < 40, "\(reallocations) reallocations for 2,000 appends")
    }

    @Test("a vector whose length disagrees with its dimension count is refused")
    func refusesRagged() {
        var flat: [Float] = [1]
        var short = Self.pgvector([1, 2, 3])
        short.moveWriterIndex(to: short.writerIndex - 2)
        #expect(!PostgresMemoryStore.appendVector(&short, to: &flat))
        var empty = ByteBuffer()
        #expect(!PostgresMemoryStore.appendVector(&empty, to: &flat))
    }
}

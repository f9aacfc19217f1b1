/// A plain-text table with a header and columns padded to their widest cell, for a person to scan.
struct TextTable {
    var header: [String]
    var rows: [[String]]
    /// Cells longer than this are cut with an ellipsis (the JSON form has them whole).
    var maxCellWidth = 60

    var rendered: String {
        let all = ([header] + rows).map { row in row.map { cell($0) } }
        let columns = all.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columns)
        for row in all { for (i, value) in row.enumerated() { widths[i] = max(widths[i], value.count) } }
        return all.map { row in
            row.enumerated().map { i, value in
                i == row.count - 1 ? value : value + String(repeating: " ", count: widths[i] - value.count)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    private func cell(_ value: String) -> String {
        let flat = value.split(whereSeparator: \.isNewline).joined(separator: " ")
        return flat.count > maxCellWidth ? String(flat.prefix(maxCellWidth - 1)) + "…" : flat
    }
}

public enum Engram { public static let version = "0.1.0" }

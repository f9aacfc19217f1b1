import Shared
@main struct Main { static func main() { print(Engram.version) } }

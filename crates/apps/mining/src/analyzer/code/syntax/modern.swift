// Swift 5.9: if and switch expressions, async/await, actors, result builders' syntax,
// some/any, parameter packs' keywords avoided, macros.
import Foundation

actor Counter {
    private var value = 0

    func increment(by step: Int = 1) -> Int {
        value += step
        return value
    }
}

enum Level { case low, high }

func label(for level: Level) -> String {
    let text = switch level {
    case .low: "low"
    case .high: "high"
    }
    return text
}

func describe(_ value: some CustomStringConvertible, items: [any Equatable]) -> String {
    let prefix = if items.isEmpty { "none" } else { "some" }
    return "\(prefix): \(value)"
}

func load(_ urls: [URL]) async throws -> [Data] {
    try await withThrowingTaskGroup(of: Data.self) { group in
        for url in urls {
            group.addTask { try Data(contentsOf: url) }
        }
        guard let first = try await group.next() else { return [] }
        return [first]
    }
}

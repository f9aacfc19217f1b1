import Foundation

/// Facts a receptionist would write down, stated once and dated (issue 13): bookings and their
/// times. "On 21 November 2025 the caller confirmed a cleaning on Friday (28 November 2025) at
/// 10 a.m." Each cites only the turns whose words it carries: the turn with the time, the turn
/// naming the service when another one does, and the caller's request when it says "confirmed".
/// The slot is `booking` alone: slot names are stored in clear, so none may carry the caller's
/// words (PrivacyTests); the latest booking therefore supersedes the previous one.
enum DatedFacts {
    private struct Pattern: @unchecked Sendable { let regex: NSRegularExpression }

    private static let weekday = "(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
    private static let month = "(?:january|february|march|april|may|june|july|august|september|october|november|december)"
    private static let time = #"\d{1,2}(?::\d\d)?\s*(?:a\.m\.|p\.m\.|am|pm)"#
    private static let day =
        "(?:(?:next |this )?\(weekday)|tomorrow|today|\\d{1,2}(?:st|nd|rd|th)? (?:of )?\(month)|\(month) \\d{1,2}(?:st|nd|rd|th)?)"
    /// "booked for Friday at 10 a.m.", "scheduled on March 3rd", "moved to 2 pm tomorrow".
    private static let booking = Pattern(
        regex: try! NSRegularExpression(
            pattern:
                #"\b(booked|scheduled|reserved|confirmed|rescheduled|moved|got you down|have you down|appointment is|booking is)\b[^.!?]{0,40}?\b(?:for|on|at|to)\s+((?:\#(day)(?:,?\s+(?:at\s+)?\#(time))?)|(?:\#(time)(?:,?\s+(?:on\s+)?\#(day))?))"#,
            options: [.caseInsensitive]))
    private static let service = Pattern(
        regex: try! NSRegularExpression(
            pattern:
                #"\b(cleaning|check-?up|consultation|haircut|filling|exam|examination|massage|facial|delivery|reservation|repair|inspection|treatment|lesson|fitting|installation|pick-?up|viewing|interview|service|visit|session|class|appointment)s?\b"#,
            options: [.caseInsensitive]))
    private static let generic: Set<String> = ["appointment", "visit", "session", "service", "class"]
    private static let request = Pattern(
        regex: try! NSRegularExpression(
            pattern: #"\b(check|confirm|still have|still on|still booked|double-check)\b"#, options: [.caseInsensitive]))

    /// The bookings stated in a call.
    static func bookings(in conversation: Conversation, day: String) -> [ExtractedMemory] {
        var facts: [ExtractedMemory] = []
        let turns = conversation.turns
        for (position, turn) in turns.enumerated() {
            guard let match = firstMatch(booking, in: turn.text), match.count == 3 else { continue }
            let verbWord = match[1].lowercased()
            let when = dated(match[2], callStart: conversation.startedAt)
            var cited = [turn.index]
            // The service: named in this turn, else in the nearest earlier turn that names a specific one.
            var serviceName = specificService(in: turn.text)
            if serviceName == nil || generic.contains(serviceName ?? "") {
                for earlier in turns[..<position].reversed() {
                    if let name = specificService(in: earlier.text), !generic.contains(name) {
                        serviceName = name
                        cited.append(earlier.index)
                        break
                    }
                }
            }
            let name = serviceName ?? "appointment"
            let article = "aeiou".contains(name.first ?? "x") ? "an" : "a"
            var sentence: String
            if verbWord == "moved" || verbWord == "rescheduled" {
                sentence = "On \(day) the caller's \(name) was moved to \(when)."
            } else if turn.speaker == .agent, let previous = turns[..<position].last(where: { $0.speaker == .caller }),
                firstMatch(request, in: previous.text) != nil
            {
                cited.append(previous.index)
                sentence = "On \(day) the caller confirmed \(article) \(name) on \(when)."
            } else {
                sentence = "On \(day) the caller booked \(article) \(name) for \(when)."
            }
            // "… at 10 a.m." already ends the sentence.
            if sentence.hasSuffix("..") { sentence.removeLast() }
            guard !facts.contains(where: { $0.content == sentence }) else { continue }
            facts.append(
                ExtractedMemory(
                    content: sentence, sector: .episodic, slot: "booking", importance: 0.8,
                    validFrom: conversation.startedAt, sourceTurns: cited.sorted(), sensitive: LocalExtractor.isSensitive(turn.text)))
        }
        return facts
    }

    /// "Friday at 10 a.m." → "Friday (28 November 2025) at 10 a.m.": a bare weekday is the next
    /// one after the call; "next Friday", "tomorrow" are resolved as in episodes.
    static func dated(_ when: String, callStart: Date) -> String {
        let words = when.split(separator: " ", maxSplits: 1).map(String.init)
        guard let first = words.first, weekdays.contains(first.lowercased()) else {
            return RelativeDates.annotate(when, callStart: callStart)
        }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? .current
        guard let date = RelativeDates.resolve("on \(first.lowercased())", from: callStart, calendar: calendar) else { return when }
        let rest = words.count > 1 ? " " + words[1] : ""
        return "\(first) (\(LocalExtractor.dayFormatter.string(from: date)))\(rest)"
    }

    private static let weekdays: Set<String> = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]

    /// The most specific service a turn names ("cleaning" over "appointment").
    static func specificService(in text: String) -> String? {
        let ns = text as NSString
        let names = service.regex.matches(in: text, range: NSRange(location: 0, length: ns.length)).map {
            ns.substring(with: $0.range(at: 1)).lowercased()
        }
        return names.first { !generic.contains($0) } ?? names.first
    }

    private static func firstMatch(_ pattern: Pattern, in text: String) -> [String]? {
        guard let match = pattern.regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) else { return nil }
        return (0..<match.numberOfRanges).map { i in
            guard let range = Range(match.range(at: i), in: text) else { return "" }
            return String(text[range]).trimmingCharacters(in: .whitespaces)
        }
    }
}

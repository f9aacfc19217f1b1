import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore

@testable import Gateway

/// Headers for a signed post-call request.
func postCallHeaders(_ body: Data, secret: String, at time: Date = Date()) -> HTTPFields {
    var headers = HTTPFields()
    headers[HTTPField.Name("ElevenLabs-Signature")!] = signedHeader(body, secret: secret, at: time)
    headers[.contentType] = "application/json"
    return headers
}

func bearer(_ key: String) -> HTTPFields {
    var headers = HTTPFields()
    headers[.authorization] = "Bearer \(key)"
    headers[.contentType] = "application/json"
    return headers
}

extension ByteBuffer {
    init(data: Data) { self.init(bytes: data) }
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(buffer: self))) as? [String: Any] ?? [:] }
}

/// The fixture with fresh ids, so each test has its own conversation.
func fixtureTranscript(
    conversationID: String = "conv_\(UUID().uuidString)", phone: String? = Fixtures.fixturePhone, mutate: ((inout [String: Any]) -> Void)? = nil
) throws -> Data {
    var object = try JSONSerialization.jsonObject(with: try Fixtures.elevenLabs("post_call_transcription.json")) as! [String: Any]
    var data = object["data"] as! [String: Any]
    data["conversation_id"] = conversationID
    var metadata = data["metadata"] as! [String: Any]
    var phoneCall = metadata["phone_call"] as! [String: Any]
    phoneCall["external_number"] = phone ?? NSNull()
    metadata["phone_call"] = phoneCall
    data["metadata"] = metadata
    var initiation = data["conversation_initiation_client_data"] as! [String: Any]
    var variables = initiation["dynamic_variables"] as! [String: Any]
    variables["system__caller_id"] = phone ?? NSNull()
    initiation["dynamic_variables"] = variables
    data["conversation_initiation_client_data"] = initiation
    object["data"] = data
    mutate?(&object)
    return try JSONSerialization.data(withJSONObject: object)
}

/// An error whose description is known to carry no personal data (addresses and server replies
/// only), so logs may print it in full.
public protocol DescribedWithoutPersonalData: Error, CustomStringConvertible {}

extension ConfigurationError: DescribedWithoutPersonalData {}

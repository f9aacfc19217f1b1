import EngramCore

extension RedisError: DescribedWithoutPersonalData {}

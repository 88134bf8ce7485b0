-- computed_tag: records a computed value under one tag and answers when the tag was last
-- purged (nil: not within the purge memory). KEYS[1] = tag set, KEYS[2] = its purge mark.
-- ARGV: value key, ttl (ms).
redis.call('SADD', KEYS[1], ARGV[1])
extend(KEYS[1], tonumber(ARGV[2]))
return redis.call('GET', KEYS[2])

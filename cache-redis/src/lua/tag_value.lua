-- tag_value: records a value key under one tag (a cluster puts the tag set in its own slot).
-- KEYS[1] = tag set. ARGV: value key, ttl (ms).
redis.call('SADD', KEYS[1], ARGV[1])
extend(KEYS[1], tonumber(ARGV[2]))
return 1

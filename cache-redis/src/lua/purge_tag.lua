-- purge_tag: marks a tag purged now (so that a value computed across the purge is refused)
-- and answers the value keys recorded under it. The mark is written first: a computation that
-- checks the marks after this sees it, and one that registered before this is in the set.
-- KEYS[1] = tag set, KEYS[2] = its purge mark. ARGV: purge memory (ms).
redis.call('SET', KEYS[2], clock(), 'PX', ARGV[1])
return redis.call('SMEMBERS', KEYS[1])

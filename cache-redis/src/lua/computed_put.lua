-- computed_put: stores a computed value unless one of its tags was purged since the stamp,
-- then releases the lock and wakes its waiters.
-- KEYS[1] = value key, KEYS[2] = lock, then per tag: its set, its purge mark (one server
-- only; on a cluster the tags are registered by computed_tag in their own slots).
-- ARGV: value, ttl (ms), stamp (server microseconds), purge memory (ms), lock token ('' for
-- none), wake-up list ttl (ms). Answers 1 when stored, 0 when refused.
local ttl, stamp = tonumber(ARGV[2]), tonumber(ARGV[3])
local stored = tonumber(clock()) - stamp <= tonumber(ARGV[4]) * 1000
for i = 3, #KEYS, 2 do
  local mark = redis.call('GET', KEYS[i + 1])
  if mark and tonumber(mark) >= stamp then stored = false end
end
if stored then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  for i = 3, #KEYS, 2 do
    redis.call('SADD', KEYS[i], KEYS[1])
    extend(KEYS[i], ttl)
  end
end
release(KEYS[2], ARGV[5], tonumber(ARGV[6]))
return stored and 1 or 0

-- computed_wait: starts waiting for the holder of a lock. KEYS[1] = value key, KEYS[2] = lock.
-- ARGV: how long the wait may last (ms).
-- Answers {1, value} when the value is there, {0} when nobody holds the lock, else counts the
-- caller among the waiters of the holder's computation and answers {2, token}: the caller
-- then pops `<lock>:wake:<token>`. Atomic with the holder's release: a waiter counted before
-- it is woken, one arriving after it finds the lock gone.
local value = redis.call('GET', KEYS[1])
if value then return {1, value} end
local token = redis.call('GET', KEYS[2])
if not token then return {0} end
local waiters = KEYS[2] .. ':waiters:' .. token
redis.call('INCR', waiters)
extend(waiters, math.max(redis.call('PTTL', KEYS[2]), 0) + tonumber(ARGV[1]))
return {2, token}

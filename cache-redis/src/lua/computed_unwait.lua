-- computed_unwait: a waiter gave up (its bound passed): it no longer counts among the waiters,
-- so that no wake-up is pushed for it. KEYS[1] = lock. ARGV: token.
local waiters = KEYS[1] .. ':waiters:' .. ARGV[1]
if tonumber(redis.call('GET', waiters) or '0') > 0 then redis.call('DECR', waiters) end
return 1

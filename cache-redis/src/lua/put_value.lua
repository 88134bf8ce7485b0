-- put_value: a computed value with its tags. KEYS[1] = value key, KEYS[2..] = tag sets.
-- ARGV: value, ttl (ms).
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  extend(KEYS[i], ttl)
end
return 1

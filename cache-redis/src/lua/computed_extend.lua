-- computed_extend: the holder of a lock keeps it for another ttl; a lock that lapsed (gone, or
-- another's now) is left as it is. KEYS[1] = lock. ARGV: token, ttl (ms). Answers 1 when the
-- token held the lock (now extended), else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0

-- computed_unlock: a computation failed: releases its lock and wakes its waiters (who then
-- compute themselves). KEYS[1] = lock. ARGV: token, wake-up list ttl (ms).
release(KEYS[1], ARGV[1], tonumber(ARGV[2]))
return 1

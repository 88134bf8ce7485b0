-- model-cache: the lock of one computed value and its wake-ups.
-- The lock key is `{ns}:lock:{<value key>}`; the waiters of the computation holding token T
-- count in `<lock>:waiters:T` and are woken through the list `<lock>:wake:T`. Every one of
-- them shares the lock's hash tag (the value key), so they live in the value's slot.

-- Releases `lock` if `token` holds it, and wakes the waiters of `token`'s computation: one
-- wake-up per waiter counted, pushed on its list, which lives `wake_ttl` ms. The waiters are
-- woken even when the lock expired and was taken since: they wait for this computation.
local function release(lock, token, wake_ttl)
  if token == '' then return end
  if redis.call('GET', lock) == token then redis.call('DEL', lock) end
  local waiters = lock .. ':waiters:' .. token
  local n = math.min(tonumber(redis.call('GET', waiters) or '0') or 0, 10000)
  redis.call('DEL', waiters)
  if n > 0 then
    local wake = lock .. ':wake:' .. token
    for _ = 1, n do redis.call('RPUSH', wake, '1') end
    redis.call('PEXPIRE', wake, wake_ttl)
  end
end

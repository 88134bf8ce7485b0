-- model-cache: helpers shared by every script.

-- Extends `key`'s time to live to at least `ttl` ms; never shortens it, so a key shared by
-- many records lives as long as the longest-lived of them. A missing key is left missing.
local function extend(key, ttl)
  local current = redis.call('PTTL', key)
  if current ~= -2 and current < ttl then
    redis.call('PEXPIRE', key, ttl)
  end
end

-- Integers as Redis arguments (Lua would print large numbers with an exponent).
local function int(n)
  return string.format('%d', n)
end

-- The server clock in microseconds, as a decimal string.
local function clock()
  local t = redis.call('TIME')
  return t[1] .. string.format('%06d', tonumber(t[2]))
end

-- A counter's value, created from the clock when missing: a counter lost to a restart or an
-- expiry restarts above every value it handed out before, so an old token never matches.
local function counter(key, ttl)
  local value = redis.call('GET', key)
  if not value then
    value = clock()
    redis.call('SET', key, value, 'PX', ttl)
  end
  return value
end

-- Increments a counter (created from the clock when missing).
local function bump(key, ttl)
  counter(key, ttl)
  redis.call('INCR', key)
  extend(key, ttl)
end

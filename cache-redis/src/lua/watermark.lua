-- watermark: raises a watermark unless it holds a higher one. KEYS[1] = value key.
-- ARGV: the mark (a decimal integer as Rust prints it), ttl (ms). Answers 1 when the key now
-- holds the mark (it was missing, not a mark, lower or equal), 0 when it holds a higher one.

-- Whether decimal integer `a` is below `b`, compared as text: Lua numbers are doubles and
-- would round marks beyond 2^53.
local function below(a, b)
  local na, nb = a:sub(1, 1) == '-', b:sub(1, 1) == '-'
  if na ~= nb then return na end
  if #a ~= #b then return (#a < #b) ~= na end
  if a == b then return false end
  return (a < b) ~= na
end

local current = redis.call('GET', KEYS[1])
if current and string.match(current, '^%-?%d+$') and below(ARGV[1], current) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1

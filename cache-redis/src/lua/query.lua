-- query: answers an index query from the bucket when its completeness marker holds the
-- current epoch. KEYS[5] = marker, KEYS[6] = the ordering zset (a sort field's, or the id
-- zset), KEYS[7..] = the filters' tag sets.
-- ARGV: prefix, index ttl (ms), descending ('1' | '0'), offset, count (-1 for all).
-- Answers {1, seq, id, score, body, ...} when the marker holds (a body is nil when the record
-- expired or was evicted: a page holding it cannot be answered), {0, seq} otherwise: no marker,
-- or a key it relies on was evicted (see entity.lua).
local ittl, desc = tonumber(ARGV[2]), ARGV[3] == '1'
local offset, count = tonumber(ARGV[4]), tonumber(ARGV[5])
local seq = counter(SEQ, ittl)
local epoch = redis.call('GET', EPOCH)
if not epoch or redis.call('GET', KEYS[5]) ~= epoch then return {0, seq} end
if not redis.call('ZSCORE', KEYS[6], SENTINEL) then return {0, seq} end
local live = live_member(KEYS[5])
for i = 7, #KEYS do
  if redis.call('SISMEMBER', KEYS[i], live) == 0 then return {0, seq} end
end
local rows
if count == 0 then
  rows = {}
elseif #KEYS == 6 then
  -- No filter: page the ordering zset by rank, around its sentinel (first ascending, last
  -- descending). Equal scores are ordered by id, ZREVRANGE reverses both, which is the
  -- contract's order (ties by id in the sort direction).
  local start = desc and offset or offset + 1
  local stop = count < 0 and -1 or start + count - 1
  rows = redis.call(desc and 'ZREVRANGE' or 'ZRANGE', KEYS[6], int(start), int(stop), 'WITHSCORES')
else
  -- Filters: ZINTER walks the smallest input and answers in (score, id) order; the tag sets
  -- weigh 0 so the score is the sort field's.
  local args = {'ZINTER', #KEYS - 5}
  for i = 6, #KEYS do args[#args + 1] = KEYS[i] end
  args[#args + 1] = 'WEIGHTS'
  args[#args + 1] = '1'
  for _ = 7, #KEYS do args[#args + 1] = '0' end
  args[#args + 1] = 'WITHSCORES'
  local all = redis.call(unpack(args))
  local n = #all / 2
  local last = count < 0 and n or math.min(n, offset + count)
  rows = {}
  for r = offset + 1, last do
    local at = desc and (n - r + 1) or r
    rows[#rows + 1] = all[2 * at - 1]
    rows[#rows + 1] = all[2 * at]
  end
end
local out = {1, seq}
for i = 1, #rows, 2 do
  if rows[i] ~= SENTINEL then
    out[#out + 1] = rows[i]
    out[#out + 1] = rows[i + 1]
    out[#out + 1] = redis.call('GET', record_key(rows[i]))
  end
end
return out

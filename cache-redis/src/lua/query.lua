-- query: answers an index query from the bucket when its completeness marker holds the
-- current epoch. KEYS[5] = marker, KEYS[6] = the ordering zset (a sort field's, or the id
-- zset), KEYS[7..] = the filters' tag sets.
-- ARGV: prefix, index ttl (ms), descending ('1' | '0'), offset, count (-1 for all), ranked
-- ('1' when the caller merges buckets and needs each row's id and score, '0' for bodies only).
-- Answers {1, seq, body, ...} (ranked: {1, seq, n, id, score, ... (n pairs), body, ... (n)})
-- when the marker holds (a body is nil when the record expired or was evicted: a page holding
-- it cannot be answered), {0, seq} otherwise: no marker, or a key it relies on was evicted
-- (see entity.lua).
local ittl, desc = tonumber(ARGV[2]), ARGV[3] == '1'
local offset, count, ranked = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == '1'
-- One read for the three strings every answer needs.
local head = redis.call('MGET', SEQ, EPOCH, KEYS[5])
local seq = head[1] or counter(SEQ, ittl)
local epoch = head[2]
if not epoch or head[3] ~= epoch then return {0, seq} end
if not redis.call('ZSCORE', KEYS[6], SENTINEL) then return {0, seq} end
local live = live_member(KEYS[5])
for i = 7, #KEYS do
  if not redis.call('ZSCORE', KEYS[i], live) then return {0, seq} end
end
-- The page's ids (and, ranked, scores: `rows` alternates them), in the query's order.
local rows, step = {}, ranked and 2 or 1
if count == 0 then
  rows = {}
elseif #KEYS == 6 then
  -- No filter: page the ordering zset by rank, around its sentinel (first ascending, last
  -- descending). Equal scores are ordered by id, ZREVRANGE reverses both, which is the
  -- contract's order (ties by id in the sort direction).
  local start = desc and offset or offset + 1
  local stop = count < 0 and -1 or start + count - 1
  if ranked then
    rows = redis.call(desc and 'ZREVRANGE' or 'ZRANGE', KEYS[6], int(start), int(stop), 'WITHSCORES')
  else
    rows = redis.call(desc and 'ZREVRANGE' or 'ZRANGE', KEYS[6], int(start), int(stop))
  end
  -- Descending, the sentinel sorts last: drop it when the page reaches it.
  if desc and rows[#rows - step + 1] == SENTINEL then
    for _ = 1, step do rows[#rows] = nil end
  end
else
  -- Filters: ZINTER walks the smallest input and answers in (score, id) order; the tag sets
  -- weigh 0 so the score is the sort field's. The sentinel is in no tag set.
  local args = {'ZINTER', #KEYS - 5}
  for i = 6, #KEYS do args[#args + 1] = KEYS[i] end
  args[#args + 1] = 'WEIGHTS'
  args[#args + 1] = '1'
  for _ = 7, #KEYS do args[#args + 1] = '0' end
  if ranked then args[#args + 1] = 'WITHSCORES' end
  local all = redis.call(unpack(args))
  local n = #all / step
  local last = count < 0 and n or math.min(n, offset + count)
  if desc or offset > 0 or last < n then
    for r = offset + 1, last do
      local at = step * (desc and (n - r) or (r - 1))
      rows[#rows + 1] = all[at + 1]
      if ranked then rows[#rows + 1] = all[at + 2] end
    end
  else
    rows = all
  end
end
-- The bodies: one MGET per chunk of keys (Lua's unpack is limited by its C stack).
local out = {1, seq}
local first = 3
if ranked then
  out[3] = #rows / 2
  for i = 1, #rows do out[3 + i] = rows[i] end
  first = 4 + #rows
end
local keys = {}
local function fetch()
  local bodies = redis.call('MGET', unpack(keys))
  for i = 1, #keys do
    -- An indexed id's key holds no tombstone (remove.lua takes the id out of the index before
    -- it writes one) short of a lost meta hash; one reads as a missing record, never a body.
    local body = bodies[i]
    if is_tombstone(body) then body = false end
    out[first + i - 1] = body
  end
  first = first + #keys
  keys = {}
end
for i = 1, #rows, step do
  keys[#keys + 1] = record_key(rows[i])
  if #keys == 1000 then fetch() end
end
if #keys > 0 then fetch() end
return out

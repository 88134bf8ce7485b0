-- complete: stores the complete result of a filter set and marks it complete, unless the
-- bucket was written since the token. KEYS[5] = marker, KEYS[6 .. 5 + n] = the filters' tag
-- sets, the rest = the entity's sort zsets.
-- ARGV: prefix, token, index ttl (ms), n, then per record: id, body, ttl (ms), version,
--       source time (unused here: a fill), meta.
-- Answers 0 when refused; when marked complete, 1 followed by the ids of the cached records
-- it forgot because the origin's result no longer has them.
local token, ittl, last_filter = ARGV[2], tonumber(ARGV[3]), 5 + tonumber(ARGV[4])
if counter(SEQ, ittl) ~= token then return 0 end

-- Takes out of tag set `key` the records the meta hash does not file there (left by a lost
-- meta hash: a later write could move them into the other sets of a filter) and the clean
-- marks of earlier meta hashes.
local function scrub(key)
  for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    if is_record(member) then
      local meta = redis.call('HGET', META, member)
      local filed = false
      for _, e in ipairs(meta and cjson.decode(meta).t or {}) do
        if tag_key(e[1], e[2]) == key then filed = true end
      end
      if not filed then redis.call('ZREM', key, member) end
    elseif string.sub(member, 1, 3) == ':m:' then
      redis.call('ZREM', key, member)
    end
  end
end

ensure_meta(ittl)
ensure_zset(IDS, ittl)
for i = last_filter + 1, #KEYS do
  ensure_zset(KEYS[i], ittl)
  extend(KEYS[i], ittl)
end
for i = 6, last_filter do
  if not redis.call('ZSCORE', KEYS[i], clean) then scrub(KEYS[i]) end
end
local result = {}
for i = 5, #ARGV, 6 do
  local id, body, ttl, version, meta = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 5]
  result[id] = true
  local old = redis.call('HGET', META, id)
  if cached_is_newer(id, old, version) then
    -- Left as it is, but filed again where it says: an index key lost since it was written
    -- lacks it.
    move(id, old, old, ittl)
  else
    move(id, old, meta, ittl)
    -- Over its tombstone, if it had one (entity.lua).
    redis.call('SET', record_key(id), body, 'PX', ttl)
    redis.call('DEL', lease_key(id))
  end
end
-- What the bucket files under these filters but the origin did not answer is forgotten, so
-- that the marked result is exactly the origin's. Without filters that is every ordering
-- zset's members: one may have outlived the loss of another, or of the meta hash.
local filed = {}
if last_filter > 5 then
  local args = {'ZINTER', last_filter - 5}
  for i = 6, last_filter do args[#args + 1] = KEYS[i] end
  filed = redis.call(unpack(args))
else
  local zsets, seen = {IDS}, {}
  for i = last_filter + 1, #KEYS do zsets[#zsets + 1] = KEYS[i] end
  for _, key in ipairs(zsets) do
    for _, id in ipairs(redis.call('ZRANGE', key, 0, -1)) do
      if not seen[id] then
        seen[id] = true
        filed[#filed + 1] = id
      end
    end
  end
end
local forgot = {1}
for _, id in ipairs(filed) do
  if is_record(id) and not result[id] then
    forgot[#forgot + 1] = id
    local old = redis.call('HGET', META, id)
    if old then move(id, old, nil, ittl) end
    for i = 6, last_filter do redis.call('ZREM', KEYS[i], id) end
    redis.call('ZREM', IDS, id)
    for i = last_filter + 1, #KEYS do redis.call('ZREM', KEYS[i], id) end
    -- A record goes, not a tombstone: one written after the meta hash was lost (remove.lua
    -- then finds no entries to take the id out of) stays, to answer and order as before.
    local key = record_key(id)
    if redis.call('GETRANGE', key, 0, 0) ~= TOMBSTONE then redis.call('DEL', key) end
    redis.call('DEL', lease_key(id))
  end
end
local live = live_member(KEYS[5])
for i = 6, last_filter do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('ZADD', KEYS[i], 0, live, 0, clean)
  else
    -- An empty answer's set holds the live member alone, so that a negative answer stays
    -- small: the clean mark is added by the next fill that finds records in it (after a scrub
    -- of what little a set created since holds).
    redis.call('ZADD', KEYS[i], 0, live)
  end
  extend(KEYS[i], ittl)
end
redis.call('SET', KEYS[5], counter(EPOCH, ittl), 'PX', ittl)
refresh(ittl)
return forgot

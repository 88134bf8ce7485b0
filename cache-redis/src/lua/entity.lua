-- model-cache: the keys and index moves of one bucket of one entity.
-- Every entity script declares KEYS[1] = seq, KEYS[2] = meta hash, KEYS[3] = id zset,
-- KEYS[4] = epoch, and passes the bucket's key prefix as ARGV[1]. Per-record keys are built
-- from the prefix: they share its hash tag, so they live in the same cluster slot.
local prefix = ARGV[1]
local SEQ, META, IDS, EPOCH = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

local function record_key(id) return prefix .. ':r:' .. id end
local function tomb_key(id) return prefix .. ':tomb:' .. id end
local function lease_key(id) return prefix .. ':lease:' .. id end
local function tag_key(field, value) return prefix .. ':t:' .. field .. ':' .. value end
local function sort_key(field) return prefix .. ':s:' .. field end

local NO_ENTRIES = {t = {}, s = {}}

-- Moves `id` from the index entries of meta `old` (false: none) to those of meta `new`
-- (nil: drop them), keeping the meta hash and the id zset in step.
local function move(id, old, new, ttl)
  local o = old and cjson.decode(old) or NO_ENTRIES
  local n = new and cjson.decode(new) or NO_ENTRIES
  local tags = {}
  for _, e in ipairs(n.t) do tags[tag_key(e[1], e[2])] = true end
  for _, e in ipairs(o.t) do
    local key = tag_key(e[1], e[2])
    if not tags[key] then redis.call('SREM', key, id) end
  end
  for key in pairs(tags) do
    redis.call('SADD', key, id)
    extend(key, ttl)
  end
  local scored = {}
  for _, e in ipairs(n.s) do scored[e[1]] = true end
  for _, e in ipairs(o.s) do
    if not scored[e[1]] then redis.call('ZREM', sort_key(e[1]), id) end
  end
  for _, e in ipairs(n.s) do
    local key = sort_key(e[1])
    redis.call('ZADD', key, e[2], id)
    extend(key, ttl)
  end
  if new then
    redis.call('HSET', META, id, new)
    redis.call('ZADD', IDS, 0, id)
  else
    redis.call('HDEL', META, id)
    redis.call('ZREM', IDS, id)
  end
end

-- Whether the cached record is newer than `version` ('' when the write has none).
local function cached_is_newer(id, old, version)
  if version == '' or not old or redis.call('EXISTS', record_key(id)) == 0 then
    return false
  end
  local cached = cjson.decode(old).v
  return cached ~= nil and tonumber(version) < tonumber(cached)
end

-- Keeps the bucket's shared keys alive at least `ttl` ms.
local function refresh(ttl)
  extend(SEQ, ttl)
  extend(META, ttl)
  extend(IDS, ttl)
  extend(EPOCH, ttl)
end

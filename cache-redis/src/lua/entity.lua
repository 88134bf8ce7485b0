-- model-cache: the keys and index moves of one bucket of one entity.
-- Every entity script declares KEYS[1] = seq, KEYS[2] = meta hash, KEYS[3] = id zset,
-- KEYS[4] = epoch, and passes the bucket's key prefix as ARGV[1]. Per-record keys are built
-- from the prefix: they share its hash tag, so they live in the same cluster slot.
local prefix = ARGV[1]
local SEQ, META, IDS, EPOCH = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

-- A record key holds the record's cached JSON or its tombstone (see `deleted_order`).
local function record_key(id) return prefix .. ':r:' .. id end
local function lease_key(id) return prefix .. ':lease:' .. id end
local function tag_key(field, value) return prefix .. ':i:' .. field .. ':' .. value end
local function sort_key(field) return prefix .. ':s:' .. field end

local NO_ENTRIES = {t = {}, s = {}}

-- Eviction. A server short of memory deletes whole keys (any of these under `allkeys-*`, and
-- under `volatile-*` too since every key here has a TTL) while the markers relying on them may
-- survive. So that a lost key reads as lost, never as empty:
-- - the meta hash holds the field SENTINEL, whose value is the hash's incarnation; the id zset
--   and the sort zsets hold the member SENTINEL at -inf (first ascending, last descending). A
--   script finding one missing recreates it and drops every marker of the bucket: the key was
--   lost (or never existed, and then the bucket has no marker to lose).
-- - a tag set (a zset with every score 0: a small one is a listpack, a few dozen bytes, where a
--   set of strings is a hash table on Redis 7.0) holds the live member of every marker relying on it (`live_member`), added when
--   the marker is set: a set lost and recreated by a later write lacks it, so the marker's
--   query is answered again only once filled again. It also holds the clean mark `:m:<meta
--   incarnation>` while every record in it is filed there by the current meta hash (a set
--   created since and not empty, or scrubbed by a fill): entries a lost meta hash could not take out are
--   scrubbed before a fill relies on the set.
-- A record id is never empty and never contains ':', so no sentinel or mark is taken for one.
local SENTINEL = ''
local ensured = {}
local clean

local function is_record(member)
  return member ~= SENTINEL and not string.find(member, ':', 1, true)
end

-- The member a marker's tag sets hold while it relies on them: `:c:<hash>`.
local function live_member(marker)
  return string.sub(marker, #prefix + 1)
end

-- Drops every marker of the bucket: they hold the epoch they were completed in.
local function drop_markers()
  if redis.call('EXISTS', EPOCH) == 1 then redis.call('INCR', EPOCH) end
end

-- Checks that the meta hash was not lost, and sets `clean` to its clean mark.
local function ensure_meta(ttl)
  if clean then return end
  local incarnation = redis.call('HGET', META, SENTINEL)
  if not incarnation then
    incarnation = clock()
    redis.call('HSET', META, SENTINEL, incarnation)
    extend(META, ttl)
    drop_markers()
  end
  clean = ':m:' .. incarnation
end

-- Checks that an ordering zset (the ids, a sort field's) was not lost.
local function ensure_zset(key, ttl)
  if ensured[key] then return end
  ensured[key] = true
  if not redis.call('ZSCORE', key, SENTINEL) then
    redis.call('ZADD', key, '-inf', SENTINEL)
    extend(key, ttl)
    drop_markers()
  end
end

-- Index keys a script filed into: their time to live is extended once, by `refresh`, however
-- many records were filed there. `present` holds the tag sets known to exist since this
-- script added to them, so that each is checked for existence once.
local touched, present = {}, {}

-- Batching (`begin_batch`, put.lua): additions to an index key are held per key and sent as
-- one command by `flush_batch`, or before anything takes a member out of that key, so that
-- the key sees every change in the order the records were written. Only additions wait:
-- nothing the scripts read in between depends on them (the sentinels and marks are written at
-- once).
local batch

local function begin_batch() batch = {} end

-- Sends the additions held for `key`.
local function flush_key(key)
  local held = batch and batch[key]
  if not held then return end
  batch[key] = nil
  for first = 2, #held, 1000 do
    redis.call(held[1], key, unpack(held, first, math.min(first + 999, #held)))
  end
end

local function flush_batch()
  for key in pairs(batch) do flush_key(key) end
end

-- Adds `...` (members, or score/member pairs) to `key` with `command`, now or with the batch.
local function add(command, key, ...)
  if not batch then
    redis.call(command, key, ...)
    return
  end
  local held = batch[key]
  if not held then
    held = {command}
    batch[key] = held
  end
  for _, arg in ipairs({...}) do held[#held + 1] = arg end
end

-- Takes `member` out of `key` with `command`, after the additions held for it.
local function take(command, key, member)
  flush_key(key)
  redis.call(command, key, member)
end

-- Moves `id` from the index entries of meta `old` (false: none) to those of meta `new`
-- (nil: drop them), keeping the meta hash and the id zset in step.
local function move(id, old, new, ttl)
  local o = old and cjson.decode(old) or NO_ENTRIES
  local n = new and cjson.decode(new) or NO_ENTRIES
  local tags = {}
  for _, e in ipairs(n.t) do tags[tag_key(e[1], e[2])] = true end
  for _, e in ipairs(o.t) do
    local key = tag_key(e[1], e[2])
    if not tags[key] then
      take('ZREM', key, id)
      -- Emptied, the set is gone.
      present[key] = nil
    end
  end
  for key in pairs(tags) do
    if not present[key] and redis.call('EXISTS', key) == 0 then
      -- A set created now holds only what is filed from now on.
      ensure_meta(ttl)
      redis.call('ZADD', key, 0, clean)
    end
    add('ZADD', key, 0, id)
    present[key] = true
    touched[key] = true
  end
  local scored = {}
  for _, e in ipairs(n.s) do scored[e[1]] = true end
  for _, e in ipairs(o.s) do
    if not scored[e[1]] then take('ZREM', sort_key(e[1]), id) end
  end
  for _, e in ipairs(n.s) do
    local key = sort_key(e[1])
    ensure_zset(key, ttl)
    add('ZADD', key, e[2], id)
    touched[key] = true
  end
  if new then
    ensure_meta(ttl)
    ensure_zset(IDS, ttl)
    add('HSET', META, id, new)
    add('ZADD', IDS, 0, id)
  else
    take('HDEL', META, id)
    take('ZREM', IDS, id)
  end
end

-- Tombstones live in the record key, in place of the record: a record and its tombstone are
-- never both kept (writing a record replaces the tombstone; a tombstone is written over the
-- record), so a read of one key answers either. A tombstone starts with TOMBSTONE, `!`, which
-- no JSON text starts with (whitespace, `{`, `[`, `"`, `-`, a digit, `t`, `f` or `n`), so no
-- record body reads as one (`lookup` in store.rs reads them the same way). A fill's "not
-- found" is '!1': it answers reads and orders nothing (an upsert clears it). A delete the
-- source reported is '!d|<version>|<at>' (either may be empty): it answers reads and orders
-- later writes; once invalidated it is '!o|<version>|<at>': reads miss (the next one asks the
-- origin) while writes stay ordered against the delete. A tombstone keeps its own TTL (the
-- tombstone or negative lifetime; `KEEPTTL` when one turns into another).
local TOMBSTONE = '!'
local TOMBSTONE_BYTE = string.byte(TOMBSTONE)

-- Whether a record key's value (false or nil: no key) is a tombstone.
local function is_tombstone(value)
  return value and string.byte(value) == TOMBSTONE_BYTE
end

-- What a record key's value orders: the delete's kind ('d' or 'o'), version and time (the
-- strings as written), or nil (no key, a record, a fill's "not found").
local function deleted_order(value)
  if not is_tombstone(value) then return nil end
  local kind, version, at = string.match(value, '^!([do])|([^|]*)|(.*)$')
  return kind, version, at
end

-- How a write (its version and source time, '' for none) compares with a delete, as
-- `Tombstone::order` does in Rust: versions decide when both have one, else source times,
-- else nothing: 'newer', 'not-newer' or 'unordered'. Equal is not newer.
local function delete_order(deleted_version, deleted_at, version, at)
  local dv, v = tonumber(deleted_version), tonumber(version)
  if dv and v then
    if v > dv then return 'newer' end
    return 'not-newer'
  end
  local dt, t = tonumber(deleted_at), tonumber(at)
  if dt and t then
    if t > dt then return 'newer' end
    return 'not-newer'
  end
  return 'unordered'
end

-- The larger of two numbers given as strings ('' for none), as written.
local function larger(a, b)
  local x, y = tonumber(a), tonumber(b)
  if not x then return b end
  if not y then return a end
  if y > x then return b end
  return a
end

-- Whether the cached record is newer than `version` ('' when the write has none), by its meta
-- `old`. Meta outlives an expired or evicted record, so the key is checked to hold one. A key
-- with meta never holds a tombstone (remove.lua takes the id out of meta before it writes
-- one), but its first byte is what is checked: it costs what EXISTS did, reads no body, and
-- stays right whatever became of the meta hash.
local function cached_is_newer(id, old, version)
  if version == '' or not old then return false end
  local first = redis.call('GETRANGE', record_key(id), 0, 0)
  if first == '' or first == TOMBSTONE then return false end
  local cached = cjson.decode(old).v
  return cached ~= nil and tonumber(version) < tonumber(cached)
end

-- Keeps the bucket's shared keys, and the index keys filed into, alive at least `ttl` ms.
local function refresh(ttl)
  for key in pairs(touched) do extend(key, ttl) end
  touched = {}
  extend(SEQ, ttl)
  extend(META, ttl)
  extend(IDS, ttl)
  extend(EPOCH, ttl)
end

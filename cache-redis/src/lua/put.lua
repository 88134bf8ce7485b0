-- put: writes records with their index entries, each moved out of its old entries.
-- ARGV: prefix, mode ('upsert' | 'fill'), lease token, index ttl (ms),
--       then per record: id, body, ttl (ms), version ('' for none), source time (Unix
--       microseconds, '' for none), meta.
-- Answers per record: status (0 written, 1 stale version, 2 lease lost, 3 not newer than the
-- record's delete, 4 not ordered against its delete), previous meta or nil.
local mode, token, ittl = ARGV[2], ARGV[3], tonumber(ARGV[4])
-- Before reading where records were filed: a lost meta hash drops the bucket's markers.
ensure_meta(ittl)

-- Reads `command` of the keys or fields `name(id)` of every record, or of those `wanted(n)`
-- (n: the record's place in the call), in chunks (Lua's unpack is limited by its C stack).
-- Answers the values by record.
local function read_all(command, first, name, wanted)
  local values, args, at = {}, {first}, {}
  local function flush()
    for j, value in ipairs(redis.call(command, unpack(args))) do values[at[j]] = value end
    args, at = {first}, {}
  end
  for n = 1, (#ARGV - 4) / 6 do
    if not wanted or wanted(n) then
      args[#args + 1] = name(ARGV[5 + (n - 1) * 6])
      at[#at + 1] = n
      if #at == 1000 then flush() end
    end
  end
  if #at > 0 then flush() end
  return values
end

local function same(id) return id end
-- Index additions are sent once per key for the whole batch (see entity.lua).
begin_batch()
local metas = read_all('HMGET', META, same)
-- Leases are only read here and deleted at the end, so one read serves the whole batch.
local leases = mode == 'fill' and read_all('MGET', nil, lease_key)
-- The tombstones (entity.lua: one lives in its record's key). A record with meta has none
-- (remove.lua takes an id out of meta before it writes one), so only the keys of records
-- without meta are read: a warm-up's records have neither (nil), and no cached body is read
-- into the script for nothing.
local tombs = read_all('MGET', nil, record_key, function(n) return not metas[n] end)
-- The meta of the records written by this call (a record may come twice).
local written = {}
local gone = {}
local out = {}
local wrote = false
for i = 5, #ARGV, 6 do
  local id, body, ttl, version, at, meta = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local n = (i - 5) / 6 + 1
  local old = written[id]
  if old == nil then old = metas[n] end
  -- A record written earlier in this call replaced its tombstone.
  local kind, deleted_version, deleted_at = nil, nil, nil
  if written[id] == nil then kind, deleted_version, deleted_at = deleted_order(tombs[n]) end
  local status = 0
  if mode == 'fill' and leases[n] ~= token then
    status = 2
  elseif cached_is_newer(id, old, version) then
    status = 1
  elseif kind and mode == 'upsert' then
    local order = delete_order(deleted_version, deleted_at, version, at)
    if order == 'not-newer' then status = 3 elseif order == 'unordered' then status = 4 end
  elseif kind and tonumber(deleted_version) and tonumber(version)
      and tonumber(version) <= tonumber(deleted_version) then
    -- A fill read the source after the delete (its lease says so): only a version proves it
    -- read an older state.
    status = 3
  end
  if status == 0 then
    move(id, old, meta, ittl)
    redis.call('SET', record_key(id), body, 'PX', ttl)
    -- The record replaced its tombstone. A fill that succeeded has no use for its lease any
    -- more (a fill presents it once): dropped rather than left to its TTL.
    gone[#gone + 1] = lease_key(id)
    written[id] = meta
    wrote = true
  end
  out[#out + 1] = status
  out[#out + 1] = status == 0 and old
end
flush_batch()
for first = 1, #gone, 1000 do
  redis.call('DEL', unpack(gone, first, math.min(first + 999, #gone)))
end
if wrote and mode == 'upsert' then bump(SEQ, ittl) end
refresh(ittl)
return out

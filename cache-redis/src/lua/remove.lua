-- remove: takes records out of the cache with their index entries.
-- ARGV: prefix, mode ('invalidate' | 'tombstone' | 'fill-tombstone'), tombstone ttl (ms),
--       index ttl (ms), lease token (fill-tombstone), the delete's version and source time
--       (tombstone; '' for none), then the ids. See entity.lua for what a tombstone holds.
-- Answers per id: the previous meta, or nil (not cached, or a fill-tombstone whose lease was
-- revoked, which leaves the id as it is).
local mode, tomb_ttl, ittl, token = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local version, at = ARGV[6], ARGV[7]
-- Before reading where records were filed: a lost meta hash drops the bucket's markers.
ensure_meta(ittl)
local out = {}
for i = 8, #ARGV do
  local id = ARGV[i]
  if mode == 'fill-tombstone' and redis.call('GET', lease_key(id)) ~= token then
    out[#out + 1] = false
  else
    local old = redis.call('HGET', META, id)
    if old then move(id, old, nil, ittl) end
    -- The record key holds the record or its tombstone (entity.lua). One with meta holds no
    -- tombstone (this script takes the id out of meta before it writes one): only a key
    -- without is read, so that removing a record does not read its body.
    local key = record_key(id)
    local kind, deleted_version, deleted_at = nil, nil, nil
    if not old then kind, deleted_version, deleted_at = deleted_order(redis.call('GET', key)) end
    if mode == 'tombstone' then
      -- Merged with an earlier delete of the record: the larger version and time.
      local v, t = version, at
      if kind then v, t = larger(version, deleted_version), larger(at, deleted_at) end
      redis.call('SET', key, TOMBSTONE .. 'd|' .. v .. '|' .. t, 'PX', tomb_ttl)
    elseif mode == 'fill-tombstone' then
      -- A delete's tombstone keeps its order and answers reads again.
      if kind == 'o' then
        redis.call('SET', key, TOMBSTONE .. 'd|' .. deleted_version .. '|' .. deleted_at, 'KEEPTTL')
      elseif not kind then
        redis.call('SET', key, TOMBSTONE .. '1', 'PX', tomb_ttl)
      end
    elseif kind then
      -- Invalidated: the next read asks the origin; a delete's order stays until it expires.
      redis.call('SET', key, TOMBSTONE .. 'o|' .. deleted_version .. '|' .. deleted_at, 'KEEPTTL')
    else
      -- The record, or a fill's "not found", goes.
      redis.call('DEL', key)
    end
    -- A fill-tombstone's lease held (checked above) and has served its one use.
    redis.call('DEL', lease_key(id))
    out[#out + 1] = old
  end
end
if mode ~= 'fill-tombstone' then
  bump(SEQ, ittl)
  if mode == 'invalidate' then drop_markers() end
end
refresh(ittl)
return out

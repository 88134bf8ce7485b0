-- remove: takes records out of the cache with their index entries.
-- ARGV: prefix, mode ('invalidate' | 'tombstone' | 'fill-tombstone'), tombstone ttl (ms),
--       index ttl (ms), lease token (fill-tombstone), then the ids.
-- Answers per id: the previous meta, or nil (not cached, or a fill-tombstone whose lease was
-- revoked, which leaves the id as it is).
local mode, tomb_ttl, ittl, token = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
-- Before reading where records were filed: a lost meta hash drops the bucket's markers.
ensure_meta(ittl)
local out = {}
for i = 6, #ARGV do
  local id = ARGV[i]
  if mode == 'fill-tombstone' and redis.call('GET', lease_key(id)) ~= token then
    out[#out + 1] = false
  else
    local old = redis.call('HGET', META, id)
    if old then move(id, old, nil, ittl) end
    redis.call('DEL', record_key(id))
    if mode == 'invalidate' then
      redis.call('DEL', tomb_key(id), lease_key(id))
    else
      redis.call('SET', tomb_key(id), '1', 'PX', tomb_ttl)
      -- A fill-tombstone's lease held (checked above) and has served its one use.
      redis.call('DEL', lease_key(id))
    end
    out[#out + 1] = old
  end
end
if mode ~= 'fill-tombstone' then
  bump(SEQ, ittl)
  if mode == 'invalidate' then drop_markers() end
end
refresh(ittl)
return out

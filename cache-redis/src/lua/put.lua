-- put: writes records with their index entries, each moved out of its old entries.
-- ARGV: prefix, mode ('upsert' | 'fill'), lease token, index ttl (ms),
--       then per record: id, body, ttl (ms), version ('' for none), meta.
-- Answers per record: status (0 written, 1 stale version, 2 lease lost), previous meta or nil.
local mode, token, ittl = ARGV[2], ARGV[3], tonumber(ARGV[4])
-- Before reading where records were filed: a lost meta hash drops the bucket's markers.
ensure_meta(ittl)
local out = {}
local wrote = false
for i = 5, #ARGV, 5 do
  local id, body, ttl, version, meta = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local old = redis.call('HGET', META, id)
  local status = 0
  if mode == 'fill' and redis.call('GET', lease_key(id)) ~= token then
    status = 2
  elseif cached_is_newer(id, old, version) then
    status = 1
  end
  if status == 0 then
    move(id, old, meta, ittl)
    redis.call('SET', record_key(id), body, 'PX', ttl)
    redis.call('DEL', tomb_key(id))
    if mode == 'upsert' then redis.call('DEL', lease_key(id)) end
    wrote = true
  end
  out[#out + 1] = status
  out[#out + 1] = status == 0 and old
end
if wrote and mode == 'upsert' then bump(SEQ, ittl) end
refresh(ittl)
return out

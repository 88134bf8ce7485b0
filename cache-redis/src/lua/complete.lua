-- complete: stores the complete result of a filter set and marks it complete, unless the
-- bucket was written since the token. KEYS[5] = marker, KEYS[6..] = the filters' tag sets.
-- ARGV: prefix, token, index ttl (ms), then per record: id, body, ttl (ms), version, meta.
-- Answers 1 when marked complete, 0 when refused.
local token, ittl = ARGV[2], tonumber(ARGV[3])
if counter(SEQ, ittl) ~= token then return 0 end
local result = {}
for i = 4, #ARGV, 5 do
  local id, body, ttl, version, meta = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  result[id] = true
  local old = redis.call('HGET', META, id)
  if not cached_is_newer(id, old, version) then
    move(id, old, meta, ittl)
    redis.call('SET', record_key(id), body, 'PX', ttl)
    redis.call('DEL', tomb_key(id), lease_key(id))
  end
end
-- What the bucket files under these filters but the origin did not answer is forgotten, so
-- that the marked result is exactly the origin's.
local filed
if #KEYS > 5 then
  local args = {'SINTER'}
  for i = 6, #KEYS do args[#args + 1] = KEYS[i] end
  filed = redis.call(unpack(args))
else
  filed = redis.call('ZRANGE', IDS, 0, -1)
end
for _, id in ipairs(filed) do
  if not result[id] then
    move(id, redis.call('HGET', META, id), nil, ittl)
    for i = 6, #KEYS do redis.call('SREM', KEYS[i], id) end
    redis.call('DEL', record_key(id), lease_key(id))
  end
end
redis.call('SET', KEYS[5], counter(EPOCH, ittl), 'PX', ittl)
refresh(ittl)
return 1

-- unlink_held: removes record keys by what they hold, each checked and removed in one step,
-- so that a key rewritten since the caller listed it (a record replaced by its delete's
-- tombstone) goes only if it still holds what was selected. A flush of records alone never
-- takes a tombstone written meanwhile. A tombstone starts with '!' (entity.lua).
-- KEYS: record keys of one slot. ARGV[i]: what KEYS[i] may lose: 'r' (a record), 't' (a
-- tombstone) or 'rt' (either).
-- Answers per key: 0 kept, 1 a record removed, 2 a tombstone removed.
local out = {}
for i, key in ipairs(KEYS) do
  local first = redis.call('GETRANGE', key, 0, 0)
  local held
  if first == '!' then held = 't' elseif first ~= '' then held = 'r' end
  out[i] = 0
  if held and string.find(ARGV[i], held, 1, true) then
    redis.call('UNLINK', key)
    if held == 'r' then out[i] = 1 else out[i] = 2 end
  end
end
return out

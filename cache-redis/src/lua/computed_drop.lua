-- computed_drop: removes a computed value if it is still the one given (a value found, after
-- it was stored, to have been computed across a purge). KEYS[1] = value key. ARGV: value.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0

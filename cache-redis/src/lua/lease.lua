-- lease: one lease token on ids, replacing earlier leases on them.
-- ARGV: prefix, token, ttl (ms), then the ids.
for i = 4, #ARGV do
  redis.call('SET', lease_key(ARGV[i]), ARGV[2], 'PX', ARGV[3])
end
return #ARGV - 3

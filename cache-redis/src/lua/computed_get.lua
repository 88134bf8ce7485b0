-- computed_get: a computed value and the server clock (the stamp to store its
-- recomputation with). KEYS[1] = value key. Answers {value or nil, microseconds}.
return {redis.call('GET', KEYS[1]), clock()}

-- Hand back units taken by take_units.lua that no coupon got, and forget the request.
-- KEYS: 1 next, 2 free, 3 today's answers, 4 yesterday's
-- ARGV: 1 request key ("" = none), 2.. units.  A cold template stays cold.
if ARGV[1] ~= '' then
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
end
if redis.call('EXISTS', KEYS[1]) == 0 or #ARGV < 2 then return 0 end
return redis.call('RPUSH', KEYS[2], unpack(ARGV, 2))

-- Put one store into the locator index, or take it out, unless the index already holds a
-- newer version of it (two writers racing: the newest database version wins).
-- KEYS[1] geo set  KEYS[2] cards hash  KEYS[3] versions hash   (one hash tag: {stores})
-- ARGV[1] store id  ARGV[2] version  ARGV[3] '1' listed / '0' unlisted
-- ARGV[4] lng  ARGV[5] lat  ARGV[6] card JSON  ARGV[7] '1' = force (resync from the database)
local cur = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if ARGV[7] ~= '1' and cur > tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
if ARGV[3] == '1' then
  redis.call('GEOADD', KEYS[1], ARGV[4], ARGV[5], ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[6])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return 1

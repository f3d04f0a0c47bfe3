-- Apply reconcile's repair only if nothing moved since its snapshot (compare-and-set).
-- KEYS: 1 stock, 2 buyers, 3 released, 4 stream
-- ARGV: 1 observed stock, 2 observed xlen, 3 observed released count, 4 new stock,
--       5 n, then member, units triples... (units 0 = remove)
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tostring(redis.call('XLEN', KEYS[4])) ~= ARGV[2] then return 0 end
if tostring(redis.call('SCARD', KEYS[3])) ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[4], 'KEEPTTL')
local n = tonumber(ARGV[5])
local i = 6
for _ = 1, n do
  if tonumber(ARGV[i + 1]) > 0 then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  else
    redis.call('HDEL', KEYS[2], ARGV[i])
  end
  i = i + 2
end
return 1

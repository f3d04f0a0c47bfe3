-- Load a sale into Redis from the database's figures. The stock, buyers, answers and
-- released set are written only when the stock key is missing (first warm, or after
-- Redis lost its data), so a late warmer never overwrites live counters.
-- KEYS: 1 meta, 2 stock, 3 buyers, 4 reqs, 5 released, 6 stream
-- ARGV: 1 start ms, 2 end ms, 3 state, 4 per-member limit, 5 tiers (",a,b," or ""),
--       6 stock, 7 ttl ms, 8 n buyers, then member, units pairs, then n reqs, then
--       field, answer pairs, then n released, then order numbers
redis.call('HSET', KEYS[1], 'start', ARGV[1], 'end', ARGV[2], 'state', ARGV[3],
  'limit', ARGV[4], 'tiers', ARGV[5])
local ttl = tonumber(ARGV[7])
if redis.call('HEXISTS', KEYS[1], 'seq') == 0 then
  -- order numbers continue from the clock (microseconds): above any number handed out
  -- before the data was lost, unless over a million grabs a second were taken since
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'seq', t[1] .. string.format('%06d', tonumber(t[2])))
end
redis.call('PEXPIRE', KEYS[1], ttl)
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('DEL', KEYS[3], KEYS[5])
local i = 9
local n = tonumber(ARGV[8])
for _ = 1, n do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]); i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HSETNX', KEYS[4], ARGV[i], ARGV[i + 1]); i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('SADD', KEYS[5], ARGV[i]); i = i + 1
end
redis.call('SET', KEYS[2], ARGV[6], 'PX', ttl)
redis.pcall('XGROUP', 'CREATE', KEYS[6], 'fs', '0', 'MKSTREAM')
for k = 3, 6 do redis.call('PEXPIRE', KEYS[k], ttl) end
return 1

-- The leader paid: a forming group becomes joinable.
-- KEYS: 1 the group (hash), 2 joinable (zset).  ARGV: 1 group number
-- Returns 1 opened, 0 not forming (already open, or closed).
local g = redis.call('HMGET', KEYS[1], 'state', 'size', 'taken', 'exp')
if g[1] ~= 'forming' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'open')
local left = tonumber(g[2]) - tonumber(g[3])
if left > 0 then
  redis.call('ZADD', KEYS[2], string.format('%d', left * 1e13 + tonumber(g[4])), ARGV[1])
end
return 1

-- No more seats in a group (it succeeded, failed or reached its deadline); with a settlement,
-- give the activity back the reserved units the group does not keep, at most once.
-- KEYS: 1 the group (hash), 2 joinable (zset), 3 units
-- ARGV: 1 group number, 2 units the group keeps ("" = only close, settle later)
-- Returns 1 units given back now, 0 closed only (or settled before), -1 no such group.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], 'state', 'closed')
redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[2] == '' then return 0 end
if redis.call('HSETNX', KEYS[1], 'settled', ARGV[2]) == 0 then return 0 end
local back = tonumber(redis.call('HGET', KEYS[1], 'size')) - tonumber(ARGV[2])
if back > 0 and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('INCRBY', KEYS[3], string.format('%d', back))
end
return 1

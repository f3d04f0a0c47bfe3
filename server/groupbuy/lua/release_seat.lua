-- Free a seat whose order was cancelled, refunded before the group formed, or refused by the
-- database, at most once per (order, generation).
-- KEYS: 1 the group (hash), 2 the group's members, 3 buyers, 4 released (set), 5 joinable
-- ARGV: 1 order number, 2 member id, 3 seat number, 4 generation, 5 group number
-- Returns 1 freed, 0 already freed (or the seat is no longer this order's), -1 not warm.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('SADD', KEYS[4], ARGV[1] .. ':' .. ARGV[4]) == 0 then return 0 end
local field = 's' .. ARGV[3]
if redis.call('HGET', KEYS[1], field) ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], field)
local taken = redis.call('HINCRBY', KEYS[1], 'taken', -1)
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[2], ARGV[2]) end
if redis.call('HINCRBY', KEYS[3], ARGV[2], -1) <= 0 then redis.call('HDEL', KEYS[3], ARGV[2]) end
local g = redis.call('HMGET', KEYS[1], 'state', 'size', 'exp')
if g[1] == 'open' then
  redis.call('ZADD', KEYS[5], string.format('%d', (tonumber(g[2]) - taken) * 1e13 + tonumber(g[3])),
    ARGV[5])
end
return 1

-- A payment landed on an order whose seat was freed (the order was cancelled): take a seat
-- for it again if the group is still open, has one free and the member has none.
-- KEYS: 1 the group (hash), 2 the group's members, 3 buyers, 4 released (set), 5 joinable,
--       6 orders, 7 meta
-- ARGV: 1 order number, 2 member id, 3 seat number it had, 4 generation it had, 5 group no
-- Returns "KEPT|seat|gen" (the free had not reached Redis yet: stopped, seat kept),
-- "OK|seat|gen" (a seat taken again), or an error word.
local order_no, member = ARGV[1], ARGV[2]
if redis.call('EXISTS', KEYS[1]) == 0 then return 'NOT_WARM' end
local gen = tonumber(ARGV[4]) + 1
local rec = ARGV[5] .. '|' .. member .. '|'
if redis.call('SADD', KEYS[4], order_no .. ':' .. ARGV[4]) == 1 then
  -- The free of this generation never ran: block it; the seat is still this order's.
  if redis.call('HGET', KEYS[1], 's' .. ARGV[3]) == order_no then
    redis.call('HSET', KEYS[6], order_no, rec .. ARGV[3] .. '|' .. gen)
    return 'KEPT|' .. ARGV[3] .. '|' .. gen
  end
end
local g = redis.call('HMGET', KEYS[1], 'state', 'size', 'taken', 'exp')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if g[1] ~= 'open' or now >= tonumber(g[4]) then return 'GROUP_CLOSED' end
local size = tonumber(g[2])
if tonumber(g[3]) >= size then return 'GROUP_FULL' end
if redis.call('HEXISTS', KEYS[2], member) == 1 then return 'ALREADY_IN_GROUP' end
local limit = tonumber(redis.call('HGET', KEYS[7], 'limit') or '1')
if tonumber(redis.call('HGET', KEYS[3], member) or '0') >= limit then return 'LIMIT_REACHED' end
local seat
for i = 1, size do
  if redis.call('HEXISTS', KEYS[1], 's' .. i) == 0 then seat = i break end
end
local taken = redis.call('HINCRBY', KEYS[1], 'taken', 1)
redis.call('HSET', KEYS[1], 's' .. seat, order_no)
redis.call('HSET', KEYS[2], member, order_no)
redis.call('HINCRBY', KEYS[3], member, 1)
redis.call('HSET', KEYS[6], order_no, rec .. seat .. '|' .. gen)
if taken >= size then redis.call('ZREM', KEYS[5], ARGV[5])
else redis.call('ZADD', KEYS[5], string.format('%d', (size - taken) * 1e13 + tonumber(g[4])), ARGV[5]) end
return 'OK|' .. seat .. '|' .. gen

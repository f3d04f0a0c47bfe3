-- Load an activity into Redis from the database (at creation, or when a script found its keys
-- missing after Redis lost them). Does nothing if the activity is already there.
-- KEYS: 1 meta, 2 units, 3 buyers, 4 joinable, 5 orders, then for each live group: its hash
--       and its members hash
-- ARGV: 1 start, 2 end, 3 state, 4 size, 5 limit, 6 minutes, 7 pay_ms, 8 prefix, 9 seq,
--       10 units left, 11 number of buyers, then member/count pairs, then per group:
--       group number, state, size, exp, leader, seat count, then seat/order/member/gen
-- Returns 1 loaded, 0 already there.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local a = ARGV
redis.call('HSET', KEYS[1], 'start', a[1], 'end', a[2], 'state', a[3], 'size', a[4],
  'limit', a[5], 'minutes', a[6], 'pay_ms', a[7], 'prefix', a[8], 'seq', a[9])
redis.call('SET', KEYS[2], a[10])
redis.call('DEL', KEYS[3], KEYS[4])
local i = 12
for _ = 1, tonumber(a[11]) do
  redis.call('HSET', KEYS[3], a[i], a[i + 1])
  i = i + 2
end
local k = 6
while i <= #a do
  local no, state, size, exp, leader, n = a[i], a[i + 1], a[i + 2], a[i + 3], a[i + 4],
    tonumber(a[i + 5])
  i = i + 6
  local g, gm = KEYS[k], KEYS[k + 1]
  k = k + 2
  redis.call('DEL', g, gm)
  redis.call('HSET', g, 'state', state, 'size', size, 'taken', n, 'exp', exp, 'leader', leader)
  for _ = 1, n do
    local seat, order_no, member, gen = a[i], a[i + 1], a[i + 2], a[i + 3]
    i = i + 4
    redis.call('HSET', g, 's' .. seat, order_no)
    redis.call('HSET', gm, member, order_no)
    redis.call('HSET', KEYS[5], order_no, no .. '|' .. member .. '|' .. seat .. '|' .. gen)
  end
  local left = tonumber(size) - n
  if state == 'open' and left > 0 then
    redis.call('ZADD', KEYS[4], string.format('%d', left * 1e13 + tonumber(exp)), no)
  end
end
return 1

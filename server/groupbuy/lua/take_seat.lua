-- Take a seat in a group of a group-buy activity, atomically, in one round trip: open a new
-- group (the leader's seat) or join an open one.
-- KEYS (all under the activity's hash tag gb:{id}):
--   1 meta (hash: start, end (ms), state, size, limit, minutes, pay_ms, prefix, seq)
--   2 units (units not reserved by a group)   3 the group (hash: state, size, taken, exp,
--   leader, s1..sN = order numbers)   4 the group's members (hash member -> order number)
--   5 buyers (hash member -> live seats in the activity)   6 reqs (hash member:key -> answer)
--   7 orders (hash order number -> "group|member|seat|gen[|deadline|exp|mode|scene]")   8 stream   9 joinable (zset)
-- ARGV: 1 mode ("open" | "join"), 2 group number, 3 member id, 4 idempotency key, 5 scene
-- Returns "OK|<answer>" or "R|<answer>" (a replay), answer = group|order|seat|deadline|exp|mode,
-- or an error word (GROUP_FULL carries "|<other joinable group numbers, comma-separated>").
local mode, group_no, member, scene = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local rfield = member .. ':' .. ARGV[4]
local prev = redis.call('HGET', KEYS[6], rfield)
if prev then return 'R|' .. prev end
local meta = redis.call('HMGET', KEYS[1], 'start', 'end', 'state', 'size', 'limit',
  'minutes', 'pay_ms', 'prefix')
local units = redis.call('GET', KEYS[2])
if not meta[1] or not units then return 'NOT_WARM' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if meta[3] ~= 'on' then return 'ENDED' end
if now < tonumber(meta[1]) then return 'NOT_STARTED' end
local ends = tonumber(meta[2])
if now >= ends then return 'ENDED' end
local size, exp, seat
if mode == 'open' then
  size = tonumber(meta[4])
  if redis.call('EXISTS', KEYS[3]) == 1 then return 'EXISTS' end
  if tonumber(redis.call('HGET', KEYS[5], member) or '0') >= tonumber(meta[5]) then
    return 'LIMIT_REACHED'
  end
  -- A new group reserves the units all its seats need: it can never fail for want of units.
  if tonumber(units) < size then return 'SOLD_OUT' end
  redis.call('DECRBY', KEYS[2], meta[4])
  exp = math.min(now + tonumber(meta[6]) * 60000, ends)
  seat = 1
  redis.call('HSET', KEYS[3], 'state', 'forming', 'size', meta[4], 'taken', '0',
    'exp', string.format('%d', exp), 'leader', member)
else
  local g = redis.call('HMGET', KEYS[3], 'state', 'size', 'taken', 'exp')
  if not g[1] then return 'NO_GROUP' end
  exp = tonumber(g[4])
  if g[1] == 'closed' or now >= exp then return 'GROUP_CLOSED' end
  if g[1] ~= 'open' then return 'GROUP_FORMING' end
  if redis.call('HEXISTS', KEYS[4], member) == 1 then return 'ALREADY_IN_GROUP' end
  size = tonumber(g[2])
  if tonumber(g[3]) >= size then
    -- Others to join instead: fewest seats left first (score = seats left * 1e13 + exp).
    local others = {}
    local cands = redis.call('ZRANGEBYSCORE', KEYS[9], '1', '+inf', 'WITHSCORES', 'LIMIT', 0, 10)
    for i = 1, #cands, 2 do
      local e = tonumber(cands[i + 1]) % 1e13
      if cands[i] ~= group_no and e > now and #others < 3 then others[#others + 1] = cands[i] end
    end
    return 'GROUP_FULL|' .. table.concat(others, ',')
  end
  if tonumber(redis.call('HGET', KEYS[5], member) or '0') >= tonumber(meta[5]) then
    return 'LIMIT_REACHED'
  end
  for i = 1, size do
    if redis.call('HEXISTS', KEYS[3], 's' .. i) == 0 then seat = i break end
  end
end
local order_no = meta[8] .. string.format('%d', redis.call('HINCRBY', KEYS[1], 'seq', 1))
local taken = redis.call('HINCRBY', KEYS[3], 'taken', 1)
redis.call('HSET', KEYS[3], 's' .. seat, order_no)
if mode == 'join' then
  if taken >= size then redis.call('ZREM', KEYS[9], group_no)
  else redis.call('ZADD', KEYS[9], string.format('%d', (size - taken) * 1e13 + exp), group_no) end
end
redis.call('HSET', KEYS[4], member, order_no)
redis.call('HINCRBY', KEYS[5], member, 1)
local deadline = math.min(now + tonumber(meta[7]), exp)
local answer = group_no .. '|' .. order_no .. '|' .. seat .. '|' .. string.format('%d', deadline)
  .. '|' .. string.format('%d', exp) .. '|' .. mode
redis.call('HSET', KEYS[6], rfield, answer)
redis.call('HSET', KEYS[7], order_no, group_no .. '|' .. member .. '|' .. seat .. '|0|'
  .. string.format('%d', deadline) .. '|' .. string.format('%d', exp) .. '|' .. mode .. '|'
  .. scene)
redis.call('XADD', KEYS[8], '*', 'mode', mode, 'g', group_no, 'o', order_no, 'm', member,
  's', seat, 'd', string.format('%d', deadline), 'x', string.format('%d', exp), 'k', ARGV[4],
  'c', scene)
return 'OK|' .. answer

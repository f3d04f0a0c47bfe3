-- Claim one unit of a template for one member, within the member's limit and rate, in one
-- round trip. Atomic; a replayed request key gets the first answer and takes nothing.
-- KEYS: 1 next (the lowest unit never handed out; missing = cold, warm from the database),
--       2 free (list of units handed back), 3 members (hash member -> claims held),
--       4 today's answers (hash "member:key" -> "seq:unit"), 5 yesterday's,
--       6 this second's claim counters (hash member -> claims).  One hash tag: cp:{template}.
-- ARGV: 1 total, 2 per-member limit, 3 claims a member may send a second (these three are
--       the same for every call of a template), 4 member, 5 request key ("" = none)
-- Returns "OK|seq|unit", "R|seq|unit" (a replay), "COLD", "SOLD_OUT", "LIMIT|held", "RATE".
-- seq is the member's n-th claim of the template; unit its number in 1..total.
local member, req = ARGV[4], ARGV[5]
local field = member .. ':' .. req
if req ~= '' then
  local prev = redis.call('HGET', KEYS[4], field) or redis.call('HGET', KEYS[5], field)
  if prev then return 'R|' .. prev end
end
local nxt = redis.call('GET', KEYS[1])
if not nxt then return 'COLD' end
local rate = redis.call('HINCRBY', KEYS[6], member, 1)
if rate == 1 then redis.call('PEXPIRE', KEYS[6], 2000) end
if rate > tonumber(ARGV[3]) then return 'RATE' end
local held = redis.call('HGET', KEYS[3], member)
if held and tonumber(held) >= tonumber(ARGV[2]) then return 'LIMIT|' .. held end
local total = tonumber(ARGV[1])
local unit = redis.call('LPOP', KEYS[2])
while unit and tonumber(unit) > total do unit = redis.call('LPOP', KEYS[2]) end
if not unit then
  if tonumber(nxt) > total then return 'SOLD_OUT' end
  unit = nxt
  redis.call('INCR', KEYS[1])
end
local answer = redis.call('HINCRBY', KEYS[3], member, 1) .. ':' .. unit
if req ~= '' then
  redis.call('HSET', KEYS[4], field, answer)
  redis.call('EXPIRE', KEYS[4], 172800)
end
return 'OK|' .. answer

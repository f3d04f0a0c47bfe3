-- Take flash-sale stock for one member, atomically, in one round trip.
-- KEYS: 1 meta (hash), 2 stock (int), 3 buyers (hash member -> units), 4 reqs (hash
--       member:key -> "order_no|qty"), 5 stream (reservations), 6 this second's rate
--       counters (hash "m<member>" / "i<address>" -> grabs).  All share the hash tag fs:{id}.
-- ARGV: 1 order number prefix ("FS<id>-"), 2 member grabs/s, 3 address grabs/s (these
--       three are the same for every call of a sale), 4 member id, 5 idempotency key,
--       6 quantity, 7 member tier, 8 address
-- Returns "OK|<order_no>", "R|<order_no>|<qty>" (replay), or an error word.
-- Order numbers are the prefix and a per-sale sequence (meta.seq, started from the clock
-- in microseconds at every warm, so numbers never repeat after Redis lost its data).
local member = ARGV[4]
local rfield = member .. ':' .. ARGV[5]
local prev = redis.call('HGET', KEYS[4], rfield)
if prev then
  return 'R|' .. prev
end
local meta = redis.call('HMGET', KEYS[1], 'start', 'end', 'state', 'limit', 'tiers')
local stock = redis.call('GET', KEYS[2])
if not meta[1] or not stock then
  -- never read a missing stock key as 0 or as full: the caller warms it from the database
  return 'NOT_WARM'
end
-- One hash per second for every member's and address's count: no key per member to
-- create and expire each second.
local by_member = redis.call('HINCRBY', KEYS[6], 'm' .. member, 1)
local by_address = redis.call('HINCRBY', KEYS[6], 'i' .. ARGV[8], 1)
if by_address == 1 then redis.call('PEXPIRE', KEYS[6], 2000) end
if by_member > tonumber(ARGV[2]) then return 'RATE_MEMBER' end
if by_address > tonumber(ARGV[3]) then return 'RATE_IP' end
if meta[3] ~= 'on' then return 'CLOSED' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now < tonumber(meta[1]) then return 'NOT_STARTED' end
if now >= tonumber(meta[2]) then return 'ENDED' end
if meta[5] and meta[5] ~= '' then
  if ARGV[7] == '' then return 'NEED_TIER' end
  if not string.find(meta[5], ',' .. ARGV[7] .. ',', 1, true) then return 'TIER' end
end
-- Units go to Redis as the caller's string (ARGV[6]): a Lua number handed to redis.call or
-- concatenated is formatted with printf's floating-point code, a cost of its own per call.
local qty_s = ARGV[6]
local qty = tonumber(qty_s)
stock = tonumber(stock)
if stock <= 0 then return 'SOLD_OUT' end
if stock < qty then return 'NOT_ENOUGH' end
local held = redis.call('HINCRBY', KEYS[3], member, qty_s)
if held > tonumber(meta[4]) then
  if held == qty then redis.call('HDEL', KEYS[3], member)
  else redis.call('HINCRBY', KEYS[3], member, '-' .. qty_s) end
  return 'LIMIT_REACHED'
end
local order_no = ARGV[1] .. string.format('%d', redis.call('HINCRBY', KEYS[1], 'seq', 1))
redis.call('DECRBY', KEYS[2], qty_s)
redis.call('HSET', KEYS[4], rfield, order_no .. '|' .. qty_s)
redis.call('XADD', KEYS[5], '*', 'o', order_no, 'm', member, 'q', qty_s, 'k', ARGV[5])
return 'OK|' .. order_no

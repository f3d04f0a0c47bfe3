-- Take flash-sale stock for one member, atomically, in one round trip.
-- KEYS: 1 meta (hash), 2 stock (int), 3 buyers (hash member -> units), 4 reqs (hash
--       member:key -> "order_no|qty"), 5 stream (reservations), 6 member rate counter,
--       7 address rate counter.  All share the hash tag fs:{id}.
-- ARGV: 1 member id, 2 idempotency key, 3 quantity, 4 order number prefix ("FS<id>-"),
--       5 member tier, 6 member grabs/s, 7 address grabs/s
-- Returns "OK|<order_no>", "R|<order_no>|<qty>" (replay), or an error word.
-- Order numbers are the prefix and a per-sale sequence (meta.seq, started from the clock
-- in microseconds at every warm, so numbers never repeat after Redis lost its data).
local member = ARGV[1]
local rfield = member .. ':' .. ARGV[2]
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
local n = redis.call('INCR', KEYS[6])
if n == 1 then redis.call('PEXPIRE', KEYS[6], 1000) end
if n > tonumber(ARGV[6]) then return 'RATE_MEMBER' end
n = redis.call('INCR', KEYS[7])
if n == 1 then redis.call('PEXPIRE', KEYS[7], 1000) end
if n > tonumber(ARGV[7]) then return 'RATE_IP' end
if meta[3] ~= 'on' then return 'CLOSED' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now < tonumber(meta[1]) then return 'NOT_STARTED' end
if now >= tonumber(meta[2]) then return 'ENDED' end
if meta[5] and meta[5] ~= '' then
  if ARGV[5] == '' then return 'NEED_TIER' end
  if not string.find(meta[5], ',' .. ARGV[5] .. ',', 1, true) then return 'TIER' end
end
local qty = tonumber(ARGV[3])
stock = tonumber(stock)
if stock <= 0 then return 'SOLD_OUT' end
if stock < qty then return 'NOT_ENOUGH' end
local had = tonumber(redis.call('HGET', KEYS[3], member) or '0')
if had + qty > tonumber(meta[4]) then return 'LIMIT_REACHED' end
local order_no = ARGV[4] .. string.format('%.0f', redis.call('HINCRBY', KEYS[1], 'seq', 1))
redis.call('DECRBY', KEYS[2], qty)
redis.call('HSET', KEYS[3], member, had + qty)
redis.call('HSET', KEYS[4], rfield, order_no .. '|' .. qty)
redis.call('XADD', KEYS[5], '*', 'o', order_no, 'm', member, 'q', qty, 'k', ARGV[2])
return 'OK|' .. order_no

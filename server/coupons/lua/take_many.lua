-- Take up to ARGV[1] units at once (a campaign batch); returns how many were taken.
-- KEYS[1] stock.  Returns -1 when cold (warm first).
local stock = redis.call('GET', KEYS[1])
if not stock then return -1 end
local n = math.min(tonumber(ARGV[1]), tonumber(stock))
if n <= 0 then return 0 end
redis.call('DECRBY', KEYS[1], n)
return n

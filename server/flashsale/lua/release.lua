-- Give a released reservation's units and the member's quota back, at most once.
-- KEYS: 1 stock, 2 buyers, 3 released (set of order numbers already given back)
-- ARGV: 1 order number, 2 member id, 3 quantity
-- Returns 1 applied, 0 already applied, -1 not warm (left for the sweeper: warming
-- computes the stock from the database, which already counts this release).
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('SADD', KEYS[3], ARGV[1]) == 0 then return 0 end
local qty = tonumber(ARGV[3])
redis.call('INCRBY', KEYS[1], qty)
local left = redis.call('HINCRBY', KEYS[2], ARGV[2], -qty)
if left <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
return 1

-- A consistent picture of one sale's Redis state, for reconcile.
-- KEYS: 1 stock, 2 buyers, 3 released, 4 stream
-- Returns {stock or false, buyers flat list, released members, stream entries, xlen}
local stock = redis.call('GET', KEYS[1])
return {stock, redis.call('HGETALL', KEYS[2]), redis.call('SMEMBERS', KEYS[3]),
  redis.call('XRANGE', KEYS[4], '-', '+'), redis.call('XLEN', KEYS[4])}

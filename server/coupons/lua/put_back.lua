-- Return N units of stock taken by take_many.lua that the database did not use.
-- KEYS[1] stock   ARGV[1] n.   A cold counter stays cold (the warm-up reads the database).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('INCRBY', KEYS[1], tonumber(ARGV[1]))

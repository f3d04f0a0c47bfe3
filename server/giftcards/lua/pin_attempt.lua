-- PIN attempts of a card or of a member (KEYS[1]), counted BEFORE the PIN is looked at, so
-- concurrent tries cannot slip past the limit (a check-then-count would let a burst
-- through). ARGV[1]: +1 (a try) or -1 (a right PIN takes its try back); ARGV[2]: window
-- seconds, starting at the first try. Returns the count. (EXPIRE without NX: Redis 6.2.)
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n <= 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
if redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return n

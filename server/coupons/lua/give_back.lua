-- Undo one claim the database did not keep: the member's count down, the request forgotten
-- (a retry is a fresh attempt), and the unit back on the free list unless it is taken.
-- KEYS: 1 next, 2 free, 3 members, 4 today's answers, 5 yesterday's
-- ARGV: 1 member, 2 request key ("" = none), 3 the unit ("" = another coupon has it)
-- A cold template is left cold: its warm-up reads the database.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[3] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[3]) end
local left = redis.call('HINCRBY', KEYS[3], ARGV[1], -1)
if left <= 0 then redis.call('HDEL', KEYS[3], ARGV[1]) end
if ARGV[2] ~= '' then
  local field = ARGV[1] .. ':' .. ARGV[2]
  redis.call('HDEL', KEYS[4], field)
  redis.call('HDEL', KEYS[5], field)
end
return 1

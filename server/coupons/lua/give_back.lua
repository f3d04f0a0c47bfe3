-- Undo one take (the database refused the unit): stock back, the subject's count down,
-- the request key forgotten so a retry is a fresh attempt.
-- KEYS[1] stock   KEYS[2] per-subject hash   KEYS[3] request hash
-- ARGV[1] subject   ARGV[2] request key ("" = none)   ARGV[3] "1" = also return the stock unit
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[3] == '1' then redis.call('INCR', KEYS[1]) end
local left = redis.call('HINCRBY', KEYS[2], ARGV[1], -1)
if left <= 0 then redis.call('HDEL', KEYS[2], ARGV[1]) end
if ARGV[2] ~= '' then redis.call('HDEL', KEYS[3], ARGV[1] .. ':' .. ARGV[2]) end
return 1

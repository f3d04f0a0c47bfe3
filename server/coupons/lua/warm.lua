-- Load a counter from the database, only if it is not there yet (another worker may have
-- warmed it a moment ago, and claims since then must not be overwritten).
-- KEYS[1] stock   KEYS[2] per-subject hash
-- ARGV[1] remaining stock (from the database: total - handed out, never the configured total)
-- ARGV[2..] subject, count, subject, count, ...
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('SET', KEYS[1], ARGV[1])
return 1

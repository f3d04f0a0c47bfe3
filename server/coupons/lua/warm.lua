-- Finish a warm-up from the database, unless another one finished first (claims made since
-- then must not be overwritten). The caller staged the free units and the members' counts
-- under keys of its own, so a big template loads in chunks, not in one blocking call.
-- KEYS: 1 next, 2 free, 3 members, 4 staged free, 5 staged members
-- ARGV: 1 next (one past the highest unit the database holds)
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DEL', KEYS[4], KEYS[5])
  return 0
end
redis.call('DEL', KEYS[2], KEYS[3])
if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('RENAME', KEYS[4], KEYS[2]) end
if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('RENAME', KEYS[5], KEYS[3]) end
redis.call('SET', KEYS[1], ARGV[1])
return 1

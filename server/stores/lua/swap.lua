-- Swap a freshly built index in, in one step: readers see the old index or the new one,
-- never half of each. A part the build left empty (no store listed) is dropped.
-- KEYS: live geo, cards, versions, then their built copies in the same order, then the
-- built marker (all under one hash tag, so one slot). ARGV[1]: when the build started.
for i = 1, 3 do
  if redis.call('EXISTS', KEYS[i + 3]) == 1 then
    redis.call('RENAME', KEYS[i + 3], KEYS[i])
  else
    redis.call('DEL', KEYS[i])
  end
end
redis.call('SET', KEYS[7], ARGV[1])
return 1

-- Nearest stores with their cards, in one round trip.
-- KEYS[1] geo set  KEYS[2] cards hash  KEYS[3] built marker   (one hash tag: {stores})
-- ARGV[1] lng  ARGV[2] lat  ARGV[3] radius (m)  ARGV[4] count (0 = all in the radius)
-- Returns {0} when the index was never built (or was lost), else
-- {1, id1, dist1, card1, id2, dist2, card2, ...} nearest first.
if redis.call('EXISTS', KEYS[3]) == 0 then
  return {0}
end
local hits
if tonumber(ARGV[4]) > 0 then
  hits = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[1], ARGV[2],
    'BYRADIUS', ARGV[3], 'm', 'ASC', 'COUNT', ARGV[4], 'WITHDIST')
else
  hits = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[1], ARGV[2],
    'BYRADIUS', ARGV[3], 'm', 'ASC', 'WITHDIST')
end
local out = {1}
if #hits == 0 then
  return out
end
local ids = {}
for i, hit in ipairs(hits) do
  ids[i] = hit[1]
end
local cards = redis.call('HMGET', KEYS[2], unpack(ids))
for i, hit in ipairs(hits) do
  out[#out + 1] = hit[1]
  out[#out + 1] = hit[2]
  out[#out + 1] = cards[i]
end
return out

-- Take one unit of stock for one subject, within the subject's limit. Atomic; replay-safe.
-- A shared primitive: any "stock + per-member limit" (coupon templates, flash sales) fits it.
-- KEYS[1] stock counter    (e.g. cp:{42}:stock)
-- KEYS[2] per-subject hash (e.g. cp:{42}:members)   subject -> units taken
-- KEYS[3] request hash     (e.g. cp:{42}:reqs)      subject:request-key -> sequence taken
-- ARGV[1] subject   ARGV[2] limit   ARGV[3] request key ("" = none)
-- Returns {code, n}: 1 taken (n = the subject's sequence number), 2 replay (n = first answer's
-- sequence), -1 cold (not warmed: load from the database, then retry), -2 sold out,
-- -3 limit reached (n = units the subject holds).
local subject, limit, req = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if req ~= '' then
  local prev = redis.call('HGET', KEYS[3], subject .. ':' .. req)
  if prev then return {2, tonumber(prev)} end
end
local stock = redis.call('GET', KEYS[1])
if not stock then return {-1, 0} end
local have = tonumber(redis.call('HGET', KEYS[2], subject) or '0')
if have >= limit then return {-3, have} end
if tonumber(stock) <= 0 then return {-2, 0} end
redis.call('DECR', KEYS[1])
local seq = redis.call('HINCRBY', KEYS[2], subject, 1)
if req ~= '' then redis.call('HSET', KEYS[3], subject .. ':' .. req, seq) end
return {1, seq}

-- Take up to n units at once (a campaign batch, a grant); a replayed request key gets the
-- units it got the first time (a batch resumed after a crash reuses them).
-- KEYS: 1 next, 2 free, 3 today's answers, 4 yesterday's
-- ARGV: 1 total, 2 n, 3 request key ("" = none)
-- Returns "COLD", or "start:count:u1,u2,..": units start..start+count-1 and the listed ones
-- from the free list.
local req = ARGV[3]
if req ~= '' then
  local prev = redis.call('HGET', KEYS[3], req) or redis.call('HGET', KEYS[4], req)
  if prev then return prev end
end
local nxt = redis.call('GET', KEYS[1])
if not nxt then return 'COLD' end
local total, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local got = {}
while #got < n do
  local u = redis.call('LPOP', KEYS[2])
  if not u then break end
  if tonumber(u) <= total then got[#got + 1] = u end
end
local start = tonumber(nxt)
local count = math.max(0, math.min(n - #got, total - start + 1))
if count > 0 then redis.call('INCRBY', KEYS[1], count) end
local answer = nxt .. ':' .. count .. ':' .. table.concat(got, ',')
if req ~= '' then
  redis.call('HSET', KEYS[3], req, answer)
  redis.call('EXPIRE', KEYS[3], 172800)
end
return answer

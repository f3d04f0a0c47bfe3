-- Units not handed out: total - (next - 1) + the free list. KEYS: 1 next, 2 free; ARGV: 1 total
-- Returns -1 when cold.
local nxt = redis.call('GET', KEYS[1])
if not nxt then return -1 end
return math.max(0, tonumber(ARGV[1]) - tonumber(nxt) + 1) + redis.call('LLEN', KEYS[2])

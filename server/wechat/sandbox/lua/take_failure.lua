-- A switched-on failure for this call, if any. KEYS[1]: the failures hash; ARGV: the fields to
-- look at, most specific first ("api|openid", "api", "*"). A rule is {"errcode", "times"}
-- where times -1 means until cleared; otherwise each call uses one up.
for _, fieldname in ipairs(ARGV) do
  local raw = redis.call('HGET', KEYS[1], fieldname)
  if raw then
    local rule = cjson.decode(raw)
    local times = tonumber(rule['times'])
    if times == -1 then
      return rule['errcode']
    end
    if times and times > 0 then
      times = times - 1
      if times == 0 then
        redis.call('HDEL', KEYS[1], fieldname)
      else
        rule['times'] = times
        redis.call('HSET', KEYS[1], fieldname, cjson.encode(rule))
      end
      return rule['errcode']
    end
    redis.call('HDEL', KEYS[1], fieldname)
  end
end
return false

-- A revocation: the key verify_access reads and the news RevocationWatch hears, together,
-- so a revocation is never recorded without being announced. (A script rather than MULTI:
-- a Redis Cluster client cannot send MULTI; a cluster carries the PUBLISH to every node.)
-- KEYS[1] the revocation key; ARGV: value, ttl seconds, channel, news
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1

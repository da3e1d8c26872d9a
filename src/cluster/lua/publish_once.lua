-- A room push with its msgID: one script, one round trip.
-- KEYS[1] the msgID key (one Redis server: <prefix>msgid:<msgID>; a Redis
-- Cluster: {<prefix><app>/0~n}:msgid:<msgID>, in the room channel's slot):
-- set first (SET NX PX ARGV[1]); when it exists, nothing is published and -1
-- is returned.
-- ARGV[1] msgID TTL in ms, ARGV[2] room channel (<prefix>ch:room:<app>; a
-- Redis Cluster: bucket 0's {<prefix><app>/0~n}:ch:room), ARGV[3] payload
-- (JSON), ARGV[4] PUBLISH or SPUBLISH
-- Returns the number of subscribers that got it, or -1 (duplicate).
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  return -1
end
return redis.call(ARGV[4] or 'PUBLISH', ARGV[2], ARGV[3])

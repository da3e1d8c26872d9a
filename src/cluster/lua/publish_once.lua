-- A room push with its msgID, on one Redis server (on a Redis Cluster the
-- msgID key is in another slot than the room channel: SET NX, then SPUBLISH).
-- KEYS[1] the msgID key <prefix>msgid:<msgID>: set first (SET NX PX ARGV[1]);
-- when it exists, nothing is published and -1 is returned.
-- ARGV[1] msgID TTL in ms, ARGV[2] room channel <prefix>ch:room:<app>,
-- ARGV[3] payload (JSON)
-- Returns the number of subscribers that got it (PUBLISH), or -1 (duplicate).
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  return -1
end
return redis.call('PUBLISH', ARGV[2], ARGV[3])

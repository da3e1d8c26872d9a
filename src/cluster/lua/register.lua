-- A node's registration (at start, after a reconnect, and each heartbeat):
-- its expiry in the nodes key.
-- KEYS[1] nodes zset <prefix>nodes (score: expiry, ms since the epoch)
-- ARGV[1] now (ms), ARGV[2] this node's expiry (ms), ARGV[3] node id
-- Returns {1 when the node was absent or expired (it was, or is being,
-- reaped: its users must be published again with `enter`) else 0}.
local score = redis.call('ZSCORE', KEYS[1], ARGV[3])
local rejoined = 0
if not score or tonumber(score) < tonumber(ARGV[1]) then rejoined = 1 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
return {rejoined}

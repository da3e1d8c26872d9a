-- Routes a push to the nodes holding a user: one PUBLISH per such node, on
-- that node's own channel (cost independent of the number of nodes).
-- KEYS[1] user hash <prefix>user:<app>:<user>
-- KEYS[2] (optional) the msgID key (one Redis server: <prefix>msgid:<msgID>;
-- a Redis Cluster: in the user's bucket, <bucket tag>:msgid:<msgID>): set
-- first (SET NX PX ARGV[4]); when it exists, nothing is published and -1 is
-- returned.
-- ARGV[1] node channel prefix (<prefix>ch:node:; Redis Cluster: the room's
-- {<prefix><app>}:ch:node:, in the user's slot), ARGV[2] payload (JSON),
-- ARGV[3] PUBLISH or SPUBLISH, ARGV[4] msgID TTL in ms (with KEYS[2])
-- Returns the number of nodes the push was published to, or -1 (duplicate).
if KEYS[2] and not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[4]) then
  return -1
end
local nodes = redis.call('HKEYS', KEYS[1])
for _, node in ipairs(nodes) do
  redis.call(ARGV[3] or 'PUBLISH', ARGV[1] .. node, ARGV[2])
end
return #nodes

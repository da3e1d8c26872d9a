-- Routes a push to the nodes holding a user: one PUBLISH per such node, on
-- that node's own channel (cost independent of the number of nodes).
-- KEYS[1] user hash <prefix>user:<app>:<user>
-- ARGV[1] node channel prefix (<prefix>ch:node:; Redis Cluster: the room's
-- {<prefix><app>}:ch:node:, in the user's slot), ARGV[2] payload (JSON),
-- ARGV[3] PUBLISH or SPUBLISH
-- Returns the number of nodes the push was published to.
local nodes = redis.call('HKEYS', KEYS[1])
for _, node in ipairs(nodes) do
  redis.call(ARGV[3] or 'PUBLISH', ARGV[1] .. node, ARGV[2])
end
return #nodes

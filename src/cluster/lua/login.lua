-- A node's first connection of a user logged in: record the user on this node
-- and, if no other node has the user, add it to the room and announce `enter`.
-- KEYS[1] user hash      <prefix>user:<app>:<user>   (field: node id)
-- KEYS[2] room set       <prefix>room:<app>          (members: userIDs)
-- KEYS[3] node users set <prefix>node:<id>:users     (members: <app>:<user>)
-- ARGV[1] node id, ARGV[2] "<app>:<user>", ARGV[3] userID,
-- ARGV[4] room channel, ARGV[5] enter payload (JSON), ARGV[6] "1" to announce,
-- ARGV[7] largest room announced in (0 = any size),
-- ARGV[8] PUBLISH (one Redis server) or SPUBLISH (Redis Cluster: every key and
-- the channel share the room's hash tag)
-- Returns 1 when the user came online cluster-wide, else 0.
local added = redis.call('HSET', KEYS[1], ARGV[1], '1')
redis.call('SADD', KEYS[3], ARGV[2])
if added == 1 and redis.call('HLEN', KEYS[1]) == 1 then
  redis.call('SADD', KEYS[2], ARGV[3])
  local max = tonumber(ARGV[7])
  if ARGV[6] == '1' and (max == 0 or redis.call('SCARD', KEYS[2]) <= max) then
    redis.call(ARGV[8] or 'PUBLISH', ARGV[4], ARGV[5])
  end
  return 1
end
return 0

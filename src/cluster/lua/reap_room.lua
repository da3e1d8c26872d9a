-- Redis Cluster: removes, in a bounded step, one node's users from one bucket
-- of a room (the node expired, or is leaving): each user it was the last node
-- of leaves the room with an `exit` on the bucket's room channel. All keys
-- share the bucket's hash tag, so this is one slot. At most ARGV[9] users per
-- call; the caller calls again while some are left. SPOP hands each user to
-- one caller and HDEL decides, so concurrent reapers never double an exit.
-- (One Redis server: reap.lua.)
-- KEYS[1] the node's users in the bucket {T}:node:<id>:users (members: userIDs)
-- KEYS[2] the bucket's room set {T}:room
-- ARGV[1] node id, ARGV[2] bucket key base {T}: (user hashes are base .. 'user:' .. user),
-- ARGV[3] exit text, ARGV[4] seq prefix, ARGV[5] largest room announced in (0 = any;
-- on a Redis Cluster the policy's size less the room's other buckets, -1 = none),
-- ARGV[6] "1" when the room is quiet, ARGV[7] the bucket's room channel, ARGV[8] appID,
-- ARGV[9] users per call at most
-- The exits of one call go out in one message {cmd = 'exit', exits = {userID,
-- ...}, seq, msg, app}: a shard channel message costs Redis Cluster a
-- cluster-bus send to the shard's replicas too, and one per user made calls
-- of 20,000 exits block for 10-20 ms now and then (SLOWLOG).
-- Returns {exits published, users of the node left in the bucket}.
local exits = {}
local max = tonumber(ARGV[5])
for _, user in ipairs(redis.call('SPOP', KEYS[1], tonumber(ARGV[9]))) do
  local hash = ARGV[2] .. 'user:' .. user
  if redis.call('HDEL', hash, ARGV[1]) == 1 and redis.call('HLEN', hash) == 0 then
    redis.call('SREM', KEYS[2], user)
    local size = redis.call('SCARD', KEYS[2]) + 1
    if ARGV[6] ~= '1' and (max == 0 or size <= max) then
      exits[#exits + 1] = user
    end
  end
end
if #exits > 0 then
  redis.call('SPUBLISH', ARGV[7], cjson.encode({
    cmd = 'exit', seq = ARGV[4], msg = ARGV[3], exits = exits, app = tonumber(ARGV[8])}))
end
return {#exits, redis.call('SCARD', KEYS[1])}

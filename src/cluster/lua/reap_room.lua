-- Redis Cluster: removes one node's users from one room (the node expired, or
-- is leaving): each user it was the last node of leaves the room with an
-- `exit`. All keys share the room's hash tag, so this is one slot; HDEL
-- decides which caller does the work, so concurrent reapers never double an
-- exit. (One Redis server: reap.lua does every room in one script.)
-- KEYS[1] the node's users in the room {<prefix><app>}:node:<id>:users (members: userIDs)
-- KEYS[2] room set {<prefix><app>}:room
-- ARGV[1] node id, ARGV[2] room key base {<prefix><app>}: (user hashes are base .. 'user:' .. user),
-- ARGV[3] exit text, ARGV[4] seq prefix, ARGV[5] largest room announced in (0 = any),
-- ARGV[6] "1" when the room is quiet, ARGV[7] room channel, ARGV[8] appID
-- Returns the number of exits published.
local exits = 0
local max = tonumber(ARGV[5])
for _, user in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local hash = ARGV[2] .. 'user:' .. user
  if redis.call('HDEL', hash, ARGV[1]) == 1 and redis.call('HLEN', hash) == 0 then
    redis.call('SREM', KEYS[2], user)
    local size = redis.call('SCARD', KEYS[2]) + 1
    if ARGV[6] ~= '1' and (max == 0 or size <= max) then
      exits = exits + 1
      redis.call('SPUBLISH', ARGV[7], cjson.encode({
        cmd = 'exit', seq = ARGV[4] .. '-' .. exits, msg = ARGV[3], from = user,
        except = user, app = tonumber(ARGV[8])}))
    end
  end
end
redis.call('DEL', KEYS[1])
return exits

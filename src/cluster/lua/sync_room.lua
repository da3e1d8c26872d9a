-- Redis Cluster: sync.lua for one room (its keys share the room's hash tag).
-- Drops what the room's slot still holds for this node but the node no longer
-- has; users left on no node leave the room with an `exit` marked with this
-- node's id (the node itself already told its clients and skips it).
-- KEYS[1] the node's users in the room {<prefix><app>}:node:<id>:users, KEYS[2] room set
-- ARGV[1] node id, ARGV[2] room key base, ARGV[3] exit text, ARGV[4] seq prefix,
-- ARGV[5] largest room announced in (0 = any), ARGV[6] quiet appIDs ",101,",
-- ARGV[7] room channel, ARGV[8] appID, ARGV[9..] the node's current users in the room
-- Returns the number of stale users removed.
local current = {}
for i = 9, #ARGV do
  current[ARGV[i]] = true
end
local removed = 0
local max = tonumber(ARGV[5])
local quiet = string.find(ARGV[6], ',' .. ARGV[8] .. ',', 1, true)
for _, user in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not current[user] then
    removed = removed + 1
    redis.call('SREM', KEYS[1], user)
    local hash = ARGV[2] .. 'user:' .. user
    redis.call('HDEL', hash, ARGV[1])
    if redis.call('HLEN', hash) == 0 then
      redis.call('SREM', KEYS[2], user)
      local size = redis.call('SCARD', KEYS[2]) + 1
      if not quiet and (max == 0 or size <= max) then
        redis.call('SPUBLISH', ARGV[7], cjson.encode({
          cmd = 'exit', seq = ARGV[4] .. '-' .. removed, msg = ARGV[3], from = user,
          except = user, app = tonumber(ARGV[8]), skip = ARGV[1]}))
      end
    end
  end
end
return removed

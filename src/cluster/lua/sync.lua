-- After a reconnect: drops what Redis still holds for this node but the node no
-- longer has (users who left while Redis was unreachable, e.g. a Redis that
-- came back with its old data). Users left on no node leave their room with
-- an `exit`, marked with this node's id so that the node itself (which
-- already told its own clients) skips it. The current users are then
-- re-added with login.lua.
-- KEYS[1] node users set <prefix>node:<id>:users
-- ARGV[1] node id, ARGV[2] key prefix, ARGV[3] exit text, ARGV[4] seq prefix,
-- ARGV[5] largest room announced in (0 = any), ARGV[6] quiet appIDs ",101,",
-- ARGV[7..] the node's current users as <app>:<user>
-- Returns the number of stale users removed.
local prefix = ARGV[2]
local current = {}
for i = 7, #ARGV do
  current[ARGV[i]] = true
end
local removed = 0
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not current[member] then
    removed = removed + 1
    redis.call('SREM', KEYS[1], member)
    local sep = string.find(member, ':', 1, true)
    local app = string.sub(member, 1, sep - 1)
    local user = string.sub(member, sep + 1)
    local hash = prefix .. 'user:' .. member
    redis.call('HDEL', hash, ARGV[1])
    if redis.call('HLEN', hash) == 0 then
      redis.call('SREM', prefix .. 'room:' .. app, user)
      local max = tonumber(ARGV[5])
      local quiet = string.find(ARGV[6], ',' .. app .. ',', 1, true)
      local size = redis.call('SCARD', prefix .. 'room:' .. app) + 1
      if not quiet and (max == 0 or size <= max) then
        redis.call('PUBLISH', prefix .. 'ch:room:' .. app, cjson.encode({
          cmd = 'exit', seq = ARGV[4] .. '-' .. removed, msg = ARGV[3], from = user,
          except = user, app = tonumber(app), skip = ARGV[1]}))
      end
    end
  end
end
return removed

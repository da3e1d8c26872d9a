-- One Redis server: removes, in a bounded step, the users of dead nodes
-- (registration expired) - or, with ARGV[5], of one leaving node: each user
-- it was the last node of leaves its room with an `exit` published to that
-- room. At most ARGV[8] users per call, so that no call blocks Redis long;
-- the caller calls again while the answer says some are left. SPOP hands each
-- user to one caller and HDEL decides whether the node still held it, so
-- concurrent reapers never double an exit. A node leaves the nodes key (and
-- the schema hash) once its users set is empty.
-- KEYS[1] nodes zset <prefix>nodes (score: expiry, ms since the epoch)
-- KEYS[2] schema hash {<prefix>nodes}:schema
-- ARGV[1] now (ms), ARGV[2] key prefix, ARGV[3] exit text, ARGV[4] seq prefix,
-- ARGV[5] a node id to remove now ("" = the expired ones),
-- ARGV[6] largest room announced in (0 = any), ARGV[7] quiet appIDs as ",101,102,",
-- ARGV[8] users per call at most
-- Returns {exits published, 1 when users are left for another call else 0}.
local prefix = ARGV[2]
local nodes
if ARGV[5] ~= '' then
  nodes = {ARGV[5]}
else
  nodes = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
end
local budget = tonumber(ARGV[8])
local max = tonumber(ARGV[6])
local exits = 0
local more = 0
for _, node in ipairs(nodes) do
  if budget == 0 then
    more = 1
    break
  end
  local set = prefix .. 'node:' .. node .. ':users'
  local members = redis.call('SPOP', set, budget)
  budget = budget - #members
  for _, member in ipairs(members) do
    local sep = string.find(member, ':', 1, true)
    local app = string.sub(member, 1, sep - 1)
    local user = string.sub(member, sep + 1)
    local hash = prefix .. 'user:' .. member
    if redis.call('HDEL', hash, node) == 1 and redis.call('HLEN', hash) == 0 then
      redis.call('SREM', prefix .. 'room:' .. app, user)
      local quiet = string.find(ARGV[7], ',' .. app .. ',', 1, true)
      local size = redis.call('SCARD', prefix .. 'room:' .. app) + 1
      if not quiet and (max == 0 or size <= max) then
        exits = exits + 1
        redis.call('PUBLISH', prefix .. 'ch:room:' .. app, cjson.encode({
          cmd = 'exit', seq = ARGV[4] .. '-' .. exits, msg = ARGV[3], from = user,
          except = user, app = tonumber(app)}))
      end
    end
  end
  if redis.call('SCARD', set) == 0 then
    redis.call('ZREM', KEYS[1], node)
    redis.call('HDEL', KEYS[2], node)
  else
    more = 1
  end
end
return {exits, more}

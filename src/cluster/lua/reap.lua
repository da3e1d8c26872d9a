-- Removes dead nodes (registration expired) - or, with ARGV[5], one leaving
-- node - and everything they held: their users leave every room they were the
-- last node of, with an `exit` published to that room. ZREM decides which
-- caller does the work, so concurrent reapers never double an exit.
-- KEYS[1] nodes zset <prefix>nodes (score: expiry, ms since the epoch)
-- ARGV[1] now (ms), ARGV[2] key prefix, ARGV[3] exit text, ARGV[4] seq prefix,
-- ARGV[5] a node id to remove now ("" = the expired ones),
-- ARGV[6] largest room announced in (0 = any), ARGV[7] quiet appIDs as ",101,102,"
-- Returns the number of exits published.
local prefix = ARGV[2]
local nodes
if ARGV[5] ~= '' then
  nodes = {ARGV[5]}
else
  nodes = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
end
local exits = 0
for _, node in ipairs(nodes) do
  if redis.call('ZREM', KEYS[1], node) == 1 or ARGV[5] ~= '' then
    local set = prefix .. 'node:' .. node .. ':users'
    for _, member in ipairs(redis.call('SMEMBERS', set)) do
      local sep = string.find(member, ':', 1, true)
      local app = string.sub(member, 1, sep - 1)
      local user = string.sub(member, sep + 1)
      local hash = prefix .. 'user:' .. member
      redis.call('HDEL', hash, node)
      if redis.call('HLEN', hash) == 0 then
        redis.call('SREM', prefix .. 'room:' .. app, user)
        local max = tonumber(ARGV[6])
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
    redis.call('DEL', set)
  end
end
return exits

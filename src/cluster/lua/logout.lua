-- A node's last connection of a user went away: forget the user on this node
-- and, if no other node has it, remove it from the room and announce `exit`.
-- KEYS and ARGV as in login.lua (ARGV[5] is the exit payload, ARGV[8] the publish command).
-- History on: KEYS[4] the user stream's meta hash, ARGV[9] / ARGV[10] the epoch
-- and offset of the user stream this node delivered to the user ("" / 0: none).
-- When the user goes offline cluster-wide that is where its offline messages
-- start (`left`, never moved back within an epoch; a mark of another epoch
-- means nothing in this one; never above the stream's top: a mark counted
-- before a lost tail would skip the pushes that take its offsets again). In the same script as the last-out decision, so
-- that no login of the user elsewhere can come between them.
-- Returns 1 when the user went offline cluster-wide, else 0.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('SREM', KEYS[3], ARGV[2])
if redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[3])
  if KEYS[4] and ARGV[9] ~= '' and redis.call('HGET', KEYS[4], 'epoch') == ARGV[9] then
    local meta = redis.call('HMGET', KEYS[4], 'left', 'top')
    local mark = math.min(tonumber(ARGV[10]), tonumber(meta[2] or '0'))
    if mark > tonumber(meta[1] or '0') then
      redis.call('HSET', KEYS[4], 'left', mark)
    end
  end
  local max = tonumber(ARGV[7])
  if ARGV[6] == '1' and (max == 0 or redis.call('SCARD', KEYS[2]) + 1 <= max) then
    redis.call(ARGV[8] or 'PUBLISH', ARGV[4], ARGV[5])
  end
  return 1
end
return 0

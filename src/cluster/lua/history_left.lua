-- A user's last connection on a node went away having been delivered its user
-- stream up to ARGV[1]; if no node holds the user any more, that is where its
-- offline messages start (never moved back).
-- KEYS[1] user hash <prefix>user:<app>:<user>, KEYS[2] stream meta hash
-- Returns 1 when recorded.
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
local left = tonumber(redis.call('HGET', KEYS[2], 'left') or '0')
local mark = tonumber(ARGV[1])
if mark > left then
  redis.call('HSET', KEYS[2], 'left', mark)
end
return 1

-- A user's last connection on a node went away having been delivered its user
-- stream up to ARGV[1]; if no node holds the user any more, that is where its
-- offline messages start (never moved back, never above the stream's top:
-- a mark counted before a lost tail, the stream gone on in a new epoch from
-- below it, would skip the new epoch's pushes up to it).
-- KEYS[1] user hash <prefix>user:<app>:<user>, KEYS[2] stream meta hash
-- Returns 1 when recorded.
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
local meta = redis.call('HMGET', KEYS[2], 'left', 'top')
local left = tonumber(meta[1] or '0')
local mark = math.min(tonumber(ARGV[1]), tonumber(meta[2] or '0'))
if mark > left then
  redis.call('HSET', KEYS[2], 'left', mark)
end
return 1

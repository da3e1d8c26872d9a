-- Reads a stream's history for a recovery, offline delivery or /user/history:
-- only the entries after the reader's offset (a stream's kept entries have
-- consecutive offsets, oldest first, so the list index follows from the offset).
-- Entries older than the age limit are dropped first (from the head, on Redis's
-- clock, as history_append.lua does), so none is returned and the oldest kept
-- offset says whether the reader's next one is still there.
-- KEYS[1] stream meta hash, KEYS[2] stream log list
-- ARGV[1] offset after which entries are wanted; -1: none (the position only)
-- ARGV[2] ttl (ms, 0 = no age limit)
-- ARGV[3] a new epoch, ARGV[5] the incarnation of the server running this:
--         a stream last written by another one takes the new epoch, as in
--         history_append.lua, so that a reader's position from before a lost
--         tail no longer matches (and none is answered as recovered); ""
--         checks nothing
-- KEYS[3], ARGV[4] (the offline read at a login on node ARGV[4]): the user hash;
-- when another node holds the user, it is online there and has had its
-- pushes: `left` is the top and no entry is returned.
-- Returns {{epoch, top, left} (each false when absent), {entry, ...}, oldest kept offset}.
local here = ARGV[5]
if here ~= '' then
  local seen = redis.call('HMGET', KEYS[1], 'epoch', 'r')
  if seen[1] and seen[2] ~= here then
    if seen[2] then redis.call('HSET', KEYS[1], 'epoch', ARGV[3]) end
    redis.call('HSET', KEYS[1], 'r', here)
  end
end
local ttl = tonumber(ARGV[2] or '0')
if ttl > 0 then
  local time = redis.call('TIME')
  local oldest = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) - ttl
  for _ = 1, redis.call('LLEN', KEYS[2]) do
    local head = cjson.decode(redis.call('LINDEX', KEYS[2], 0))
    if tonumber(head['t'] or 0) >= oldest then break end
    redis.call('LPOP', KEYS[2])
  end
end
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'top', 'left')
local top = tonumber(meta[2] or '0')
local len = redis.call('LLEN', KEYS[2])
local first = top - len + 1
local after = tonumber(ARGV[1])
if KEYS[3] then
  for _, node in ipairs(redis.call('HKEYS', KEYS[3])) do
    if node ~= ARGV[4] then
      meta[3] = meta[2]
      after = -1
      break
    end
  end
end
if after < 0 or after >= top then
  return {meta, {}, first}
end
local start = after - first + 1
if start < 0 then start = 0 end
return {meta, redis.call('LRANGE', KEYS[2], start, -1), first}

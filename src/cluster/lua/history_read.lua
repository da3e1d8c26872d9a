-- Reads a stream's history for a recovery, offline delivery or /user/history:
-- only the entries after the reader's offset (a stream's kept entries have
-- consecutive offsets, oldest first, so the list index follows from the offset).
-- KEYS[1] stream meta hash, KEYS[2] stream log list
-- ARGV[1] offset after which entries are wanted; -1: none (the position only)
-- Returns {{epoch, top, left} (each false when absent), {entry, ...}, oldest kept offset}.
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'top', 'left')
local top = tonumber(meta[2] or '0')
local len = redis.call('LLEN', KEYS[2])
local first = top - len + 1
local after = tonumber(ARGV[1])
if after < 0 or after >= top then
  return {meta, {}, first}
end
local start = after - first + 1
if start < 0 then start = 0 end
return {meta, redis.call('LRANGE', KEYS[2], start, -1), first}

-- Stores a msg push in its stream's history and routes it, in one step, so
-- that offsets and the order of the published messages agree.
-- KEYS[1] stream meta hash <prefix>hist:<stream>:meta (fields: epoch, top, left,
--         h: at most the time of the oldest kept entry, so that most appends
--         need not decode it to apply the age limit, r: the incarnation of the
--         Redis server that last wrote it)
-- KEYS[2] stream log list  <prefix>hist:<stream>:log  (JSON entries, oldest first)
-- KEYS[3] user hash        <prefix>user:<app>:<user>  (user streams: the nodes to publish to)
-- ARGV[1] epoch for a new stream, ARGV[2] entries kept,
-- ARGV[3] ttl (ms, 0 = none): the age limit of each entry and of the keys,
-- ARGV[4] entry fields (JSON object: seq, msg, from, except),
-- ARGV[5] routed message (JSON object; gets "epoch" and "offset"),
-- ARGV[6] "room": publish on ARGV[7] (the room channel);
--         "user": publish on ARGV[7] .. node for each node in KEYS[3],
-- ARGV[8] PUBLISH or SPUBLISH,
-- ARGV[9] the incarnation of the server running this (run_id and replication
--         id, RedisConnection::incarnation): a meta hash last written by
--         another one may have lost its tail (asynchronous replication, a
--         restart from an older snapshot), so its offsets may be handed out a
--         second time: the stream takes the new epoch ARGV[1], offsets going on
--         from the surviving top. A meta hash without r (written before r
--         existed) only gets it; "" (the server did not tell) checks nothing.
-- An entry's age is counted on Redis's clock (TIME), as history_read.lua does
-- and as PEXPIRE does: one clock for every node writing the stream.
-- Returns {epoch, offset, nodes published to (user streams; 1 for rooms)}.
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'h', 'r')
local epoch = meta[1]
local here = ARGV[9]
if not epoch or (here ~= '' and meta[3] and meta[3] ~= here) then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
if here ~= '' and meta[3] ~= here then
  redis.call('HSET', KEYS[1], 'r', here)
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local offset = redis.call('HINCRBY', KEYS[1], 'top', 1)
local entry = cjson.decode(ARGV[4])
entry['o'] = offset
entry['t'] = now
redis.call('RPUSH', KEYS[2], cjson.encode(entry))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  -- Entries older than ttl leave from the head (oldest first); the new one
  -- stays. Only when h says the head may have aged: trims and reads only ever
  -- make the head younger, so h stays a lower bound of its time.
  local oldest = now - ttl
  if tonumber(meta[2] or '0') < oldest then
    local head_t = now
    for _ = 2, redis.call('LLEN', KEYS[2]) do
      local t = tonumber(cjson.decode(redis.call('LINDEX', KEYS[2], 0))['t'] or 0)
      if t >= oldest then
        head_t = t
        break
      end
      redis.call('LPOP', KEYS[2])
    end
    redis.call('HSET', KEYS[1], 'h', head_t)
  end
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
local message = cjson.decode(ARGV[5])
message['epoch'] = epoch
message['offset'] = offset
local text = cjson.encode(message)
if ARGV[6] == 'room' then
  redis.call(ARGV[8] or 'PUBLISH', ARGV[7], text)
  return {epoch, offset, 1}
end
local nodes = redis.call('HKEYS', KEYS[3])
for _, node in ipairs(nodes) do
  redis.call(ARGV[8] or 'PUBLISH', ARGV[7] .. node, text)
end
return {epoch, offset, #nodes}

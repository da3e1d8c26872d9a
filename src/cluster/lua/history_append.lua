-- Stores a msg push in its stream's history and routes it, in one step, so
-- that offsets and the order of the published messages agree.
-- KEYS[1] stream meta hash <prefix>hist:<stream>:meta (fields: epoch, top, left)
-- KEYS[2] stream log list  <prefix>hist:<stream>:log  (JSON entries, oldest first)
-- KEYS[3] user hash        <prefix>user:<app>:<user>  (user streams: the nodes to publish to)
-- ARGV[1] epoch for a new stream, ARGV[2] now (ms), ARGV[3] entries kept,
-- ARGV[4] ttl (ms, 0 = none), ARGV[5] entry fields (JSON object: seq, msg, from, except),
-- ARGV[6] routed message (JSON object; gets "epoch" and "offset"),
-- ARGV[7] "room": publish on ARGV[8] (the room channel);
--         "user": publish on ARGV[8] .. node for each node in KEYS[3],
-- ARGV[9] PUBLISH or SPUBLISH
-- Returns {epoch, offset, nodes published to (user streams; 1 for rooms)}.
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local offset = redis.call('HINCRBY', KEYS[1], 'top', 1)
local entry = cjson.decode(ARGV[5])
entry['o'] = offset
entry['t'] = tonumber(ARGV[2])
redis.call('RPUSH', KEYS[2], cjson.encode(entry))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
local message = cjson.decode(ARGV[6])
message['epoch'] = epoch
message['offset'] = offset
local text = cjson.encode(message)
if ARGV[7] == 'room' then
  redis.call(ARGV[9] or 'PUBLISH', ARGV[8], text)
  return {epoch, offset, 1}
end
local nodes = redis.call('HKEYS', KEYS[3])
for _, node in ipairs(nodes) do
  redis.call(ARGV[9] or 'PUBLISH', ARGV[8] .. node, text)
end
return {epoch, offset, #nodes}

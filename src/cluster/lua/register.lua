-- A node's registration (at start, after a reconnect, and each heartbeat):
-- its expiry in the nodes key and its key schema in the schema hash, so that
-- nodes of another schema (an older imgate: one slot per appID; or another
-- --redis-buckets) are found before messages between them get lost.
-- KEYS[1] nodes zset <prefix>nodes (score: expiry, ms since the epoch)
-- KEYS[2] schema hash {<prefix>nodes}:schema (node id -> "<version>:<buckets>";
--         its hash tag is the nodes key's name: one slot with KEYS[1])
-- ARGV[1] now (ms), ARGV[2] this node's expiry (ms), ARGV[3] node id,
-- ARGV[4] this node's schema "2:<buckets>",
-- ARGV[5] "1": strict, do not register next to a live node of another schema,
-- ARGV[6] "1": check the other live nodes' schema (Redis Cluster)
-- Returns {1 when the node was absent or expired (it was, or is being,
-- reaped: its users must be published again with `enter`) else 0,
-- {"<node>=<its schema, '' for none>", ...} the live nodes of another schema}.
local score = redis.call('ZSCORE', KEYS[1], ARGV[3])
local rejoined = 0
if not score or tonumber(score) < tonumber(ARGV[1]) then rejoined = 1 end
local conflicts = {}
if ARGV[6] == '1' then
  for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf')) do
    if node ~= ARGV[3] then
      local schema = redis.call('HGET', KEYS[2], node)
      if schema ~= ARGV[4] then
        conflicts[#conflicts + 1] = node .. '=' .. (schema or '')
      end
    end
  end
end
if ARGV[5] == '1' and #conflicts > 0 then
  return {rejoined, conflicts}
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
return {rejoined, conflicts}

-- The resync's wait (redis_resync.cpp): how many nodes hold users of each
-- room, from the user hashes of a random sample of the room's members (at
-- most ARGV[2] per room; a room stops counting once it reaches ARGV[1]).
-- Read only; one slot per call on a Redis Cluster (one room).
-- KEYS[i] the room set of room i
-- ARGV[1] the most nodes there can be (the live nodes), ARGV[2] members to look at per room,
-- ARGV[2 + i] the user hash prefix of room i (user hash = prefix .. userID)
-- Returns one count per room, in KEYS order.
local most = tonumber(ARGV[1])
local counts = {}
for i, room in ipairs(KEYS) do
  local seen, count = {}, 0
  for _, user in ipairs(redis.call('SRANDMEMBER', room, tonumber(ARGV[2]))) do
    for _, node in ipairs(redis.call('HKEYS', ARGV[2 + i] .. user)) do
      if not seen[node] then
        seen[node] = true
        count = count + 1
      end
    end
    if count >= most then break end
  end
  counts[i] = count
end
return counts

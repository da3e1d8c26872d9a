-- Is the user online in any of the given apps?
-- ARGV[1] key prefix, ARGV[2] userID, ARGV[3..] appIDs. Returns 1 or 0.
for i = 3, #ARGV do
  if redis.call('EXISTS', ARGV[1] .. 'user:' .. ARGV[i] .. ':' .. ARGV[2]) == 1 then
    return 1
  end
end
return 0

-- Reads a stream's history for a recovery, offline delivery or /user/history.
-- KEYS[1] stream meta hash, KEYS[2] stream log list
-- Returns {{epoch, top, left} (each false when absent), {entry, ...} oldest first}.
return {redis.call('HMGET', KEYS[1], 'epoch', 'top', 'left'), redis.call('LRANGE', KEYS[2], 0, -1)}

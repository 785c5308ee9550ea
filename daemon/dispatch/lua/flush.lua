-- KEYS[1] alert tenant prefix. ARGV: 1 alert id, 2 now_ms, 3 the call's token, then counted lists: delivery
-- field/value pairs, batch/first-attempt record pairs (appended to the batch's record),
-- progress field/increment pairs, stream/entry pairs of finished batches, and SMS deliv
-- fields just accepted. One script, so outcomes, counters and acknowledgements land together
-- (a batch is never acknowledged without its outcomes, nor counted twice: XACK answers 1
-- only for an entry still pending). A call whose reply was lost is sent again as it was:
-- its token (kept 10 minutes) makes the second one a no-op, so no progress counts twice.
local p, id, now_ms, token = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if not redis.call('SET', p .. 'flush:' .. token, '1', 'NX', 'EX', 600) then return 0 end
local i = 4
local nd = tonumber(ARGV[i]); i = i + 1
local deliv = p .. 'deliv:' .. id
for s = i, i + nd - 1, 2000 do
  local args = {}
  for k = s, math.min(s + 1999, i + nd - 1) do args[#args + 1] = ARGV[k] end
  redis.call('HSET', deliv, unpack(args))
end
i = i + nd
local na = tonumber(ARGV[i]); i = i + 1
local acc = p .. 'acc:' .. id
for k = i, i + na - 1, 2 do
  redis.call('HSET', acc, ARGV[k], (redis.call('HGET', acc, ARGV[k]) or '') .. ARGV[k + 1])
end
i = i + na
local np = tonumber(ARGV[i]); i = i + 1
for k = i, i + np - 1, 2 do redis.call('HINCRBY', p .. 'progress:' .. id, ARGV[k], ARGV[k + 1]) end
i = i + np
local nb = tonumber(ARGV[i]); i = i + 1
local plan = p .. 'plan:' .. id
for k = i, i + nb - 1, 2 do
  if redis.call('XACK', ARGV[k], 'sirenad', ARGV[k + 1]) == 1 then redis.call('HINCRBY', plan, 'done', 1) end
end
i = i + nb
-- SMS acceptances whose delivery report came first: the report wins.
local ns = tonumber(ARGV[i]); i = i + 1
local dlr = p .. 'dlr:' .. id
for k = i, i + ns - 1 do
  local d = redis.call('HGET', dlr, ARGV[k])
  if d then
    local bar = string.find(d, '|', 1, true)
    local state = string.sub(d, 1, bar - 1)
    local v = redis.call('HGET', deliv, ARGV[k])
    local attempts = string.match(v or '', '^[^|]*|([^|]*)') or '1'
    redis.call('HSET', deliv, ARGV[k], state .. '|' .. attempts .. '|' .. string.sub(d, bar + 1))
    redis.call('HINCRBY', p .. 'progress:' .. id, 'sms:accepted', -1)
    redis.call('HINCRBY', p .. 'progress:' .. id, 'sms:' .. state, 1)
  end
end
if nb > 0 then
  local total = tonumber(redis.call('HGET', plan, 'batches') or '0')
  local done = tonumber(redis.call('HGET', plan, 'done') or '0')
  if done >= total then
    local k = p .. 'alert:' .. id
    if redis.call('HGET', k, 'state') == S.dispatching then redis.call('HSET', k, 'state', S.completed) end
    redis.call('HSET', plan, 'completed_ms', now_ms)
  end
end
return 1

-- Writes a plan, in one call or in several (the first batches, then the rest): the first
-- batches can then be sent while the rest is written. Arguments (PlanCall in plan_call.h
-- builds them in this order):
--   KEYS[1]  the alert tenant's key prefix
--   ARGV     id, tenant, batches (n, of the whole plan), recipients, priority, stream,
--            consumer, claim (stream entries to claim), now_ms, first (this call's first
--            batch), last ("1" when this call ends the plan), c, then c values
--            ("planned:<channel>", count pairs), then this call's batch texts.
-- Returns {n, XREADGROUP's reply (the entries it claimed for the consumer, so the first
-- batches start without another round trip), base (the plan's first batch number: 0
-- unless planned again)}, or {-1} when the alert keeps an earlier plan or is no longer
-- accepted.
--
-- Resolution happens once: a complete plan is kept. A plan whose writing stopped (its
-- daemon died between two calls; `writing` names it) is planned again, by that daemon
-- after its restart or by another a minute later; the new batches are numbered after
-- the old ones, which still go, and flagged "r" so that their recipients' final outcomes
-- are read first: the old batches' first-attempt records are turned into deliv fields for
-- them. The old batches' recipients may be sent twice (at most those batches).
local p = KEYS[1]
local id, tenant, batches, recipients, priority, stream, consumer, claim, now_ms, first_arg, last, counts =
  unpack(ARGV, 1, 12)
local n, first, c = tonumber(batches), tonumber(first_arg), tonumber(counts)
local texts_from = 13 + c  -- ARGV index of this call's first batch text
local plan = p .. 'plan:' .. id
local base = 0
if first == 0 then
  -- Only an accepted alert is planned: one cancelled, superseded or expired meanwhile
  -- gets no batches (the caller's copy of it may be older than this).
  if redis.call('HGET', p .. 'alert:' .. id, 'state') ~= S.accepted then
    redis.call('ZREM', p .. 'unplanned', id)
    return {-1}
  end
  if redis.call('EXISTS', plan) == 1 then
    local w = redis.call('HMGET', plan, 'writing', 'writing_ms', 'next')
    if not w[1] then
      redis.call('ZREM', p .. 'unplanned', id)
      return {-1}
    end
    if w[1] ~= consumer and tonumber(now_ms) - tonumber(w[2]) < 60000 then return {-1} end
    -- No `next`: the call that began it failed before queueing any batch (a Lua error
    -- keeps the writes made before it), so nothing was sent and it starts again at 0.
    base = tonumber(w[3] or '0')
    local acc, deliv = p .. 'acc:' .. id, p .. 'deliv:' .. id
    local recs = redis.call('HGETALL', acc)
    for k = 1, #recs, 2 do
      local text = redis.call('GET', p .. 'batch:' .. id .. ':' .. recs[k])
      if text then
        local r, slots = batch_slots(text)
        local f = {}
        each_accepted(recs[k + 1], function(ch, i)
          f[#f + 1] = r .. ':' .. slots[i + 1] .. ':' .. ch
          f[#f + 1] = 'accepted|1|'
        end)
        for s = 1, #f, 2000 do redis.call('HSET', deliv, unpack(f, s, math.min(s + 1999, #f))) end
      end
    end
    redis.call('DEL', acc)
  end
  local fields = {'batches', base + n, 'recipients', recipients, 'priority', priority, 'writing', consumer,
                  'writing_ms', now_ms, 'base', base}
  for i = 13, 12 + c do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', plan, unpack(fields))
  redis.call('HSETNX', plan, 'done', 0)
else
  local w = redis.call('HMGET', plan, 'writing', 'base')
  if w[1] ~= consumer then return {-1} end
  base = tonumber(w[2])
end
local b = base + first
for i = texts_from, #ARGV do
  redis.call('SET', p .. 'batch:' .. id .. ':' .. b, ARGV[i])
  if base == 0 then redis.call('XADD', stream, '*', 'a', id, 't', tenant, 'b', tostring(b))
  else redis.call('XADD', stream, '*', 'a', id, 't', tenant, 'b', tostring(b), 'r', '1') end
  b = b + 1
end
redis.call('HSET', plan, 'next', b)
if last == '1' then
  redis.call('HDEL', plan, 'writing', 'writing_ms', 'base')
  redis.call('ZREM', p .. 'unplanned', id)
  local k = p .. 'alert:' .. id
  if redis.call('HGET', k, 'state') == S.accepted then
    redis.call('HSET', k, 'state', base + n == 0 and S.completed or S.dispatching)
  end
end
local claimed = false
if b > base + first and tonumber(claim) > 0 then
  -- No group yet (before start()): the entries wait for the first claim.
  local r = redis.pcall('XREADGROUP', 'GROUP', 'sirenad', consumer, 'COUNT', claim, 'STREAMS', stream, '>')
  if type(r) == 'table' and not r.err then claimed = r end
end
return {n, claimed, base}

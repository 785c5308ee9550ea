-- Delivery reports, those gathered while the previous call was under way (up to kMaxReports),
-- in one call.
-- Report k: KEYS[k] its alert tenant's prefix; ARGV[4k-3..4k] alert id, "<R>|<number>",
-- final state ("delivered", "failed") or "" for an intermediate report, reason. Returns one
-- answer per report, in order: "unknown", "noted", "duplicate", "early" or the state. As if
-- the reports came one by one in that order: the first final report of a delivery wins
-- (HSETNX, so a second one in the same call is a duplicate); one that comes before the
-- acceptance is written waits in dlr:<A> for the flush script. The deliveries and
-- counters it moves are written together at the end, one HSET and a HINCRBY per counter an
-- alert (a delivery moves at most once per call: no report reads what an earlier one of
-- the same call moved).
local out, moved, order = {}, {}, {}
for k = 1, #KEYS do
  local p, a = KEYS[k], 4 * k - 4
  local id, state, reason = ARGV[a + 1], ARGV[a + 3], ARGV[a + 4]
  local field = redis.call('HGET', p .. 'smsto:' .. id, ARGV[a + 2])
  if not field then
    out[k] = 'unknown'
  elseif state == '' then
    out[k] = 'noted'
  elseif redis.call('HSETNX', p .. 'dlr:' .. id, field, state .. '|' .. reason) == 0 then
    out[k] = 'duplicate'
  else
    local deliv = p .. 'deliv:' .. id
    local v = redis.call('HGET', deliv, field)
    if not v or string.sub(v, 1, 9) ~= 'accepted|' then
      out[k] = 'early'
    else
      local m = moved[deliv]
      if not m then
        m = {progress = p .. 'progress:' .. id, fields = {}, counts = {}}
        moved[deliv] = m
        order[#order + 1] = deliv
      end
      local attempts = string.match(v, '^[^|]*|([^|]*)') or '1'
      m.fields[#m.fields + 1] = field
      m.fields[#m.fields + 1] = state .. '|' .. attempts .. '|' .. reason
      m.counts[state] = (m.counts[state] or 0) + 1
      out[k] = state
    end
  end
end
for _, deliv in ipairs(order) do
  local m = moved[deliv]
  redis.call('HSET', deliv, unpack(m.fields))
  local n = #m.fields / 2
  redis.call('HINCRBY', m.progress, 'sms:accepted', -n)
  for state, c in pairs(m.counts) do redis.call('HINCRBY', m.progress, 'sms:' .. state, c) end
end
return out

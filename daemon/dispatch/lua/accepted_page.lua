-- A page of first-attempt records, as deliv fields. KEYS[1] alert tenant prefix. ARGV:
-- 1 alert id, 2 batch, 3 skip (the messages of that batch already listed), 4 limit.
-- Returns {next batch, next skip, fields...}: up to `limit` messages from that point, in
-- batch order; next batch -1 at the end.
local p, id = KEYS[1], ARGV[1]
local b, skip, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local last = tonumber(redis.call('HGET', p .. 'plan:' .. id, 'next') or '0')
local acc = p .. 'acc:' .. id
local out = {-1, 0}
while b < last do
  local record = redis.call('HGET', acc, b)
  local text = record and redis.call('GET', p .. 'batch:' .. id .. ':' .. b)
  if text then
    local r, slots = batch_slots(text)
    local k, full = 0, false
    each_accepted(record, function(ch, i)
      if full then return end
      if k >= skip then
        if #out - 2 == limit then full = true; return end
        out[#out + 1] = r .. ':' .. slots[i + 1] .. ':' .. ch
      end
      k = k + 1
    end)
    if full then out[1], out[2] = b, k; return out end
  end
  b, skip = b + 1, 0
end
return out

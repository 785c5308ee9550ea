-- KEYS[1] batch key. Returns {batch text, the contacts of its slots in order (from the
-- recipient tenant's contacts hash, named as prefix() does)}, or {} when the batch is gone.
-- One round trip per batch: reads wait behind the write-backs' fsyncs.
local text = redis.call('GET', KEYS[1])
if not text then return {} end
local rtenant, slots = batch_slots(text)
local contacts = '{t:' .. rtenant .. '}:contacts'
local out = {}
for i = 1, #slots, 1000 do
  local r = redis.call('HMGET', contacts, unpack(slots, i, math.min(i + 999, #slots)))
  for k = 1, #r do out[#out + 1] = r[k] end
end
return {text, out}

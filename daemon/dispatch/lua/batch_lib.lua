-- Lua shared by the scripts that read batches and first-attempt records (acc:<A>, see
-- dispatcher.h): a batch text's recipient tenant and slots; and each (channel, position)
-- of a record, positions being 0-based indexes into the batch's slots.
local function batch_slots(text)
  local nl = string.find(text, '\n', 1, true)
  local slots = {}
  for s in string.gmatch(string.sub(text, nl + 1), '%d+') do slots[#slots + 1] = s end
  return string.sub(text, 1, nl - 1), slots
end
local function each_accepted(record, fn)
  for ch, a, b in string.gmatch(record, '(%a+):(%d+)%-?(%d*),') do
    for i = tonumber(a), tonumber(b ~= '' and b or a) do fn(ch, i) end
  end
end

-- wrk script for bench/sms/run.sh: the generic JSON request sirenad sends with batch_size 1
-- (POST /sms, one number, the same text and headers), a new number each request so that
-- the simulator counts no duplicates: +39399 and 7 digits, never a recipient's number.
--   wrk -s sms.lua -t 1 -c C -d D http://127.0.0.1:PORT/sms
local n = 0
local text = "Piena del Secchia a Soliera. Salite subito ai piani alti, non usate l'auto, state lontani dagli argini. Info: 059 568511"
local headers = {
  ["Content-Type"] = "application/json",
  ["Accept"] = "application/json",
  ["Authorization"] = "Bearer bench",
}

local threads = 0
function setup(thread)  -- threads get disjoint numbers
  thread:set("first", threads * 1000000)
  threads = threads + 1
end

function init(args)
  n = first or 0
end

request = function()
  n = n + 1
  local body = string.format('{"reference":"wrk-ceiling","text":"%s","to":"+39399%07d"}', text, n)
  return wrk.format("POST", nil, headers, body)
end

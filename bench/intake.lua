-- wrk script for bench/intake.sh.
--
-- With INTAKE_CAP set, every request POSTs that CAP file to /v1/alerts with a unique
-- <identifier> (run tag, wrk thread, per-thread counter): a repeated (sender, identifier,
-- sent) would be an idempotent 200, not a new durable alert. Without it, wrk sends its
-- static request (the /healthz baseline). Either way done() prints one machine-readable
-- "result" line for the shell script.

local cap_path = os.getenv("INTAKE_CAP")
local run_tag = os.getenv("INTAKE_RUN") or "bench"
local key = os.getenv("INTAKE_KEY") or "demo-soliera-operator"
local next_tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
end

if cap_path then
  local f = assert(io.open(cap_path, "rb"))
  local cap = f:read("*a")
  f:close()
  local open_tag, close_tag = "<identifier>", "</identifier>"
  local i = assert(cap:find(open_tag, 1, true), "no <identifier> in " .. cap_path)
  local j = assert(cap:find(close_tag, i, true))
  local head, tail = cap:sub(1, i + #open_tag - 1), cap:sub(j)
  local headers = {["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/cap+xml"}
  local n = 0

  function request()
    n = n + 1
    local body = head .. string.format("%s-t%d-%d", run_tag, tid, n) .. tail
    return wrk.format("POST", "/v1/alerts", headers, body)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "result requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_timeout=%d err_status=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout, e.status))
end

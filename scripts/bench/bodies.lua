-- wrk script: POST pre-built XML-RPC bodies, each once, in order, and check every reply.
--
--   wrk -t1 -c20 -d10s -s bodies.lua http://127.0.0.1:PORT/ -- BODIES_FILE
--
-- BODIES_FILE holds the bodies separated by NUL bytes (XML cannot contain NUL). One distinct
-- body per request matters: a cancelled reservation cannot be cancelled again, and a
-- repeated identical call would be answered from the gateway's coalescing instead of doing
-- the work. Past the last body the list starts again and `wrapped` counts it, so the
-- caller can tell a run that reused bodies. Written for one wrk thread (-t1); each thread
-- would cycle the same list.
--
-- A reply is a success if it is HTTP 200 without <fault>; everything else counts in
-- `faults`. done() prints one line the bench parses:
--   BENCH requests=… duration_us=… p50_us=… p99_us=… faults=… wrapped=… errors=…

local requests_ = {}
local n = 0
local i = 0
faults = 0
wrapped = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local data = f:read("*a")
  f:close()
  -- the headers xmlrpc.client's Transport sends (wrk adds Host and Content-Length)
  local headers = {
    ["Content-Type"] = "text/xml",
    ["User-Agent"] = "Python-xmlrpc/3.11",
    ["Accept-Encoding"] = "gzip",
  }
  for body in string.gmatch(data, "[^%z]+") do
    n = n + 1
    requests_[n] = wrk.format("POST", nil, headers, body)
  end
  assert(n > 0, "no bodies in " .. args[1])
end

function request()
  i = i + 1
  if i > n then
    i = 1
    wrapped = wrapped + 1
  end
  return requests_[i]
end

function response(status, headers, body)
  if status ~= 200 or string.find(body, "<fault>", 1, true) then
    faults = faults + 1
  end
end

function done(summary, latency, requests)
  local f, w = 0, 0
  for _, t in ipairs(threads) do
    f = f + t:get("faults")
    w = w + t:get("wrapped")
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d faults=%d wrapped=%d errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    f, w, e.connect + e.read + e.write + e.status + e.timeout))
end

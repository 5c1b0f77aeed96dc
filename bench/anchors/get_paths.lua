-- wrk script: GET the paths listed in a file (one a line), each thread
-- walking its own share of them in order (thread k of N takes lines k, k+N,
-- ...), from the first again when it runs out ("wraps": a cold run that
-- wraps is no longer cold). wrk args: PATHS_FILE NTHREADS [TOKEN].
-- Prints one machine-readable line like anchors/put4k.lua, with wraps=.
local threads, tid = {}, 0

function setup(thread)
  tid = tid + 1
  thread:set("id", tid)
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(args[2]) or 1
  paths = {}
  local k = 0
  for line in io.lines(args[1]) do
    if k % nthreads == id - 1 then table.insert(paths, line) end
    k = k + 1
  end
  headers = {}
  if args[3] and args[3] ~= "" then headers["Authorization"] = "Bearer " .. args[3] end
  i = 0
  wraps = 0
end

function request()
  i = i + 1
  if i > #paths then i = 1; wraps = wraps + 1 end
  return wrk.format("GET", paths[i], headers)
end

function done(summary, latency, requests)
  local w = 0
  for _, t in ipairs(threads) do w = w + (t:get("wraps") or 0) end
  local s = summary.errors
  io.write(string.format(
    "WRK rps=%.1f requests=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f non2xx=%d connect_err=%d read_err=%d write_err=%d timeout=%d wraps=%d\n",
    summary.requests / (summary.duration / 1e6), summary.requests,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    s.status, s.connect, s.read, s.write, s.timeout, w))
end

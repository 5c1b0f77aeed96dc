-- wrk script: PUT 4 KiB to a unique dripd path per request, with the bearer
-- token (wrk args: PREFIX TOKEN [LIMIT]). Same output line as anchors/put4k.lua.
-- LIMIT > 0: each thread stops after about LIMIT answers (bench/cpu_per_upload.sh).
local threads, tid = {}, 0

function setup(thread)
  tid = tid + 1
  thread:set("id", tid)
  table.insert(threads, thread)
end

function init(args)
  prefix = args[1] or "w"
  token = args[2] or ""
  limit = tonumber(args[3] or "0")
  n, got = 0, 0
  local t = {}
  for i = 1, 4096 do t[i] = string.char(math.random(0, 255)) end
  body = table.concat(t)
  headers = { ["Authorization"] = "Bearer " .. token }
end

function request()
  n = n + 1
  return wrk.format("PUT", "/v1/files/" .. prefix .. "/" .. id .. "-" .. n .. ".bin", headers, body)
end

function response(status, headers, body)
  got = got + 1
  if limit > 0 and got >= limit then wrk.thread:stop() end
end

function done(summary, latency, requests)
  local s = summary.errors
  io.write(string.format(
    "WRK rps=%.1f requests=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f non2xx=%d connect_err=%d read_err=%d write_err=%d timeout=%d\n",
    summary.requests / (summary.duration / 1e6), summary.requests,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    s.status, s.connect, s.read, s.write, s.timeout))
end

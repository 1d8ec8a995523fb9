-- wrk script for the POST rows of bench/compare.sh (issue 12): enrollment, cfssl's sign endpoint, token creation,
-- revocation. On the 2-core machine, which the load generator shares with the servers it measures, curl --parallel
-- spent 0.18-0.27 ms of CPU per request, wrk with this script 0.055-0.10 ms (README, Benchmark).
--
-- Each request takes the next line of a file of pre-made requests, "PATH BODY" (BODY one line of JSON), so no body is
-- sent twice; the run ends when every line has been answered, so a row measures a fixed number of requests.
--
--   wrk -t1 -c8 -d<limit>s --timeout 10s -s bench/post.lua -H 'Content-Type: application/json' [-H 'Authorization: ...'] \
--       http://HOST:PORT -- REQUESTS CONNECTIONS [RESPONSES first|all]
--
-- CONNECTIONS must repeat -c. RESPONSES receives the first (or every) response body, one a line. -t1: one thread keeps
-- the count in one place and drives 8 connections at tens of thousands of requests per second. done() prints one line,
-- "post.lua: key=value ...", that compare.sh reads: the answers per HTTP status, wrk's socket errors, the duration,
-- p50/p99 of the latencies as measured (see done()), wrk's own CPU time and the time of the last answer (seconds since
-- 1970, as `date +%s.%N`).

local ffi = require("ffi")
ffi.cdef [[
int getpid(void);
int tgkill(int tgid, int tid, int sig);
typedef struct { long tv_sec; long tv_nsec; } post_lua_timespec;
int clock_gettime(int clock, post_lua_timespec *now);
typedef struct { long tv_sec; long tv_usec; } post_lua_timeval;
typedef struct { post_lua_timeval ru_utime, ru_stime; long ru_rest[14]; } post_lua_rusage;
int getrusage(int who, post_lua_rusage *usage);
]]

local function now_us(clock)
  local t = ffi.new("post_lua_timespec")
  ffi.C.clock_gettime(clock or 1, t) -- CLOCK_MONOTONIC unless told
  return tonumber(t.tv_sec) * 1e6 + tonumber(t.tv_nsec) / 1e3
end

-- ---- the running phase: one Lua state per wrk thread ---------------------------------------------------------------
-- Globals, so that done() can read them with thread:get(). The answers per status are globals "status_201" and so on:
-- wrk 4.1's thread:get() of a table pops one value too many from the thread's stack.
total, sent, answered, connections, first_us, last_us, last_epoch = 0, 0, 0, 0, 0, 0, 0
local statusName = {}
local requests = {}
local save, saveAll

function init(args)
  local file = assert(args[1], "post.lua: the file of requests is missing")
  connections = assert(tonumber(args[2]), "post.lua: the number of connections is missing")
  for line in io.lines(file) do
    local path, body = line:match("^(%S+) (.*)$")
    assert(path, "post.lua: not 'PATH BODY': " .. line:sub(1, 80))
    total = total + 1
    -- Formatted once here, so request() costs a table look-up (wrk.format adds Host, Content-Length and the -H headers).
    requests[total] = wrk.format("POST", path, nil, body)
  end
  if args[3] then
    save = assert(io.open(args[3], "w"))
    saveAll = args[4] == "all"
  end
end

local verified = false

function request()
  -- wrk calls request() once before the run, to count the requests it returns (pipelining): show it one, send none.
  if not verified then
    verified = true
    return requests[1]
  end
  sent = sent + 1
  if sent == 1 then first_us = now_us() end
  -- Every line sent: an empty request writes nothing, and the connection idles (wrk 4.1 has no idle timeout) until the
  -- last answer ends the run.
  return requests[sent] or ""
end

function response(status, headers, body)
  answered = answered + 1
  local name = statusName[status]
  if not name then name = "status_" .. status; statusName[status] = name end
  _G[name] = (_G[name] or 0) + 1
  if save and (saveAll or answered == 1) then save:write(body, "\n") end
  if answered == total then
    last_us, last_epoch = now_us(), now_us(0) / 1e6 -- and CLOCK_REALTIME, for what follows the run (compare.sh)
    if save then save:close() end
    wrk.thread:stop()
    -- wrk's main thread sleeps for -d before it collects the threads; SIGINT (its own handler) wakes it now. Sent to
    -- that thread (its thread id is the process id): a signal to the process may land on this thread instead.
    local pid = ffi.C.getpid()
    ffi.C.tgkill(pid, pid, 2)
  end
end

-- ---- setup and done: wrk's own Lua state ------------------------------------------------------------------------------
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

-- Latency percentiles as measured. wrk "corrects" its histogram for coordinated omission before done() (stats_correct:
-- every latency L of at least twice the interval e = duration / (requests / connections) adds samples at L - e, L - 2e,
-- ... down to just above e), which suits a fixed-rate load but not a closed loop of 8 clients, and curl's figures were
-- never corrected. The correction adds to bin m > e the raw counts of m + e, m + 2e, ..., so the raw count of m is the
-- corrected count of m minus the corrected count of m + e (taken before m + e itself is undone, i.e. in ascending order).
local function raw_percentiles(summary, latency, conns, ...)
  local values, count = {}, {}
  for i = 1, #latency do
    local v, c = latency(i)
    values[i], count[v] = v, c
  end
  local per = math.floor(summary.requests / conns)
  if per > 0 then
    local e = math.floor(summary.duration / per)
    for _, v in ipairs(values) do
      if v > e then count[v] = count[v] - (count[v + e] or 0) end
    end
  end
  local n, sum = 0, 0
  for _, v in ipairs(values) do n, sum = n + count[v], sum + v * count[v] end
  local result = { n, n > 0 and sum / n or 0 }
  for _, p in ipairs({ ... }) do
    local rank, seen = math.max(1, math.floor(n * p + 0.5)), 0
    for _, v in ipairs(values) do
      seen = seen + count[v]
      if seen >= rank then result[#result + 1] = v; break end
    end
  end
  return unpack(result)
end

function done(summary, latency, requests)
  -- wrk's CPU time so far (every thread; RUSAGE_SELF): reading the requests, the run, not the analysis below, whose
  -- look-ups in wrk's histogram cost more than a run of a few thousand requests.
  local usage = ffi.new("post_lua_rusage")
  ffi.C.getrusage(0, usage)
  local cpu = tonumber(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + tonumber(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
  assert(#threads == 1, "post.lua: run wrk with -t1 (one thread sends the lines in order)")
  local t, counts = threads[1], {}
  local total, sent, answered, conns = t:get("total"), t:get("sent"), t:get("answered"), t:get("connections")
  for status = 100, 599 do counts[status] = t:get("status_" .. status) end
  -- The requests' own window: from the first request to the last answer (wrk's duration starts after its thread has
  -- started sending, which on a busy machine can be milliseconds late).
  local seconds = answered == total and (t:get("last_us") - t:get("first_us")) / 1e6 or summary.duration / 1e6
  local codes = {}
  for status in pairs(counts) do codes[#codes + 1] = status end
  table.sort(codes)
  for i, status in ipairs(codes) do codes[i] = status .. ":" .. counts[status] end
  local recorded, mean, p50, p99 = raw_percentiles(summary, latency, conns, 0.50, 0.99)
  local e = summary.errors
  io.write(string.format(
    "post.lua: lines=%d sent=%d answered=%d recorded=%d seconds=%.6f mean_us=%d p50_us=%d p99_us=%d cpu_s=%.6f last_answer=%.6f " ..
    "statuses=%s errors=connect:%d,read:%d,write:%d,timeout:%d\n",
    total, math.min(sent, total), answered, recorded, seconds, mean, p50 or 0, p99 or 0, cpu, t:get("last_epoch"),
    table.concat(codes, ","), e.connect, e.read, e.write, e.timeout))
end

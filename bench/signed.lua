-- signed.lua: wrk script that sends pre-signed Stripe webhooks, each event id once.
--
-- Usage (bench/wrkload.py builds this command line):
--   wrk -t T -c C -d 10s -s bench/signed.lua http://127.0.0.1:PORT -- FILE T MODE
-- FILE is written by bench/presign.py:
--   line 1  URL path; line 2  body template with @ID@; line 3+  <id> TAB <Stripe-Signature>
-- Thread k sends the lines k, k+T, k+2T, ... so no two threads share an event id.
-- MODE "stop": a thread that has sent its whole share stops (ids stay unique; done()
-- reports "exhausted" because wrk still divides by the full -d duration).
-- MODE "cycle": start over (duplicate ids; fine for endpoints that do not dedupe).
-- done() prints one line "BENCH_RESULT {json}" with latency percentiles in microseconds.

threads = {}

local path, parts, host
local ids, sigs = {}, {}
local count, index = 0, 0
local mode = "stop"
sent = 0
exhausted = false

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

local function split(text, marker)
   local out, start = {}, 1
   while true do
      local from, to = string.find(text, marker, start, true)
      if not from then break end
      table.insert(out, string.sub(text, start, from - 1))
      start = to + 1
   end
   table.insert(out, string.sub(text, start))
   return out
end

local function load(file, nthreads)
   local line_no = 0
   for line in io.lines(file) do
      line_no = line_no + 1
      if line_no == 1 then
         path = line
      elseif line_no == 2 then
         parts = split(line, "@ID@")
      elseif (line_no - 3) % nthreads == tid then
         local tab = string.find(line, "\t", 1, true)
         count = count + 1
         ids[count] = string.sub(line, 1, tab - 1)
         sigs[count] = string.sub(line, tab + 1)
      end
   end
end

function init(args)
   local file, nthreads = args[1], tonumber(args[2] or "1")
   mode = args[3] or "stop"
   if not file then error("signed.lua: pass the requests file after --") end
   load(file, nthreads)
   if count == 0 then error("signed.lua: no requests for thread " .. tid) end
   host = wrk.host
   if wrk.port then host = host .. ":" .. wrk.port end
end

function request()
   if index >= count then
      if mode == "cycle" then
         index = 0
      else
         exhausted = true
         wrk.thread:stop()
         index = count - 1 -- resend the last one: a duplicate the bridge answers 200
      end
   end
   index = index + 1
   sent = sent + 1
   local body = table.concat(parts, ids[index])
   return "POST " .. path .. " HTTP/1.1\r\nHost: " .. host
      .. "\r\nContent-Type: application/json\r\nStripe-Signature: " .. sigs[index]
      .. "\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
end

function done(summary, latency, requests)
   local total_sent, any_exhausted = 0, false
   for _, thread in ipairs(threads) do
      total_sent = total_sent + (thread:get("sent") or 0)
      if thread:get("exhausted") then any_exhausted = true end
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"p50_us":%.0f,"p90_us":%.0f,'
      .. '"p99_us":%.0f,"max_us":%.0f,"mean_us":%.1f,"errors_connect":%d,"errors_read":%d,'
      .. '"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"sent":%d,"exhausted":%s}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write,
      e.status, e.timeout, total_sent, tostring(any_exhausted)))
end

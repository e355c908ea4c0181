-- wrk script for bench/run.py's "pipelined" scenario: each connection sends its
-- requests in batches of DEPTH (default 16, env BENCH_PIPELINE_DEPTH), back to back,
-- and sends the next batch once all DEPTH responses are in. wrk counts every
-- response; its latency figures are per batch (first request sent to last answer).
local depth = tonumber(os.getenv("BENCH_PIPELINE_DEPTH") or "16")
local batch

init = function(args)
   local requests = {}
   for i = 1, depth do
      requests[i] = wrk.format("GET", "/")
   end
   batch = table.concat(requests)
end

request = function()
   return batch
end

-- wrk script for bench/run.py's "echo" scenario: POST /echo with a 4 KiB body
-- (env BENCH_ECHO_BYTES to change it); the server answers with the same bytes.
-- wrk adds the Content-Length header itself.
wrk.method = "POST"
wrk.path = "/echo"
wrk.body = string.rep("x", tonumber(os.getenv("BENCH_ECHO_BYTES") or "4096"))
wrk.headers["Content-Type"] = "application/octet-stream"

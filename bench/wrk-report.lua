-- wrk script for bench/run.sh: prints one machine-readable line when the run ends.
-- Only done() is defined: a request() or response() callback would run Lua on every request and
-- slow wrk down. wrk counts HTTP statuses > 399 as errors.status (the stand-ins never send 3xx).
done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d duration_s=%.3f rps=%.1f p50_us=%.0f p90_us=%.0f p99_us=%.0f p999_us=%.0f max_us=%.0f " ..
    "non2xx=%d connect_err=%d read_err=%d write_err=%d timeout_err=%d bytes=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout, summary.bytes))
end

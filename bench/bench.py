#!/usr/bin/env python3
"""Helpers for bench/run.sh (standard library only).

  ready    spawn a command, poll an HTTP URL until it answers 200, print the elapsed time; the command
           keeps running (its PID is printed) so run.sh can use and later stop it
  rss      print VmRSS / VmHWM (KiB) summed over PIDs
  cpu      print utime + stime (seconds) summed over PIDs, all their threads (/proc/PID/stat)
  idle     open N keep-alive connections, one request each, hold them, report RSS growth of PIDs
  get      N requests one after the other on one keep-alive connection (the c=1 path, a fixed count
           for callgrind)
  wrkline  turn wrk's "WRK key=value ..." line (bench/wrk-report.lua) into a TSV row, with the CPU
           time the path's processes (and the upstream) burned per request
  perfline a `perf stat -x,` output and a wrk line -> task-clock and context switches per request
  straceline  a `strace -c` summary and a wrk line -> syscalls per request
  slices   refresh-under-load analysis: p99.9 of wrk slices with a token mint vs without
  report   print the results table, the ratios and the issue's targets (--json, --markdown: also
           write them as JSON and as markdown tables)

Results are kept in one TSV file (see COLUMNS); run.sh appends to it, `report` reads it.
"""

import argparse
import json
import os
import resource
import select
import signal
import socket
import statistics
import subprocess
import sys
import time

COLUMNS = [
    "kind",  # wrk | stream | ready | idle | refresh | perf | syscalls
    "path",  # direct | nginx-<workers> | haproxy-<threads> | proxy
    "conns",
    "rps",
    "p50_us",
    "p99_us",
    "p999_us",
    "non2xx",
    "errors",
    "rss_kib",
    "hwm_kib",
    "value",  # kind-specific figure: MB/s (stream), ms (ready), KiB per connection (idle),
    #           task-clock µs per request (perf), syscalls per request (syscalls)
    "note",
    "requests",  # requests wrk completed in the run
    "cpu_us",  # utime + stime of the path's processes per request, µs (wrk, perf)
    "up_cpu_us",  # the same for the upstream nginx (wrk)
]


# --------------------------------------------------------------------------------------------------
# small utilities


def http_get_status(host, port, path, timeout=1.0):
    """Status code of a plain HTTP/1.1 GET, or None when nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            parts = data.split(b" ", 2)
            if len(parts) >= 2 and parts[0].startswith(b"HTTP/"):
                return int(parts[1])
    except (OSError, ValueError):
        return None
    return None


def proc_status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def rss_of(pids):
    return sum(proc_status_kib(p, "VmRSS") for p in pids), sum(proc_status_kib(p, "VmHWM") for p in pids)


def cpu_seconds(pid):
    """utime + stime of a process, all its threads (fields 14 and 15 of /proc/PID/stat), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # the command name may contain spaces
    # fields[0] is field 3 (state): utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def per_request_us(before, after, requests):
    """CPU µs per request from two cpu readings (strings, may be empty) and a request count."""
    b, a = num(before), num(after)
    if b is None or a is None or not requests:
        return ""
    return f"{(a - b) * 1e6 / requests:.1f}"


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --------------------------------------------------------------------------------------------------
# ready


def cmd_ready(args):
    """Spawn the command, time it to the first 200 on the URL, then supervise it: print the figure,
    stay its parent (so it is reaped), forward SIGTERM/SIGINT to it, and exit when it exits."""
    host, port, path = args.host, args.port, args.path
    log = open(args.log, "ab")
    start = time.monotonic()
    proc = subprocess.Popen(args.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def forward(signum, _frame):
        if proc.poll() is None:
            proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    deadline = start + args.deadline
    while True:
        status = http_get_status(host, port, path, timeout=0.5)
        now = time.monotonic()
        if status == 200:
            print(f"READY_MS={(now - start) * 1000:.1f} PID={proc.pid}", flush=True)
            return proc.wait()
        if proc.poll() is not None:
            print(f"process exited with {proc.returncode} before {path} answered 200 (see {args.log})",
                  file=sys.stderr, flush=True)
            return 1
        if now > deadline:
            print(f"{path} on {host}:{port} not 200 within {args.deadline}s (last: {status}); stopping it",
                  file=sys.stderr, flush=True)
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            return 1
        time.sleep(0.001)  # a poll interval, not synchronisation: the loop ends on the 200 or the deadline


# --------------------------------------------------------------------------------------------------
# rss


def cmd_rss(args):
    rss, hwm = rss_of(args.pids)
    print(f"{rss}\t{hwm}")
    return 0


def cmd_cpu(args):
    try:
        total = sum(cpu_seconds(p) for p in args.pids)
    except (OSError, ValueError, IndexError) as e:
        print(f"cannot read the CPU time of {args.pids}: {e}", file=sys.stderr)
        return 1
    print(f"{total:.2f}")
    return 0


# --------------------------------------------------------------------------------------------------
# idle


def read_response(sock, deadline):
    """Read one HTTP/1.1 response (Content-Length or chunked) so the connection can stay open;
    returns the status."""

    def more(buf, what):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the end of the {what}")
        return buf + chunk

    data = b""
    while b"\r\n\r\n" not in data:
        data = more(data, "response headers")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        # Enough for the bench's small JSON bodies: read up to the last chunk (no trailers expected).
        while not (body.endswith(b"\r\n0\r\n\r\n") or body == b"0\r\n\r\n"):
            body = more(body, "chunked body")
    else:
        while len(body) < length:
            body = more(body, "response body")
    return status


def cmd_idle(args):
    limit = raise_nofile(args.count + 256)
    if limit < args.count + 16:
        print(f"RLIMIT_NOFILE {limit} is too low for {args.count} connections", file=sys.stderr)
        return 1
    before_rss, _ = rss_of(args.pids)
    socks = []
    statuses = {}
    request = (f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
               + "".join(f"{h}\r\n" for h in args.header) + "\r\n").encode()
    deadline = time.monotonic() + args.deadline
    try:
        for _ in range(args.count):
            s = socket.create_connection((args.host, args.port), timeout=5)
            s.sendall(request)
            status = read_response(s, deadline)
            statuses[status] = statuses.get(status, 0) + 1
            socks.append(s)
        with_rss, _ = rss_of(args.pids)
        # Still open after the hold? A closed socket is readable (EOF) without blocking.
        end = time.monotonic() + args.hold
        closed = 0
        while time.monotonic() < end:
            readable, _, _ = select.select(socks, [], [], max(0.0, end - time.monotonic()))
            if not readable:
                break
            for s in readable:
                if s.recv(1, socket.MSG_PEEK) == b"":
                    closed += 1
                    socks.remove(s)
                    s.close()
        held_rss, hwm = rss_of(args.pids)
    finally:
        for s in socks:
            s.close()
    ok = statuses.get(200, 0)
    per_conn = (max(with_rss, held_rss) - before_rss) / args.count
    print(f"IDLE count={args.count} ok={ok} statuses={statuses} before_kib={before_rss} with_kib={with_rss} "
          f"after_hold_kib={held_rss} hwm_kib={hwm} per_conn_kib={per_conn:.1f} closed_during_hold={closed}")
    return 0 if ok == args.count else 1


def cmd_get(args):
    request = (f"GET {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
               + "".join(f"{h}\r\n" for h in args.header) + "\r\n").encode()
    statuses = {}
    start = time.monotonic()
    deadline = start + args.deadline
    with socket.create_connection((args.host, args.port), timeout=10) as s:
        for _ in range(args.count):
            s.sendall(request)
            status = read_response(s, deadline)
            statuses[status] = statuses.get(status, 0) + 1
    secs = time.monotonic() - start
    ok = statuses.get(200, 0)
    print(f"GET count={args.count} ok={ok} statuses={statuses} seconds={secs:.3f} rps={args.count / secs:.0f}")
    return 0 if ok == args.count else 1


# --------------------------------------------------------------------------------------------------
# wrk output


def parse_wrk_line(text):
    for line in text.splitlines():
        if line.startswith("WRK "):
            return dict(kv.split("=", 1) for kv in line[4:].split())
    return None


def read_wrk_stdin():
    text = sys.stdin.read()
    fields = parse_wrk_line(text)
    if fields is None:
        sys.stderr.write(text)
        print("no WRK line in wrk's output (is bench/wrk-report.lua in use?)", file=sys.stderr)
    return fields


def wrk_row(args, fields, **extra):
    errors = sum(int(fields[k]) for k in ("connect_err", "read_err", "write_err", "timeout_err"))
    row = {c: "" for c in COLUMNS}
    row.update({
        "kind": args.kind, "path": args.path, "conns": args.conns, "rps": fields["rps"],
        "p50_us": fields["p50_us"], "p99_us": fields["p99_us"], "p999_us": fields["p999_us"],
        "non2xx": fields["non2xx"], "errors": str(errors), "requests": fields["requests"],
    })
    row.update(extra)
    return "\t".join(str(row[c]) for c in COLUMNS)


def cmd_wrkline(args):
    fields = read_wrk_stdin()
    if fields is None:
        return 1
    requests = int(fields["requests"])
    print(wrk_row(args, fields, rss_kib=args.rss or "", hwm_kib=args.hwm or "", note=args.note or "",
                  cpu_us=per_request_us(*args.cpu, requests),
                  up_cpu_us=per_request_us(*args.upstream_cpu, requests)))
    return 0


def parse_perf_csv(path):
    """`perf stat -x,` output: value,unit,event,... per line; returns {event: float}."""
    counts = {}
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) < 3 or line.startswith("#"):
                continue
            value = num(parts[0])
            if value is not None:
                counts[parts[2].split(":")[0]] = value
    return counts


def cmd_perfline(args):
    fields = read_wrk_stdin()
    if fields is None:
        return 1
    counts = parse_perf_csv(args.perf)
    if "task-clock" not in counts or "context-switches" not in counts:
        print(f"{args.perf}: no task-clock / context-switches counts (got {sorted(counts)})", file=sys.stderr)
        return 1
    requests = int(fields["requests"])
    if not requests:
        print("wrk completed no request during the perf run", file=sys.stderr)
        return 1
    task_us = counts["task-clock"] * 1000 / requests  # task-clock is in msec
    cs = counts["context-switches"] / requests
    args.kind = "perf"
    print(wrk_row(args, fields, value=f"{task_us:.1f}", cpu_us=per_request_us(*args.cpu, requests),
                  note=f"task_clock_us_per_req={task_us:.1f} context_switches_per_req={cs:.2f}"))
    return 0


def parse_strace_summary(path):
    """`strace -c` summary table -> ({syscall: calls}, total calls). The total is the sum of the rows
    (the "total" row drops its usecs/call column in some strace versions)."""
    calls = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                calls[parts[-1]] = int(parts[3])  # % time, seconds, usecs/call, calls [, errors], name
    return calls, sum(calls.values())


def cmd_straceline(args):
    fields = read_wrk_stdin()
    if fields is None:
        return 1
    calls, total = parse_strace_summary(args.strace)
    requests = int(fields["requests"])
    if not requests or not total:
        print(f"no requests ({requests}) or no syscalls counted ({args.strace})", file=sys.stderr)
        return 1
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:6]
    detail = ",".join(f"{name}:{n / requests:.2f}" for name, n in top)
    args.kind = "syscalls"
    print(wrk_row(args, fields, value=f"{total / requests:.2f}",
                  note=f"syscalls_per_req={total / requests:.2f} top={detail}"))
    return 0


# --------------------------------------------------------------------------------------------------
# refresh slices


def cmd_slices(args):
    """slices file: start_epoch end_epoch <wrk output line>; mints file: nginx log lines '$msec ...'."""
    mints = []
    with open(args.mints) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "/oauth/v2/token":
                mints.append(float(parts[0]))
    refresh, steady, bad = [], [], 0
    with open(args.slices) as f:
        for line in f:
            start, end, rest = line.split(" ", 2)
            fields = parse_wrk_line(rest)
            if fields is None:
                continue
            start, end = float(start), float(end)
            p999 = float(fields["p999_us"])
            bad += int(fields["non2xx"]) + sum(int(fields[k]) for k in ("connect_err", "read_err", "write_err", "timeout_err"))
            # A mint inside the slice, or just before it (its effect may spill over), marks it.
            if any(start - args.margin <= m <= end for m in mints):
                refresh.append(p999)
            else:
                steady.append(p999)
    # Medians on both sides: a max over a handful of refresh slices against a median of many steady
    # ones would be biased against the proxy by noise alone. The maxima are printed for context.
    nan = float("nan")
    during = statistics.median(refresh) if refresh else nan
    base = statistics.median(steady) if steady else nan
    ratio = during / base if refresh and steady and base > 0 else nan
    print(f"REFRESH slices_refresh={len(refresh)} slices_steady={len(steady)} mints={len(mints)} "
          f"p999_refresh_median_us={during:.0f} p999_steady_median_us={base:.0f} ratio={ratio:.2f} "
          f"p999_refresh_max_us={max(refresh) if refresh else nan:.0f} "
          f"p999_steady_max_us={max(steady) if steady else nan:.0f} bad={bad}")
    return 0


# --------------------------------------------------------------------------------------------------
# report


def load_rows(path):
    rows = []
    with open(path) as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            values = line.rstrip("\n").split("\t")
            values += [""] * (len(COLUMNS) - len(values))
            rows.append(dict(zip(COLUMNS, values)))
    return rows


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def fmt_ms(us):
    u = num(us)
    return "-" if u is None else f"{u / 1000:.2f}"


def fmt_mib(kib):
    k = num(kib)
    return "-" if k is None else f"{k / 1024:.1f}"


def path_key(path):
    """direct, then the nginx peers, the HAProxy peers, other peers, then the proxy."""
    if path == "direct":
        return (0, "")
    if path == "proxy":
        return (4, "")
    for i, family in enumerate(("nginx", "haproxy"), start=1):
        if path == family or path.startswith(family + "-"):
            return (i, path)
    return (3, path)


def is_peer(path):
    return path not in ("direct", "proxy")


def aggregate(rows):
    """Repeated wrk and streaming runs (BENCH_ROUNDS, BENCH_STREAM_REPEAT) become one row each:
    medians of the figures, sums of the error counts and requests, the highest memory figure."""
    groups, others = {}, []
    for r in rows:
        if r["kind"] in ("wrk", "stream"):
            groups.setdefault((r["kind"], r["path"], r["conns"]), []).append(r)
        else:
            others.append(r)
    merged = []
    for (kind, path, conns), rs in groups.items():
        m = dict(rs[0])
        for col in ("rps", "p50_us", "p99_us", "p999_us", "value", "cpu_us", "up_cpu_us"):
            vals = [num(r[col]) for r in rs if num(r[col]) is not None]
            m[col] = str(statistics.median(vals)) if vals else ""
        for col in ("non2xx", "errors", "requests"):
            m[col] = str(sum(int(num(r[col]) or 0) for r in rs))
        for col in ("rss_kib", "hwm_kib"):
            vals = [num(r[col]) for r in rs if num(r[col]) is not None]
            m[col] = str(max(vals)) if vals else ""
        if len(rs) > 1:
            m["note"] = f"median of {len(rs)} runs"
        merged.append(m)

    def conns_key(c):
        return (0, int(c), "") if c.isdigit() else (1, 0, c)

    merged.sort(key=lambda r: (r["kind"], path_key(r["path"]), conns_key(r["conns"])))
    others.sort(key=lambda r: (r["kind"] not in ("perf", "syscalls"), path_key(r["path"])))
    return merged + others


def fmt_x(x):
    return "-" if x is None else f"{x:.2f}x"


def fmt_f(v, digits=0):
    x = num(v)
    return "-" if x is None else f"{x:.{digits}f}"


def best(rows, key, highest):
    """The row with the best value of key (highest or lowest) among rows that have one."""
    have = [r for r in rows if num(r[key]) is not None and num(r[key]) > 0]
    if not have:
        return None
    return (max if highest else min)(have, key=lambda r: num(r[key]))


def ratio(a, b, key):
    if a is None or b is None or not num(a[key]) or not num(b[key]):
        return None
    return num(a[key]) / num(b[key])


def compare(wrk):
    """Per connection count: the proxy against the best peer on each metric (highest req/s, lowest
    CPU per request, lowest p99), against nginx's best setting (its highest req/s) and against the
    direct path."""
    out = []
    for conns in sorted({int(r["conns"]) for r in wrk}):
        at = [r for r in wrk if r["conns"] == str(conns)]
        peers = [r for r in at if is_peer(r["path"])]
        nginx = [r for r in peers if r["path"].startswith("nginx")]
        proxy = next((r for r in at if r["path"] == "proxy"), None)
        direct = next((r for r in at if r["path"] == "direct"), None)
        b_rps, b_cpu, b_p99 = best(peers, "rps", True), best(peers, "cpu_us", False), best(peers, "p99_us", False)
        b_nginx = best(nginx, "rps", True)
        out.append({
            "conns": conns,
            "best_rps_peer": b_rps and b_rps["path"], "rps_vs_best": ratio(proxy, b_rps, "rps"),
            "best_cpu_peer": b_cpu and b_cpu["path"], "cpu_vs_best": ratio(proxy, b_cpu, "cpu_us"),
            "best_p99_peer": b_p99 and b_p99["path"], "p99_vs_best": ratio(proxy, b_p99, "p99_us"),
            "best_nginx": b_nginx and b_nginx["path"], "rps_vs_nginx": ratio(proxy, b_nginx, "rps"),
            "cpu_vs_nginx": ratio(proxy, b_nginx, "cpu_us"), "p99_vs_nginx": ratio(proxy, b_nginx, "p99_us"),
            "rps_vs_direct": ratio(proxy, direct, "rps"),
            "best_peer_vs_direct": ratio(b_rps, direct, "rps"),
        })
    return out


def cmd_report(args):
    rows = aggregate(load_rows(args.results))
    out = []
    targets = []  # (name, ok or None, detail)

    def find(kind, path, conns=None):
        for r in rows:
            if r["kind"] == kind and r["path"] == path and (conns is None or r["conns"] == str(conns)):
                return r
        return None

    wrk = [r for r in rows if r["kind"] == "wrk"]
    comparisons = compare(wrk) if wrk else []
    if wrk:
        out.append("Throughput, latency and CPU per request (wrk, GET /crm/v8/Leads, ~2 KB JSON; CPU = utime+stime")
        out.append("of the path's processes / requests; upstr = the same for the upstream nginx)")
        out.append(f"{'path':<11} {'conns':>5} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} "
                   f"{'CPU us/req':>10} {'upstr us':>8} {'non-2xx':>7} {'sock err':>8} {'RSS MiB':>7} {'peak MiB':>8}")
        for r in wrk:
            out.append(f"{r['path']:<11} {r['conns']:>5} {num(r['rps']) or 0:>8.0f} {fmt_ms(r['p50_us']):>7} "
                       f"{fmt_ms(r['p99_us']):>7} {fmt_ms(r['p999_us']):>8} {fmt_f(r['cpu_us'], 1):>10} "
                       f"{fmt_f(r['up_cpu_us'], 1):>8} {r['non2xx']:>7} {r['errors']:>8} "
                       f"{fmt_mib(r['rss_kib']):>7} {fmt_mib(r['hwm_kib']):>8}")
        out.append("")
        out.append("Proxy against the best peer of this run on each metric (req/s: higher is better; CPU per request")
        out.append("and p99: lower is better), and against nginx's best setting (its highest req/s)")
        out.append(f"{'conns':>5} {'req/s vs best':>24} {'CPU/req vs best':>24} {'p99 vs best':>24} "
                   f"{'req/s vs nginx best':>26} {'CPU/req vs nginx':>16} {'req/s vs direct':>15}")
        for c in comparisons:
            def cell(peer, x):
                return "-" if peer is None else f"{fmt_x(x)} ({peer})"
            out.append(f"{c['conns']:>5} {cell(c['best_rps_peer'], c['rps_vs_best']):>24} "
                       f"{cell(c['best_cpu_peer'], c['cpu_vs_best']):>24} {cell(c['best_p99_peer'], c['p99_vs_best']):>24} "
                       f"{cell(c['best_nginx'], c['rps_vs_nginx']):>26} {fmt_x(c['cpu_vs_nginx']):>16} "
                       f"{fmt_x(c['rps_vs_direct']):>15}")
            conns = c["conns"]
            if c["rps_vs_best"] is not None:
                targets.append((f"throughput >= 1.0x the best peer at {conns} conns", c["rps_vs_best"] >= 1.0,
                                f"{c['rps_vs_best']:.2f}x {c['best_rps_peer']}"))
            if c["cpu_vs_best"] is not None:
                targets.append((f"CPU per request <= 1.0x the best peer at {conns} conns", c["cpu_vs_best"] <= 1.0,
                                f"{c['cpu_vs_best']:.2f}x {c['best_cpu_peer']}"))
            if c["p99_vs_best"] is not None:
                targets.append((f"p99 <= 1.0x the best peer at {conns} conns", c["p99_vs_best"] <= 1.0,
                                f"{c['p99_vs_best']:.2f}x {c['best_p99_peer']}"))
            if conns >= 64 and c["rps_vs_nginx"] is not None:
                targets.append((f"throughput >= 1.2x nginx's best at {conns} conns", c["rps_vs_nginx"] >= 1.2,
                                f"{c['rps_vs_nginx']:.2f}x {c['best_nginx']}"))
        proxy_rows = [r for r in wrk if r["path"] == "proxy"]
        if proxy_rows:
            bad = sum(int(num(r["non2xx"]) or 0) + int(num(r["errors"]) or 0) for r in proxy_rows)
            targets.append(("zero non-2xx / socket errors through the proxy", bad == 0, str(bad)))
            p256 = find("wrk", "proxy", 256) or proxy_rows[-1]
            hwm = num(p256["hwm_kib"])
            if hwm is not None:
                targets.append((f"proxy RSS <= 30 MiB at {p256['conns']} conns (peak)", hwm <= 30 * 1024,
                                f"{hwm / 1024:.1f} MiB"))
        peer_bad = sum(int(num(r["non2xx"]) or 0) + int(num(r["errors"]) or 0) for r in wrk if is_peer(r["path"]))
        if peer_bad:
            out.append(f"WARNING: {peer_bad} non-2xx / socket errors on the peers: their figures are not comparable")
        out.append("")

    profile = [r for r in rows if r["kind"] in ("perf", "syscalls")]
    if profile:
        out.append("Profile (perf stat -e task-clock,context-switches -p PIDS, and strace -c -f -p PIDS in a separate")
        out.append("run; per request = count / requests wrk completed in that run)")
        out.append(f"{'path':<11} {'conns':>5} {'req/s':>8} {'task-clock us/req':>17} {'CPU us/req':>10} "
                   f"{'ctx sw/req':>10} {'syscalls/req':>12} top syscalls per request")
        for path in sorted({r["path"] for r in profile}, key=path_key):
            pf, sc = find("perf", path), find("syscalls", path)
            kv = lambda r, k: next((x.split("=", 1)[1] for x in r["note"].split() if x.startswith(k + "=")), None) if r else None
            out.append(f"{path:<11} {(pf or sc)['conns']:>5} {fmt_f(pf and pf['rps']):>8} "
                       f"{fmt_f(pf and pf['value'], 1):>17} {fmt_f(pf and pf['cpu_us'], 1):>10} "
                       f"{fmt_f(kv(pf, 'context_switches_per_req'), 2):>10} {fmt_f(sc and sc['value'], 2):>12} "
                       f"{(kv(sc, 'top') or '-').replace(',', ' ')}")
        out.append("")

    streams = [r for r in rows if r["kind"] == "stream"]
    if streams:
        out.append("Streaming (curl, one transfer per run; median over runs)")
        out.append(f"{'path':<11} {'direction':<9} {'MB/s':>9} note")
        for r in streams:
            out.append(f"{r['path']:<11} {r['conns']:<9} {num(r['value']) or 0:>9.1f} {r['note']}")
        for direction in ("download", "upload"):
            at = [r for r in streams if r["conns"] == direction]
            p = find("stream", "proxy", direction)
            b = best([r for r in at if is_peer(r["path"])], "value", True)
            n = best([r for r in at if r["path"].startswith("nginx")], "value", True)
            if p and b:
                out.append(f"  {direction}: proxy / best peer ({b['path']}) {fmt_x(ratio(p, b, 'value'))}"
                           + (f", proxy / nginx's best ({n['path']}) {fmt_x(ratio(p, n, 'value'))}" if n else ""))
            if p and n and ratio(p, n, "value") is not None:
                r = ratio(p, n, "value")
                targets.append((f"{direction} streaming >= 0.9x nginx's best", r >= 0.9, f"{r:.2f}x {n['path']}"))
        out.append("")

    for r in rows:
        if r["kind"] == "ready":
            out.append(f"Start to ready ({r['conns']}): {num(r['value']):.1f} ms  {r['note']}")
            if r["conns"] == "stored-token":
                targets.append(("ready within 100 ms with a stored token", num(r["value"]) <= 100,
                                f"{num(r['value']):.1f} ms"))
        if r["kind"] == "idle":
            out.append(f"Idle keep-alive ({r['path']}): {r['note']}")
            if r["path"] == "proxy":
                out.append(f"  proxy RSS with the connections held: {fmt_mib(r['rss_kib'])} MiB "
                           f"({num(r['value']):.1f} KiB per connection)")
        if r["kind"] == "refresh":
            out.append(f"Refresh under load: {r['note']}")
            bad = next((kv.split("=", 1)[1] for kv in r["note"].split() if kv.startswith("bad=")), None)
            if bad is not None:
                targets.append(("zero non-2xx / socket errors during the refresh run", bad == "0", bad))
            ratio_ = num(r["value"])
            targets.append(("refresh under load raises p99.9 by <= 1.5x",
                            None if ratio_ is None or ratio_ != ratio_ else ratio_ <= 1.5,
                            "n/a" if ratio_ is None or ratio_ != ratio_ else f"{ratio_:.2f}x"))
    out.append("")
    if targets:
        out.append("Targets (issues 6 and 17)")
        for name, ok, detail in targets:
            mark = "PASS" if ok else ("n/a " if ok is None else "FAIL")
            out.append(f"  [{mark}] {name}: {detail}")
    print("\n".join(out))

    if args.json:
        def typed(r):
            return {k: (num(v) if k not in ("kind", "path", "conns", "note") and num(v) is not None else v)
                    for k, v in r.items() if v != ""}
        doc = {
            "rows": [typed(r) for r in rows],
            "comparisons": comparisons,
            "targets": [{"name": n, "ok": ok, "detail": d} for n, ok, d in targets],
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(wrk, comparisons, targets))
    return 0


def markdown(wrk, comparisons, targets):
    """The wrk figures, the comparisons and the targets as markdown tables (for READMEs and notes)."""
    lines = ["| path | conns | req/s | p50 ms | p99 ms | CPU µs/req | upstream CPU µs/req | non-2xx | peak RSS MiB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in wrk:
        lines.append(f"| {r['path']} | {r['conns']} | {num(r['rps']) or 0:,.0f} | {fmt_ms(r['p50_us'])} | "
                     f"{fmt_ms(r['p99_us'])} | {fmt_f(r['cpu_us'], 1)} | {fmt_f(r['up_cpu_us'], 1)} | "
                     f"{int(num(r['non2xx']) or 0) + int(num(r['errors']) or 0)} | {fmt_mib(r['hwm_kib'])} |")
    lines += ["", "| conns | req/s vs best peer | CPU/req vs best peer | p99 vs best peer | req/s vs nginx's best | CPU/req vs nginx's best |",
              "| --- | --- | --- | --- | --- | --- |"]
    for c in comparisons:
        def cell(peer, x):
            return "-" if peer is None else f"{fmt_x(x)} ({peer})"
        lines.append(f"| {c['conns']} | {cell(c['best_rps_peer'], c['rps_vs_best'])} | "
                     f"{cell(c['best_cpu_peer'], c['cpu_vs_best'])} | {cell(c['best_p99_peer'], c['p99_vs_best'])} | "
                     f"{cell(c['best_nginx'], c['rps_vs_nginx'])} | {fmt_x(c['cpu_vs_nginx'])} |")
    if targets:
        lines += ["", "| target | result |", "| --- | --- |"]
        for name, ok, detail in targets:
            mark = "PASS" if ok else ("n/a" if ok is None else "**FAIL**")
            lines.append(f"| {name} | {mark}: {detail} |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("ready")
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--path", default="/readyz")
    r.add_argument("--deadline", type=float, default=30.0)
    r.add_argument("--log", required=True)
    r.add_argument("command", nargs=argparse.REMAINDER)

    s = sub.add_parser("rss")
    s.add_argument("pids", nargs="+", type=int)

    c = sub.add_parser("cpu")
    c.add_argument("pids", nargs="+", type=int)

    i = sub.add_parser("idle")
    i.add_argument("--host", default="127.0.0.1")
    i.add_argument("--port", type=int, required=True)
    i.add_argument("--path", default="/crm/v8/Leads")
    i.add_argument("--header", action="append", default=[])
    i.add_argument("--count", type=int, default=1000)
    i.add_argument("--hold", type=float, default=2.0)
    i.add_argument("--deadline", type=float, default=60.0)
    i.add_argument("--pids", type=lambda v: [int(x) for x in v.split(",") if x], required=True)

    g = sub.add_parser("get")
    g.add_argument("--host", default="127.0.0.1")
    g.add_argument("--port", type=int, required=True)
    g.add_argument("--path", default="/crm/v8/Leads")
    g.add_argument("--header", action="append", default=[])
    g.add_argument("--count", type=int, default=1000)
    g.add_argument("--deadline", type=float, default=600.0)

    w = sub.add_parser("wrkline")
    w.add_argument("--kind", default="wrk")
    w.add_argument("--path", required=True)
    w.add_argument("--conns", required=True)
    w.add_argument("--rss")
    w.add_argument("--hwm")
    w.add_argument("--note")
    w.add_argument("--cpu", nargs=2, default=["", ""], metavar=("BEFORE", "AFTER"),
                   help="CPU seconds of the path's processes before and after the run (bench.py cpu)")
    w.add_argument("--upstream-cpu", nargs=2, default=["", ""], metavar=("BEFORE", "AFTER"))

    pf = sub.add_parser("perfline")
    pf.add_argument("--path", required=True)
    pf.add_argument("--conns", required=True)
    pf.add_argument("--perf", required=True, help="perf stat -x, output file")
    pf.add_argument("--cpu", nargs=2, default=["", ""], metavar=("BEFORE", "AFTER"))

    st = sub.add_parser("straceline")
    st.add_argument("--path", required=True)
    st.add_argument("--conns", required=True)
    st.add_argument("--strace", required=True, help="strace -c -o output file")

    sl = sub.add_parser("slices")
    sl.add_argument("slices")
    sl.add_argument("mints")
    sl.add_argument("--margin", type=float, default=0.5)

    rp = sub.add_parser("report")
    rp.add_argument("results")
    rp.add_argument("--json", help="also write the rows, comparisons and targets as JSON here")
    rp.add_argument("--markdown", help="also write the wrk figures, comparisons and targets as markdown tables here")

    args = p.parse_args()
    if args.cmd == "ready":
        if args.command and args.command[0] == "--":
            args.command = args.command[1:]
        if not args.command:
            p.error("ready: give the command after --")
    return {"ready": cmd_ready, "rss": cmd_rss, "cpu": cmd_cpu, "idle": cmd_idle, "get": cmd_get, "wrkline": cmd_wrkline,
            "perfline": cmd_perfline, "straceline": cmd_straceline, "slices": cmd_slices,
            "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Helpers for bench/run.sh (standard library only).

  ready    spawn a command, poll an HTTP URL until it answers 200, print the elapsed time; the command
           keeps running (its PID is printed) so run.sh can use and later stop it
  rss      print VmRSS / VmHWM (KiB) summed over PIDs
  idle     open N keep-alive connections, one request each, hold them, report RSS growth of PIDs
  wrkline  turn wrk's "WRK key=value ..." line (bench/wrk-report.lua) into a TSV row
  slices   refresh-under-load analysis: p99.9 of wrk slices with a token mint vs without
  report   print the results table, the ratios and the issue's targets

Results are kept in one TSV file (see COLUMNS); run.sh appends to it, `report` reads it.
"""

import argparse
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
    "kind",  # wrk | stream | ready | idle | refresh
    "path",  # direct | nginx | proxy
    "conns",
    "rps",
    "p50_us",
    "p99_us",
    "p999_us",
    "non2xx",
    "errors",
    "rss_kib",
    "hwm_kib",
    "value",  # kind-specific figure: MB/s (stream), ms (ready), KiB per connection (idle)
    "note",
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


# --------------------------------------------------------------------------------------------------
# wrk output


def parse_wrk_line(text):
    for line in text.splitlines():
        if line.startswith("WRK "):
            return dict(kv.split("=", 1) for kv in line[4:].split())
    return None


def cmd_wrkline(args):
    text = sys.stdin.read()
    fields = parse_wrk_line(text)
    if fields is None:
        sys.stderr.write(text)
        print("no WRK line in wrk's output (is bench/wrk-report.lua in use?)", file=sys.stderr)
        return 1
    errors = sum(int(fields[k]) for k in ("connect_err", "read_err", "write_err", "timeout_err"))
    row = {
        "kind": args.kind, "path": args.path, "conns": args.conns, "rps": fields["rps"],
        "p50_us": fields["p50_us"], "p99_us": fields["p99_us"], "p999_us": fields["p999_us"],
        "non2xx": fields["non2xx"], "errors": str(errors), "rss_kib": args.rss or "", "hwm_kib": args.hwm or "",
        "value": "", "note": args.note or "",
    }
    print("\t".join(str(row[c]) for c in COLUMNS))
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


PATH_ORDER = {"direct": 0, "nginx": 1, "proxy": 2}


def aggregate(rows):
    """Repeated wrk and streaming runs (BENCH_ROUNDS, BENCH_STREAM_REPEAT) become one row each:
    medians of the figures, sums of the error counts, the highest memory figure."""
    groups, others = {}, []
    for r in rows:
        if r["kind"] in ("wrk", "stream"):
            groups.setdefault((r["kind"], r["path"], r["conns"]), []).append(r)
        else:
            others.append(r)
    merged = []
    for (kind, path, conns), rs in groups.items():
        m = dict(rs[0])
        for col in ("rps", "p50_us", "p99_us", "p999_us", "value"):
            vals = [num(r[col]) for r in rs if num(r[col]) is not None]
            m[col] = str(statistics.median(vals)) if vals else ""
        for col in ("non2xx", "errors"):
            m[col] = str(sum(int(num(r[col]) or 0) for r in rs))
        for col in ("rss_kib", "hwm_kib"):
            vals = [num(r[col]) for r in rs if num(r[col]) is not None]
            m[col] = str(max(vals)) if vals else ""
        if len(rs) > 1:
            m["note"] = f"median of {len(rs)} runs"
        merged.append(m)

    def conns_key(c):
        return (0, int(c), "") if c.isdigit() else (1, 0, c)

    merged.sort(key=lambda r: (r["kind"], PATH_ORDER.get(r["path"], 9), conns_key(r["conns"])))
    return merged + others


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
    if wrk:
        out.append("Throughput and latency (wrk, GET /crm/v8/Leads, ~2 KB JSON)")
        out.append(f"{'path':<8} {'conns':>5} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} "
                   f"{'non-2xx':>8} {'sock err':>8} {'RSS MiB':>8} {'peak MiB':>8}")
        for r in wrk:
            out.append(f"{r['path']:<8} {r['conns']:>5} {num(r['rps']) or 0:>10.0f} {fmt_ms(r['p50_us']):>8} "
                       f"{fmt_ms(r['p99_us']):>8} {fmt_ms(r['p999_us']):>9} {r['non2xx']:>8} {r['errors']:>8} "
                       f"{fmt_mib(r['rss_kib']):>8} {fmt_mib(r['hwm_kib']):>8}")
        out.append("")
        out.append("Ratios (proxy / peer; throughput higher is better, p99 lower is better)")
        out.append(f"{'conns':>5} {'rps proxy/nginx':>16} {'rps proxy/direct':>17} {'rps nginx/direct':>17} "
                   f"{'p99 proxy/nginx':>16}")
        for conns in sorted({int(r["conns"]) for r in wrk}):
            d, n, p = find("wrk", "direct", conns), find("wrk", "nginx", conns), find("wrk", "proxy", conns)

            def ratio(a, b, key):
                if a is None or b is None or not num(b[key]):
                    return None
                return num(a[key]) / num(b[key])

            pn, pd, nd = ratio(p, n, "rps"), ratio(p, d, "rps"), ratio(n, d, "rps")
            lat = ratio(p, n, "p99_us")
            f = lambda x: "-" if x is None else f"{x:.2f}x"
            out.append(f"{conns:>5} {f(pn):>16} {f(pd):>17} {f(nd):>17} {f(lat):>16}")
            if conns >= 64 and pn is not None:
                targets.append((f"throughput >= 1.0x nginx at {conns} conns (stretch 1.2x)", pn >= 1.0, f"{pn:.2f}x"))
            if conns >= 64 and lat is not None:
                targets.append((f"p99 <= nginx at {conns} conns", lat <= 1.0, f"{lat:.2f}x"))
        proxy_rows = [r for r in wrk if r["path"] == "proxy"]
        if proxy_rows:
            bad = sum(int(num(r["non2xx"]) or 0) + int(num(r["errors"]) or 0) for r in proxy_rows)
            targets.append(("zero non-2xx / socket errors through the proxy", bad == 0, str(bad)))
            p256 = find("wrk", "proxy", 256) or proxy_rows[-1]
            hwm = num(p256["hwm_kib"])
            if hwm is not None:
                targets.append((f"proxy RSS <= 30 MiB at {p256['conns']} conns (peak)", hwm <= 30 * 1024,
                                f"{hwm / 1024:.1f} MiB"))
        out.append("")

    streams = [r for r in rows if r["kind"] == "stream"]
    if streams:
        out.append("Streaming (curl, one transfer per run; median over runs)")
        out.append(f"{'path':<8} {'direction':<9} {'MB/s':>9} note")
        for r in streams:
            out.append(f"{r['path']:<8} {r['conns']:<9} {num(r['value']) or 0:>9.1f} {r['note']}")
        for direction in ("download", "upload"):
            n, p = find("stream", "nginx", direction), find("stream", "proxy", direction)
            if n and p and num(n["value"]):
                r = num(p["value"]) / num(n["value"])
                out.append(f"  {direction}: proxy/nginx {r:.2f}x")
                targets.append((f"{direction} streaming >= 0.9x nginx", r >= 0.9, f"{r:.2f}x"))
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
            ratio = num(r["value"])
            targets.append(("refresh under load raises p99.9 by <= 1.5x",
                            None if ratio is None or ratio != ratio else ratio <= 1.5,
                            "n/a" if ratio is None or ratio != ratio else f"{ratio:.2f}x"))
    out.append("")
    if targets:
        out.append("Targets (issue 6)")
        for name, ok, detail in targets:
            mark = "PASS" if ok else ("n/a " if ok is None else "FAIL")
            out.append(f"  [{mark}] {name}: {detail}")
    print("\n".join(out))
    return 0


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

    i = sub.add_parser("idle")
    i.add_argument("--host", default="127.0.0.1")
    i.add_argument("--port", type=int, required=True)
    i.add_argument("--path", default="/crm/v8/Leads")
    i.add_argument("--header", action="append", default=[])
    i.add_argument("--count", type=int, default=1000)
    i.add_argument("--hold", type=float, default=2.0)
    i.add_argument("--deadline", type=float, default=60.0)
    i.add_argument("--pids", type=lambda v: [int(x) for x in v.split(",") if x], required=True)

    w = sub.add_parser("wrkline")
    w.add_argument("--kind", default="wrk")
    w.add_argument("--path", required=True)
    w.add_argument("--conns", required=True)
    w.add_argument("--rss")
    w.add_argument("--hwm")
    w.add_argument("--note")

    sl = sub.add_parser("slices")
    sl.add_argument("slices")
    sl.add_argument("mints")
    sl.add_argument("--margin", type=float, default=0.5)

    rp = sub.add_parser("report")
    rp.add_argument("results")

    args = p.parse_args()
    if args.cmd == "ready":
        if args.command and args.command[0] == "--":
            args.command = args.command[1:]
        if not args.command:
            p.error("ready: give the command after --")
    return {"ready": cmd_ready, "rss": cmd_rss, "idle": cmd_idle, "wrkline": cmd_wrkline,
            "slices": cmd_slices, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())

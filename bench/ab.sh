#!/usr/bin/env bash
# Before/after comparison of two proxy binaries against the same peers, interleaved in the same
# minutes: CPU per request (user and system time from /proc/PID/stat of the proxy process, of
# nginx's master and workers, of HAProxy), throughput and non-2xx counts, at each connection count.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY
#
# It builds nothing: pass two release binaries (for example `git stash; cargo build --release;
# cp target/release/zoho-auth-proxy /tmp/old; git stash pop; cargo build --release`).
# The upstream, the nginx peer (1 worker), the HAProxy peer (1 thread, h2 upstream) and the
# proxy's config (its defaults apart from listen addresses) come from a bench/run.sh work
# directory: AB_WORKDIR names a kept one (BENCH_KEEP=1); without it a quick run.sh makes one.
#
# Settings (environment): AB_CONNS (connection counts, default "1 64 256"), AB_DURATION (seconds
# per measurement, default 4), AB_ROUNDS (default 2), AB_PATH (default /crm/v8/Leads), AB_FLOOR
# (the path of a `cargo build --release --example floor` binary: the floor of the crate stack,
# measured in each round too; see bench/README.md), AB_NEW_CONFIG (a config for the new binary
# instead of the work directory's proxy-main.yaml: to measure a setting, such as
# limits.upstream_concurrency, in the same minutes; same listen addresses).
set -euo pipefail

old=${1:?usage: bench/ab.sh OLD_BINARY NEW_BINARY}
new=${2:?usage: bench/ab.sh OLD_BINARY NEW_BINARY}
conns=${AB_CONNS:-1 64 256}
duration=${AB_DURATION:-4}
rounds=${AB_ROUNDS:-2}
path=${AB_PATH:-/crm/v8/Leads}
here=$(cd "$(dirname "$0")" && pwd)

for tool in wrk nginx haproxy curl; do
    command -v "$tool" >/dev/null || { echo "ab.sh: $tool is required (apt-get install -y wrk nginx haproxy curl)" >&2; exit 2; }
done

# shellcheck source=bench/workdir.sh
. "$here/workdir.sh"
work=${AB_WORKDIR:-}
if [[ -z $work ]]; then
    work=$(quick_workdir "$new") || exit 1
fi
for f in upstream/nginx.conf nginx-1/nginx.conf haproxy-1/haproxy.cfg proxy-main.yaml; do
    [[ -f $work/$f ]] || { echo "ab.sh: $work/$f is missing (not a bench/run.sh work directory?)" >&2; exit 2; }
done
new_config=${AB_NEW_CONFIG:-$work/proxy-main.yaml}
[[ -f $new_config ]] || { echo "ab.sh: AB_NEW_CONFIG $new_config is missing" >&2; exit 2; }
port_of() { grep -m1 -oE "$2 127\.0\.0\.1:[0-9]+" "$1" | grep -oE '[0-9]+$'; }
{ read -r proxy_port; read -r admin_port; } < <(proxy_ports "$work")
nginx_port=$(port_of "$work/nginx-1/nginx.conf" 'listen')
haproxy_port=$(port_of "$work/haproxy-1/haproxy.cfg" 'bind')

pids=()
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap stop_all EXIT

nginx -p "$work/upstream" -e "$work/upstream/error.log" -c "$work/upstream/nginx.conf" -g 'daemon off;' &
pids+=($!)
nginx -p "$work/nginx-1" -e "$work/nginx-1/error.log" -c "$work/nginx-1/nginx.conf" -g 'daemon off;' &
nginx_master=$!
pids+=($nginx_master)
haproxy -db -f "$work/haproxy-1/haproxy.cfg" &
haproxy_pid=$!
pids+=($haproxy_pid)

ticks() { # summed utime and stime (clock ticks) of the given PIDs
    local u=0 s=0 a b
    for p in "$@"; do read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat"); u=$((u + a)); s=$((s + b)); done
    echo "$u $s"
}
measure() { # label conns port pids...
    local label=$1 c=$2 port=$3; shift 3
    local t=1; ((c > 1)) && t=2
    wrk -t$t -c"$c" -d1s "http://127.0.0.1:$port$path" >/dev/null
    local before after out
    before=$(ticks "$@")
    out=$(wrk -t$t -c"$c" -d"${duration}s" "http://127.0.0.1:$port$path")
    after=$(ticks "$@")
    python3 - "$label" "$c" "$before" "$after" "$(getconf CLK_TCK)" <<PY
import re, sys
label, c, before, after, hz = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split(), int(sys.argv[5])
out = """$out"""
n = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
us = lambda i: (int(after[i]) - int(before[i])) * 1e6 / hz / n
print(f"{label:<10} c={c:<4} {rps:>9.0f} req/s  CPU/req user {us(0):6.1f} us  sys {us(1):6.1f} us  total {us(0) + us(1):6.1f} us  non-2xx {bad.group(1) if bad else 0}")
PY
}

floor_pid=
floor_port=18439
if [[ -n ${AB_FLOOR:-} ]]; then
    upstream_port=$(port_of "$work/upstream/nginx.conf" 'listen')
    for _ in $(seq 1 100); do
        curl -so /dev/null "https://127.0.0.1:$upstream_port/" --cacert "$work/pki/ca.pem" && break
        sleep 0.05
    done
    "$AB_FLOOR" "127.0.0.1:$floor_port" "127.0.0.1:$upstream_port" localhost "$work/pki/ca.pem" \
        bench-token 2>"$work/ab-floor.log" &
    floor_pid=$!
    pids+=($floor_pid)
    for _ in $(seq 1 100); do
        curl -fso /dev/null "http://127.0.0.1:$floor_port$path" && break
        sleep 0.05
    done
fi

echo "work directory: $work"
echo "old: $old"
echo "new: $new"
[[ $new_config == "$work/proxy-main.yaml" ]] || echo "new config: $new_config"
for c in $conns; do
    for r in $(seq 1 "$rounds"); do
        for which in old new; do
            bin=$old config=$work/proxy-main.yaml
            [[ $which == new ]] && bin=$new config=$new_config
            "$bin" --config "$config" >/dev/null 2>"$work/ab-$which.log" &
            proxy=$!
            wait_ready "$admin_port"
            measure "$which" "$c" "$proxy_port" "$proxy"
            kill "$proxy"; wait "$proxy" 2>/dev/null || true
        done
        # shellcheck disable=SC2046 # one PID per word
        measure nginx-1 "$c" "$nginx_port" "$nginx_master" $(pgrep -P "$nginx_master")
        measure haproxy-1 "$c" "$haproxy_port" "$haproxy_pid"
        if [[ -n $floor_pid ]]; then measure floor "$c" "$floor_port" "$floor_pid"; fi
    done
done

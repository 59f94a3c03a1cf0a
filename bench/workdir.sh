# Sourced by bench/ab.sh, bench/pgo.sh and bench/run.sh (not run on its own): the steps they share.
#
# quick_workdir BINARY: makes a bench/run.sh work directory with BINARY as the proxy (a quick run
# at one connection with one nginx worker and one HAProxy thread, kept) and prints its path.
# On failure it prints the run's last lines to stderr and returns 1.
quick_workdir() {
    local bin=$1 log work
    log=$(mktemp)
    if ! BENCH_KEEP=1 BENCH_QUICK=1 BENCH_DURATION=1 BENCH_CONNS=1 BENCH_NGINX_WORKERS=1 \
        BENCH_HAPROXY_THREADS=1 BENCH_PROXY_BIN="$bin" "$(dirname "${BASH_SOURCE[0]}")/run.sh" >"$log" 2>&1; then
        tail -20 "$log" >&2
        rm -f "$log"
        return 1
    fi
    work=$(sed -n 's/.*work directory kept: //p' "$log" | tail -1)
    rm -f "$log"
    [[ -n $work && -d $work ]] || { echo "bench/run.sh kept no work directory" >&2; return 1; }
    echo "$work"
}

# proxy_ports WORK: prints the proxy's listen port and its admin port from WORK/proxy-main.yaml.
proxy_ports() {
    local cfg=$1/proxy-main.yaml
    grep -m1 -oE '^listen: 127\.0\.0\.1:[0-9]+' "$cfg" | grep -oE '[0-9]+$'
    grep -A3 '^admin:' "$cfg" | grep -m1 -oE '127\.0\.0\.1:[0-9]+' | grep -oE '[0-9]+$'
}

# wait_ready ADMIN_PORT: waits up to 10 s for the proxy's /readyz; returns 1 if it never answers 200.
wait_ready() {
    local _
    for _ in $(seq 1 200); do
        curl -fs -o /dev/null "http://127.0.0.1:$1/readyz" && return 0
        sleep 0.05
    done
    echo "the proxy did not become ready" >&2
    return 1
}

# profile_age ROOT: one line on how old the release profile (pgo/zoho-auth-proxy.profdata) is: the
# commit that last wrote it and how many later commits change src/. Functions changed since the
# recording compile as without a profile, so a stale one quietly costs speed (issue 17's
# fourteenth round: 6 % CPU a request at 64 connections after seven commits to the request path).
profile_age() {
    local root=$1 at n
    at=$(git -C "$root" log -1 --format=%h -- pgo/zoho-auth-proxy.profdata 2>/dev/null) || at=
    if [[ -z $at ]]; then
        echo "Profile: pgo/zoho-auth-proxy.profdata (no git history)"
        return
    fi
    n=$(git -C "$root" rev-list --count "$at"..HEAD -- src 2>/dev/null || echo "?")
    if [[ $n == 0 ]]; then
        echo "Profile: recorded at $at; no later commit changes src/"
    else
        echo "Profile: recorded at $at; $n later commit(s) change src/ (re-record with bench/pgo.sh if they touch the request path)"
    fi
}

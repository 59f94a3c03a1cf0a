#!/usr/bin/env bash
# Overhead benchmark: zoho-auth-proxy against its peers, nginx and HAProxy with a static
# Authorization header, each at its default and its best setting, and the direct TLS path, on one
# machine, loopback only (issues 6 and 17). See bench/README.md.
#
#   bench/run.sh                      full run (~8 minutes)
#   BENCH_QUICK=1 bench/run.sh        smoke mode (a few seconds of load)
#   BENCH_SKIP_PROXY=1 bench/run.sh   only the direct and peer paths (no proxy binary needed)
#   BENCH_PROFILE=1 bench/run.sh      also perf stat and strace -c at one connection (per request)
#
# Settings (environment): BENCH_DURATION (s per wrk run), BENCH_CONNS ("1 64 256"), BENCH_ROUNDS,
# BENCH_WARMUP, BENCH_STREAM_MIB, BENCH_STREAM_REPEAT,
# BENCH_IDLE_CONNS, BENCH_REFRESH (0/1), BENCH_REFRESH_DURATION, BENCH_REFRESH_SLICE,
# BENCH_REFRESH_EXPIRES_IN, BENCH_REFRESH_CONNS, BENCH_PROXY_BIN, BENCH_PORT_BASE, BENCH_WRK_THREADS,
# BENCH_NGINX_WORKERS ("1 auto": one nginx peer per setting), BENCH_HAPROXY_THREADS ("1 2": one
# HAProxy peer per setting; empty: no HAProxy), BENCH_UPSTREAM_WORKERS,
# BENCH_UPSTREAM_KEEPALIVE_REQUESTS (the upstream's keepalive_requests), BENCH_UPSTREAM_CONCURRENCY,
# BENCH_PROFILE, BENCH_PROFILE_DURATION, BENCH_PROFILE_CONNS, BENCH_LOG_LEVEL, BENCH_MINT_BUDGET,
# BENCH_KEEP (keep the work directory), BENCH_RESULTS (report path), BENCH_STRICT (1: exit 1 when a
# target is missed).
#
# Everything listens on 127.0.0.1; every load run is bounded in time; every process started here is
# stopped by PID on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/workdir.sh
. "$HERE/workdir.sh"
PY=${PYTHON:-python3}

# ------------------------------------------------------------------------------------------------
# Settings

QUICK=${BENCH_QUICK:-0}
if [[ $QUICK == 1 ]]; then
    DURATION=${BENCH_DURATION:-1}
    CONNS=${BENCH_CONNS:-"1 64"}
    STREAM_MIB=${BENCH_STREAM_MIB:-32}
    IDLE_CONNS=${BENCH_IDLE_CONNS:-100}
    REFRESH=${BENCH_REFRESH:-0}
    WARMUP=${BENCH_WARMUP:-0}
    ROUNDS=${BENCH_ROUNDS:-1}
    STREAM_REPEAT=${BENCH_STREAM_REPEAT:-1}
else
    DURATION=${BENCH_DURATION:-10}
    CONNS=${BENCH_CONNS:-"1 64 256"}
    STREAM_MIB=${BENCH_STREAM_MIB:-1024}
    IDLE_CONNS=${BENCH_IDLE_CONNS:-1000}
    REFRESH=${BENCH_REFRESH:-1}
    WARMUP=${BENCH_WARMUP:-2}
    ROUNDS=${BENCH_ROUNDS:-1}
    STREAM_REPEAT=${BENCH_STREAM_REPEAT:-3}
fi
REFRESH_DURATION=${BENCH_REFRESH_DURATION:-60}
REFRESH_SLICE=${BENCH_REFRESH_SLICE:-2}
REFRESH_EXPIRES_IN=${BENCH_REFRESH_EXPIRES_IN:-20}
REFRESH_CONNS=${BENCH_REFRESH_CONNS:-64}
SKIP_PROXY=${BENCH_SKIP_PROXY:-0}
PORT_BASE=${BENCH_PORT_BASE:-18400}
THREADS=${BENCH_WRK_THREADS:-2}
# Each peer runs at its default and at the setting that was best on 2 shared cores; the report
# compares the proxy with the best of them in the same run.
NGINX_WORKERS_LIST=${BENCH_NGINX_WORKERS-1 auto}
HAPROXY_THREADS_LIST=${BENCH_HAPROXY_THREADS-1 2}
UPSTREAM_WORKERS=${BENCH_UPSTREAM_WORKERS:-1}
# Requests per upstream connection before nginx closes it (HTTP/2: with a GOAWAY). High by default
# so the runs measure steady connections; 1000 (nginx's default) exercises the reconnects.
UPSTREAM_KEEPALIVE_REQUESTS=${BENCH_UPSTREAM_KEEPALIVE_REQUESTS:-1000000}
# The proxy runs its defaults, as issue 17's acceptance does: 25 upstream slots, log.level info
# (one access line per request; the peers write none).
UPSTREAM_CONCURRENCY=${BENCH_UPSTREAM_CONCURRENCY:-25}
PROFILE=${BENCH_PROFILE:-0}
PROFILE_DURATION=${BENCH_PROFILE_DURATION:-$DURATION}
PROFILE_CONNS=${BENCH_PROFILE_CONNS:-1}
LOG_LEVEL=${BENCH_LOG_LEVEL:-info}
MINT_BUDGET=${BENCH_MINT_BUDGET:-8}
STRICT=${BENCH_STRICT:-0}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PROXY_BIN=${BENCH_PROXY_BIN:-$TARGET_DIR/release/zoho-auth-proxy}
RESULTS_MD=${BENCH_RESULTS:-$TARGET_DIR/bench/results.md}

UP_PORT=$((PORT_BASE + 1))       # TLS API upstream (nginx)
ACC_PORT=$((PORT_BASE + 2))      # token endpoint stand-in, expires_in 3600
ACC2_PORT=$((PORT_BASE + 3))     # token endpoint stand-in, short expires_in
PEER_PORT_BASE=$((PORT_BASE + 10)) # the peers (nginx, HAProxy), one port each: +10 ... +19
PROXY_PORT=$((PORT_BASE + 20))   # zoho-auth-proxy
ADMIN_PORT=$((PORT_BASE + 21))
PROXY_R_PORT=$((PORT_BASE + 30)) # zoho-auth-proxy for the refresh-under-load run
ADMIN_R_PORT=$((PORT_BASE + 31))

RECORD_ID=4150868000000000001
ATTACHMENT_ID=4150868000000000002
TOKEN_HEADER="Authorization: Zoho-oauthtoken bench-token"
LEADS_PATH=/crm/v8/Leads
DOWNLOAD_PATH=/crm/v8/Leads/$RECORD_ID/Attachments/$ATTACHMENT_ID
UPLOAD_PATH=/crm/v8/Leads/$RECORD_ID

# ------------------------------------------------------------------------------------------------
# Helpers

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

STARTED_PIDS=()
WORK=""

# stop_pid PID: SIGTERM, then SIGKILL after a bounded wait. Handles processes that are not our
# children (started through bench.py) and zombies left for a non-reaping PID 1.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        if ! kill -0 "$pid" 2>/dev/null || [[ $(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null) == Z ]]; then
            wait "$pid" 2>/dev/null || true
            return 0
        fi
        sleep 0.05 # bounded wait for the process to exit (5 s at most), then SIGKILL
    done
    log "PID $pid did not stop on SIGTERM within 5 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? i
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${STARTED_PIDS[$i]}"
    done
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ ${BENCH_KEEP:-0} == 1 || $rc -ne 0 ]]; then
            log "work directory kept: $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() {
    local pid=$1 i
    for i in "${!STARTED_PIDS[@]}"; do
        [[ ${STARTED_PIDS[$i]} == "$pid" ]] && unset 'STARTED_PIDS[i]'
    done
    STARTED_PIDS=("${STARTED_PIDS[@]}")
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_port PORT PID: until something accepts on PORT (bounded), failing early if PID died.
wait_port() {
    local port=$1 pid=$2 i
    for ((i = 0; i < 400; i++)); do
        port_open "$port" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.025 # poll interval; the loop is bounded to 10 s
    done
    return 1
}

# render TEMPLATE OUT NAME=VALUE...: replace @NAME@ placeholders; fail if one is left.
render() {
    local template=$1 out=$2 kv
    shift 2
    local text
    text=$(<"$template")
    for kv in "$@"; do
        text=${text//@${kv%%=*}@/${kv#*=}}
    done
    if grep -q '@[A-Z0-9_]*@' <<<"$text"; then
        die "$template: unfilled placeholders: $(grep -o '@[A-Z0-9_]*@' <<<"$text" | sort -u | tr '\n' ' ')"
    fi
    printf '%s\n' "$text" >"$out"
}

# have CMD: on PATH or in /usr/sbin (nginx and haproxy live there; root's PATH may lack it).
have() { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 ]]; }

# need_cmds: the Debian packages the run needs. As root the missing ones are installed with apt;
# otherwise the script stops and names each one with the part of the bench that needs it.
need_cmds() {
    local missing=() why=() pkg
    have nginx || { missing+=(nginx) why+=("nginx: the upstream, the token stand-ins and the nginx peer"); }
    have wrk || { missing+=(wrk) why+=("wrk: the load generator"); }
    have curl || { missing+=(curl) why+=("curl: sanity checks and streaming"); }
    have openssl || { missing+=(openssl) why+=("openssl: the bench CA"); }
    have "$PY" || { missing+=(python3) why+=("python3: bench/bench.py"); }
    if [[ -n ${HAPROXY_THREADS_LIST// /} ]]; then
        have haproxy || { missing+=(haproxy) why+=("haproxy: the HAProxy peer (BENCH_HAPROXY_THREADS='' skips it)"); }
    fi
    if [[ $PROFILE == 1 ]]; then
        have perf || { missing+=(linux-perf) why+=("linux-perf: perf stat in the profile part (BENCH_PROFILE=1)"); }
        have strace || { missing+=(strace) why+=("strace: strace -c in the profile part (BENCH_PROFILE=1)"); }
    fi
    if ((${#missing[@]})); then
        for pkg in "${why[@]}"; do log "missing: $pkg"; done
        [[ $(id -u) -eq 0 ]] || die "missing Debian packages: ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
        log "installing from apt: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
            die "apt-get install ${missing[*]} failed"
        # The packages may start a system nginx on port 80 or a system haproxy; not ours, not used.
        for pkg in "${missing[@]}"; do log "installed $pkg"; done
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
}

rss_of() { "$PY" "$HERE/bench.py" rss "$@"; }

# cpu_of PID...: utime + stime in seconds, summed over the processes (all their threads).
cpu_of() { "$PY" "$HERE/bench.py" cpu "$@"; }

# nginx_pids MASTER_PID: the master and its workers.
nginx_pids() {
    local children
    children=$(pgrep -P "$1" | tr '\n' ' ' || true)
    echo "$1 $children"
}

# nginx_workers MASTER_PID: the workers only (what strace attaches to).
nginx_workers() { pgrep -P "$1" | tr '\n' ' ' || true; }

start_nginx() { # NAME TEMPLATE WORKERS PORT -> NGINX_STARTED_PID
    local name=$1 template=$2 workers=$3 port=$4 dir="$WORK/$1" user_directive=""
    mkdir -p "$dir/tmp"
    if [[ $(id -u) -eq 0 ]]; then
        # Workers must read the 0700 work directory; everything stays on loopback.
        user_directive="user $(id -un) $(id -gn);"
    fi
    render "$template" "$dir/nginx.conf" \
        USER_DIRECTIVE="$user_directive" WORKERS="$workers" DIR="$dir" WORK="$WORK" \
        UP_PORT="$UP_PORT" ACC_PORT="$ACC_PORT" ACC2_PORT="$ACC2_PORT" NGX_PORT="$port" \
        RECORD_ID="$RECORD_ID" ATTACHMENT_ID="$ATTACHMENT_ID" REFRESH_EXPIRES_IN="$REFRESH_EXPIRES_IN" \
        UPSTREAM_KEEPALIVE_REQUESTS="$UPSTREAM_KEEPALIVE_REQUESTS"
    "$NGINX" -t -q -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" || die "nginx config $name invalid"
    "$NGINX" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' &
    local pid=$!
    STARTED_PIDS+=("$pid")
    NGINX_STARTED_PID=$pid
}

# start_haproxy NAME THREADS PORT -> HAPROXY_STARTED_PID. One process in the foreground (-db: no
# daemon, no master): its PID carries all its threads' CPU time.
start_haproxy() {
    local name=$1 threads=$2 port=$3 dir="$WORK/$1"
    mkdir -p "$dir"
    render "$HERE/haproxy-proxy.cfg" "$dir/haproxy.cfg" \
        THREADS="$threads" HAP_PORT="$port" UP_PORT="$UP_PORT" WORK="$WORK"
    "$HAPROXY" -c -q -f "$dir/haproxy.cfg" >"$dir/check.log" 2>&1 || {
        cat "$dir/check.log" >&2
        die "haproxy config $name invalid"
    }
    "$HAPROXY" -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
    local pid=$!
    STARTED_PIDS+=("$pid")
    HAPROXY_STARTED_PID=$pid
}

# peer_pids NAME: the processes whose CPU and memory count for a peer (nginx: master and workers).
peer_pids() {
    case $1 in
        nginx-*) nginx_pids "${PEER_PID[$1]}" ;;
        *) echo "${PEER_PID[$1]}" ;;
    esac
}

# path_pids PATH_KIND: the processes measured for a path (none for direct: that is the upstream).
path_pids() {
    case $1 in
        direct) ;;
        proxy) echo "$PROXY_PID" ;;
        *) peer_pids "$1" ;;
    esac
}

# proxy_config NAME ACCOUNTS_PORT PROXY_PORT ADMIN_PORT STORE -> $WORK/proxy-NAME.yaml
proxy_config() {
    render "$HERE/proxy.yaml" "$WORK/proxy-$1.yaml" \
        PROXY_PORT="$3" ADMIN_PORT="$4" ACCOUNTS_PORT="$2" UP_PORT="$UP_PORT" WORK="$WORK" \
        STORE="$5" LOG_LEVEL="$LOG_LEVEL" MINT_BUDGET="$MINT_BUDGET" UPSTREAM_CONCURRENCY="$UPSTREAM_CONCURRENCY"
}

# start_proxy_timed NAME ADMIN_PORT -> READY_MS, PROXY_STARTED_PID, SUPERVISOR_PID
# bench.py spawns the proxy, times it to the first 200 on /readyz and stays its parent (it reaps it
# and forwards SIGTERM), so the proxy never lingers as an orphan or a zombie.
start_proxy_timed() {
    local name=$1 admin=$2 out="$WORK/ready-$1.out" i
    : >"$out"
    "$PY" "$HERE/bench.py" ready --port "$admin" --path /readyz --deadline 30 \
        --log "$WORK/proxy-$name.log" -- "$PROXY_BIN" --config "$WORK/proxy-$name.yaml" >"$out" &
    SUPERVISOR_PID=$!
    STARTED_PIDS+=("$SUPERVISOR_PID")
    for ((i = 0; i < 800; i++)); do # bounded: 40 s, beyond bench.py's own 30 s deadline
        grep -q READY_MS "$out" && break
        kill -0 "$SUPERVISOR_PID" 2>/dev/null || break
        sleep 0.05
    done
    if ! grep -q READY_MS "$out"; then
        log "zoho-auth-proxy ($name) did not become ready; last lines of its log:"
        tail -n 30 "$WORK/proxy-$name.log" >&2 || true
        die "zoho-auth-proxy ($name) not ready"
    fi
    READY_MS=$(sed -n 's/.*READY_MS=\([0-9.]*\).*/\1/p' "$out")
    PROXY_STARTED_PID=$(sed -n 's/.*PID=\([0-9]*\).*/\1/p' "$out")
    STARTED_PIDS+=("$PROXY_STARTED_PID")
}

# stop_proxy PROXY_PID SUPERVISOR_PID: SIGTERM to the proxy (a graceful drain), then reap both.
stop_proxy() {
    stop_pid "$1"
    stop_pid "$2"
    forget_pid "$1"
    forget_pid "$2"
}

# result KIND PATH CONNS VALUE NOTE [RSS_KIB]: one row of the results TSV (columns: bench.py COLUMNS).
result() {
    printf '%s\t%s\t%s\t\t\t\t\t\t\t%s\t\t%s\t%s\n' "$1" "$2" "$3" "${6:-}" "$4" "$5" >>"$RESULTS"
}

mint_count() { # LOGFILE
    if [[ -f $1 ]]; then grep -c ' /oauth/v2/token ' "$1" || true; else echo 0; fi
}

url_for() { # PATH_KIND REQUEST_PATH
    case $1 in
        direct) echo "https://127.0.0.1:$UP_PORT$2" ;;
        proxy) echo "http://127.0.0.1:$PROXY_PORT$2" ;;
        *)
            [[ -n ${PEER_PORT[$1]:-} ]] || die "unknown path $1"
            echo "http://127.0.0.1:${PEER_PORT[$1]}$2"
            ;;
    esac
}

# curl_to PATH_KIND ARGS...: curl with what the path needs (the token and CA only for direct).
curl_to() {
    local kind=$1
    shift
    if [[ $kind == direct ]]; then
        curl --http1.1 --cacert "$WORK/pki/ca.pem" -H "$TOKEN_HEADER" "$@"
    else
        curl --http1.1 "$@"
    fi
}

# ------------------------------------------------------------------------------------------------
# Setup

need_cmds

# The peers: one nginx per BENCH_NGINX_WORKERS setting, one HAProxy per BENCH_HAPROXY_THREADS
# setting, each on its own port, all running for the whole bench (idle while another path is loaded).
PEERS=()
declare -A PEER_PORT PEER_PID PEER_SETTING
next_port=$PEER_PORT_BASE
for w in $NGINX_WORKERS_LIST; do
    PEERS+=("nginx-$w") PEER_PORT[nginx-$w]=$next_port PEER_SETTING[nginx-$w]="worker_processes $w"
    next_port=$((next_port + 1))
done
for t in $HAPROXY_THREADS_LIST; do
    PEERS+=("haproxy-$t") PEER_PORT[haproxy-$t]=$next_port PEER_SETTING[haproxy-$t]="nbthread $t"
    next_port=$((next_port + 1))
done
((${#PEERS[@]} >= 1)) || die "no peer: BENCH_NGINX_WORKERS and BENCH_HAPROXY_THREADS are both empty"
((${#PEERS[@]} <= 10)) || die "at most 10 peers (ports BENCH_PORT_BASE+10 ... +19)"

PATHS=(direct "${PEERS[@]}" proxy)
if [[ $SKIP_PROXY == 1 ]]; then
    PATHS=(direct "${PEERS[@]}")
    log "BENCH_SKIP_PROXY=1: measuring the direct and peer paths only"
elif [[ ! -x $PROXY_BIN ]]; then
    log "building $PROXY_BIN (cargo build --release --locked)"
    (cd "$ROOT" && cargo build --release --locked --bin zoho-auth-proxy) || die "release build failed"
    [[ -x $PROXY_BIN ]] || die "$PROXY_BIN not found after the build (set BENCH_PROXY_BIN?)"
fi

for port in "$UP_PORT" "$ACC_PORT" "$ACC2_PORT" "${PEER_PORT[@]}" "$PROXY_PORT" "$ADMIN_PORT" "$PROXY_R_PORT" "$ADMIN_R_PORT"; do
    port_open "$port" && die "port $port is in use; set BENCH_PORT_BASE to a free range"
done

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
if (($(ulimit -n) < IDLE_CONNS + 512)); then
    log "open-file limit $(ulimit -n) is low for $IDLE_CONNS idle connections"
fi

# tmpfs when available: the upload sink writes whole bodies, and disk speed is not what is measured.
parent=${BENCH_WORKDIR_PARENT:-/dev/shm}
[[ -d $parent && -w $parent ]] || parent=${TMPDIR:-/tmp}
WORK=$(mktemp -d "$parent/zoho-bench.XXXXXX")
mkdir -p "$WORK/pki" "$WORK/www" "$WORK/uploads/tmp" "$WORK/secrets"
log "work directory $WORK"

# A private CA and a server certificate for 127.0.0.1 / localhost (ECDSA P-256).
(
    cd "$WORK/pki"
    cat >ca.cnf <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = zoho-auth-proxy bench CA
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    openssl req -x509 -config ca.cnf -extensions v3_ca -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -nodes -keyout ca.key -out ca.pem -days 2 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key \
        -out server.csr -subj "/CN=localhost" 2>/dev/null
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile ca.cnf -extensions server -out server.pem 2>/dev/null
    openssl verify -CAfile ca.pem server.pem >/dev/null
) || die "certificate generation failed"

# Credentials the proxy sends to the token stand-in (which ignores them).
printf '%s' "bench-client-secret" >"$WORK/secrets/client_secret"
printf '%s' "1000.bench.refresh-token" >"$WORK/secrets/refresh_token"
chmod 600 "$WORK/secrets/"*

# A ~2 KB records page shaped like Zoho's, and a sparse file for the large download.
"$PY" - "$WORK/www/leads.json" <<'EOF'
import json, sys
records = []
for i in range(6):
    records.append({
        "Owner": {"name": "Bench User", "id": "4150868000000225013", "email": "bench@example.com"},
        "Company": f"Company {i}", "Email": f"lead{i}@example.com", "Last_Name": f"Lead {i}",
        "First_Name": "Bench", "Lead_Status": "Contacted", "Phone": "+1 555 0100",
        "Created_Time": "2026-01-01T10:00:00+00:00", "id": str(4150868000000000100 + i),
    })
body = {"data": records, "info": {"per_page": 200, "count": len(records), "page": 1,
                                  "sort_by": "id", "sort_order": "desc", "more_records": False}}
text = json.dumps(body)
open(sys.argv[1], "w").write(text)
EOF
LEADS_BYTES=$(stat -c %s "$WORK/www/leads.json")
STREAM_BYTES=$((STREAM_MIB * 1024 * 1024))
truncate -s "$STREAM_BYTES" "$WORK/www/large.bin"

RESULTS="$WORK/results.tsv"
: >"$RESULTS"

start_nginx upstream "$HERE/nginx-upstream.conf" "$UPSTREAM_WORKERS" 0
NGINX_PID_upstream=$NGINX_STARTED_PID
for peer in "${PEERS[@]}"; do
    case $peer in
        nginx-*)
            start_nginx "$peer" "$HERE/nginx-proxy.conf" "${peer#nginx-}" "${PEER_PORT[$peer]}"
            PEER_PID[$peer]=$NGINX_STARTED_PID
            ;;
        haproxy-*)
            start_haproxy "$peer" "${peer#haproxy-}" "${PEER_PORT[$peer]}"
            PEER_PID[$peer]=$HAPROXY_STARTED_PID
            ;;
    esac
done
wait_port "$UP_PORT" "$NGINX_PID_upstream" || die "upstream nginx did not start (see $WORK/upstream/error.log)"
wait_port "$ACC2_PORT" "$NGINX_PID_upstream" || die "upstream nginx did not start"
for peer in "${PEERS[@]}"; do
    wait_port "${PEER_PORT[$peer]}" "${PEER_PID[$peer]}" ||
        die "peer $peer did not start (see $WORK/$peer/: error.log or haproxy.log)"
done

# ------------------------------------------------------------------------------------------------
# zoho-auth-proxy: time to ready, cold and then with the token it stored

PROXY_PID=""
if [[ $SKIP_PROXY != 1 ]]; then
    proxy_config main "$ACC_PORT" "$PROXY_PORT" "$ADMIN_PORT" token-main.json
    before=$(mint_count "$WORK/upstream/accounts.log")
    start_proxy_timed main "$ADMIN_PORT"
    cold_ms=$READY_MS
    mints_cold=$(($(mint_count "$WORK/upstream/accounts.log") - before))
    result ready proxy cold "$cold_ms" "first start, $mints_cold token request(s)"
    log "cold start to ready: ${cold_ms} ms (${mints_cold} token request(s))"
    stop_proxy "$PROXY_STARTED_PID" "$SUPERVISOR_PID"
    [[ -s $WORK/token-main.json ]] || log "note: token store $WORK/token-main.json is missing or empty after a clean stop"

    before=$(mint_count "$WORK/upstream/accounts.log")
    start_proxy_timed main "$ADMIN_PORT"
    warm_ms=$READY_MS
    PROXY_PID=$PROXY_STARTED_PID
    mints_warm=$(($(mint_count "$WORK/upstream/accounts.log") - before))
    note="second start with the stored token, ${mints_warm} token request(s)"
    ((mints_warm == 0)) || note="$note: the stored token was NOT reused"
    result ready proxy stored-token "$warm_ms" "$note"
    log "start to ready with a stored token: ${warm_ms} ms (${mints_warm} token request(s))"
fi

# ------------------------------------------------------------------------------------------------
# Sanity: every path answers the records page, the upstream refuses a request without the token.

status=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$WORK/pki/ca.pem" "https://127.0.0.1:$UP_PORT$LEADS_PATH")
[[ $status == 401 ]] || die "upstream must answer 401 without the token, got $status"
for p in "${PATHS[@]}"; do
    got=$(curl_to "$p" -sS -o /dev/null -w '%{http_code} %{size_download}' "$(url_for "$p" "$LEADS_PATH")")
    [[ $got == "200 $LEADS_BYTES" ]] || die "$p: GET $LEADS_PATH gave '$got', expected '200 $LEADS_BYTES'"
done
if [[ $SKIP_PROXY != 1 ]]; then
    # The bench config allows Leads and attachments only: the proxy must refuse Contacts itself.
    status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PROXY_PORT/crm/v8/Contacts")
    [[ $status == 403 ]] || log "warning: GET /crm/v8/Contacts through the proxy gave $status, expected 403 (policy)"
fi
log "sanity checks passed (records page: $LEADS_BYTES bytes)"

# ------------------------------------------------------------------------------------------------
# Throughput and latency: wrk at each connection count, on each path.

run_wrk() { # URL CONNS SECONDS [extra wrk args...]
    local url=$1 conns=$2 secs=$3
    shift 3
    local threads=$((THREADS < conns ? THREADS : conns))
    local args=(-t"$threads" -c"$conns" -d"${secs}s" --timeout 10s -s "$HERE/wrk-report.lua")
    [[ $url == https://* ]] && args+=(-H "$TOKEN_HEADER")
    wrk "${args[@]}" "$@" "$url"
}

for p in "${PATHS[@]}"; do
    if ((WARMUP > 0)); then
        run_wrk "$(url_for "$p" "$LEADS_PATH")" 64 "$WARMUP" >/dev/null
    fi
done
# Interleaved (each connection count on every path in turn, round after round), so that a drift in
# the machine's load affects all paths alike; the report takes the median over rounds.
# CPU per request: utime + stime of the path's processes (the proxy; a peer's master and workers or
# its one process) and of the upstream nginx, read from /proc/PID/stat just before and just after
# each wrk run, divided by the requests wrk completed. Process accounting, not wall time: what other
# work on the machine takes is not counted, only what these processes burned.
UPSTREAM_PIDS=$(nginx_pids "$NGINX_PID_upstream")
for ((round = 1; round <= ROUNDS; round++)); do
    for c in $CONNS; do
        for p in "${PATHS[@]}"; do
            log "wrk: round $round/$ROUNDS, $p, $c connection(s), ${DURATION}s"
            pids=$(path_pids "$p")
            cpu0="" cpu1=""
            # shellcheck disable=SC2086 # one PID per word
            [[ -z $pids ]] || cpu0=$(cpu_of $pids)
            # shellcheck disable=SC2086
            up0=$(cpu_of $UPSTREAM_PIDS)
            out=$(run_wrk "$(url_for "$p" "$LEADS_PATH")" "$c" "$DURATION")
            # shellcheck disable=SC2086
            [[ -z $pids ]] || cpu1=$(cpu_of $pids)
            # shellcheck disable=SC2086
            up1=$(cpu_of $UPSTREAM_PIDS)
            rss="" hwm=""
            # shellcheck disable=SC2086 # the direct path has no process of its own: no figure
            [[ -z $pids ]] || read -r rss hwm < <(rss_of $pids)
            "$PY" "$HERE/bench.py" wrkline --path "$p" --conns "$c" --rss "$rss" --hwm "$hwm" \
                --cpu "$cpu0" "$cpu1" --upstream-cpu "$up0" "$up1" <<<"$out" >>"$RESULTS" ||
                die "could not parse wrk output for $p/$c"
        done
    done
done

# ------------------------------------------------------------------------------------------------
# Profile at one connection (BENCH_PROFILE=1): where a request's cost goes when requests do not
# batch. Two extra wrk runs per path: one under `perf stat -e task-clock,context-switches -p PIDS`
# (task-clock in µs and context switches per request), one under `strace -c -f -p PIDS` (syscalls
# per request; strace slows the path down a lot, so that run's throughput means nothing, only the
# counts per request do). The divisor is the requests wrk completed in the same run.

# wait_perf_attached PERF_PID EVENTS PID...: until perf has opened its counters on every thread of
# the PIDs (bounded: 5 s), so that the load does not start before the counting does.
wait_perf_attached() {
    local perf_pid=$1 events=$2 want=0 have pid i
    shift 2
    for pid in "$@"; do want=$((want + $(find "/proc/$pid/task" -mindepth 1 -maxdepth 1 | wc -l))); done
    want=$((want * events))
    for ((i = 0; i < 200; i++)); do
        have=$(find "/proc/$perf_pid/fd" -mindepth 1 -maxdepth 1 -lname 'anon_inode:*perf_event*' 2>/dev/null | wc -l)
        ((have >= want)) && return 0
        kill -0 "$perf_pid" 2>/dev/null || return 1
        sleep 0.025 # poll interval; the loop is bounded to 5 s
    done
    return 1
}

# wait_traced PID...: until every thread of the PIDs has a tracer (strace attached; bounded: 5 s).
wait_traced() {
    local pid task i ok
    for ((i = 0; i < 200; i++)); do
        ok=1
        for pid in "$@"; do
            for task in /proc/"$pid"/task/*; do
                [[ $(awk '/^TracerPid:/ {print $2}' "$task/status" 2>/dev/null) != 0 ]] || ok=0
            done
        done
        ((ok)) && return 0
        sleep 0.025 # poll interval; the loop is bounded to 5 s
    done
    return 1
}

# stop_tool PID: SIGINT (perf and strace print their summary and detach), then reap, bounded.
stop_tool() {
    local pid=$1 i
    kill -INT "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 200; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.025 # bounded wait (5 s) for the summary to be written
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

if [[ $PROFILE == 1 ]]; then
    for p in "${PATHS[@]}"; do
        [[ $p == direct ]] && continue
        url=$(url_for "$p" "$LEADS_PATH")
        read -r -a pids <<<"$(path_pids "$p")"
        # strace follows the workers that do the work (nginx's master only sleeps and is not traced).
        trace_pids=("${pids[@]}")
        [[ $p == nginx-* ]] && read -r -a trace_pids <<<"$(nginx_workers "${PEER_PID[$p]}")"

        log "profile: $p, $PROFILE_CONNS connection(s), ${PROFILE_DURATION}s under perf stat"
        perf stat -e task-clock,context-switches -x, -o "$WORK/perf-$p.csv" \
            -p "$(IFS=,; echo "${pids[*]}")" >/dev/null 2>"$WORK/perf-$p.err" &
        perf_pid=$!
        STARTED_PIDS+=("$perf_pid")
        wait_perf_attached "$perf_pid" 2 "${pids[@]}" || log "warning: perf stat on $p did not attach within 5 s (see $WORK/perf-$p.err)"
        cpu0=$(cpu_of "${pids[@]}")
        out=$(run_wrk "$url" "$PROFILE_CONNS" "$PROFILE_DURATION")
        cpu1=$(cpu_of "${pids[@]}")
        stop_tool "$perf_pid"
        "$PY" "$HERE/bench.py" perfline --path "$p" --conns "$PROFILE_CONNS" --perf "$WORK/perf-$p.csv" \
            --cpu "$cpu0" "$cpu1" <<<"$out" >>"$RESULTS" || die "could not read perf stat's output for $p (see $WORK/perf-$p.err)"

        log "profile: $p, $PROFILE_CONNS connection(s), ${PROFILE_DURATION}s under strace -c -f"
        strace_args=()
        for pid in "${trace_pids[@]}"; do strace_args+=(-p "$pid"); done
        strace -c -f -o "$WORK/strace-$p.txt" "${strace_args[@]}" 2>"$WORK/strace-$p.err" &
        strace_pid=$!
        STARTED_PIDS+=("$strace_pid")
        wait_traced "${trace_pids[@]}" || log "warning: strace on $p did not attach within 5 s (see $WORK/strace-$p.err)"
        out=$(run_wrk "$url" "$PROFILE_CONNS" "$PROFILE_DURATION")
        stop_tool "$strace_pid"
        "$PY" "$HERE/bench.py" straceline --path "$p" --conns "$PROFILE_CONNS" --strace "$WORK/strace-$p.txt" \
            <<<"$out" >>"$RESULTS" || die "could not read strace's output for $p (see $WORK/strace-$p.err)"
    done
fi

# ------------------------------------------------------------------------------------------------
# Memory at idle keep-alive connections.

for p in "${PATHS[@]}"; do
    [[ $p == direct ]] && continue
    if [[ $p == proxy ]]; then
        port=$PROXY_PORT
    else
        port=${PEER_PORT[$p]}
    fi
    pids=$(path_pids "$p" | xargs | tr ' ' ',')
    log "idle: $IDLE_CONNS keep-alive connections to $p"
    out=$("$PY" "$HERE/bench.py" idle --port "$port" --path "$LEADS_PATH" --count "$IDLE_CONNS" --pids "$pids") ||
        log "warning: idle test on $p: $out"
    with=$(sed -n 's/.*with_kib=\([0-9]*\).*/\1/p' <<<"$out")
    per=$(sed -n 's/.*per_conn_kib=\([0-9.-]*\).*/\1/p' <<<"$out")
    result idle "$p" "$IDLE_CONNS" "$per" "${out#IDLE }" "$with"
done

# ------------------------------------------------------------------------------------------------
# Streaming: a large download and a large upload per path, STREAM_REPEAT rounds (median reported).

for ((round = 1; round <= STREAM_REPEAT; round++)); do
    for p in "${PATHS[@]}"; do
        log "stream: round $round/$STREAM_REPEAT, $p, download ${STREAM_MIB} MiB"
        read -r code size secs < <(curl_to "$p" -sS -o /dev/null -w '%{http_code} %{size_download} %{time_total}\n' \
            "$(url_for "$p" "$DOWNLOAD_PATH")")
        [[ $code == 200 && $size == "$STREAM_BYTES" ]] || die "$p download: status $code, $size of $STREAM_BYTES bytes"
        mbps=$("$PY" -c "print(f'{$size / $secs / 1e6:.1f}')")
        result stream "$p" download "$mbps" "$STREAM_MIB MiB in ${secs}s"

        log "stream: round $round/$STREAM_REPEAT, $p, upload ${STREAM_MIB} MiB"
        rm -f "$WORK/uploads/upload.bin"
        read -r code size secs < <(curl_to "$p" -sS -X PUT -T "$WORK/www/large.bin" -H 'Expect:' \
            -H 'Content-Type: application/octet-stream' -o /dev/null \
            -w '%{http_code} %{size_upload} %{time_total}\n' "$(url_for "$p" "$UPLOAD_PATH")")
        stored=$(stat -c %s "$WORK/uploads/upload.bin" 2>/dev/null || echo 0)
        [[ $code == 201 || $code == 204 ]] || die "$p upload: status $code"
        [[ $stored == "$STREAM_BYTES" ]] || die "$p upload: upstream stored $stored of $STREAM_BYTES bytes"
        rm -f "$WORK/uploads/upload.bin"
        mbps=$("$PY" -c "print(f'{$size / $secs / 1e6:.1f}')")
        result stream "$p" upload "$mbps" "$STREAM_MIB MiB in ${secs}s"
    done
done

# ------------------------------------------------------------------------------------------------
# A token refresh forced under load: a second proxy whose tokens live REFRESH_EXPIRES_IN seconds,
# driven in REFRESH_SLICE-second wrk slices; slices containing a mint are compared with the rest.

if [[ $SKIP_PROXY != 1 && $REFRESH == 1 ]]; then
    proxy_config refresh "$ACC2_PORT" "$PROXY_R_PORT" "$ADMIN_R_PORT" token-refresh.json
    start_proxy_timed refresh "$ADMIN_R_PORT"
    refresh_pid=$PROXY_STARTED_PID refresh_sup=$SUPERVISOR_PID
    : >"$WORK/refresh-slices.txt"
    url="http://127.0.0.1:$PROXY_R_PORT$LEADS_PATH"
    log "refresh under load: ${REFRESH_DURATION}s at $REFRESH_CONNS connections, tokens expire after ${REFRESH_EXPIRES_IN}s"
    end=$((SECONDS + REFRESH_DURATION))
    while ((SECONDS < end)); do
        t0=$(date +%s.%N)
        out=$(run_wrk "$url" "$REFRESH_CONNS" "$REFRESH_SLICE" | grep '^WRK ')
        t1=$(date +%s.%N)
        printf '%s %s %s\n' "$t0" "$t1" "$out" >>"$WORK/refresh-slices.txt"
    done
    line=$("$PY" "$HERE/bench.py" slices "$WORK/refresh-slices.txt" "$WORK/upstream/accounts-short.log")
    log "$line"
    ratio=$(sed -n 's/.* ratio=\([0-9.a-z]*\).*/\1/p' <<<"$line")
    result refresh proxy "$REFRESH_CONNS" "$ratio" "${line#REFRESH }"
    stop_proxy "$refresh_pid" "$refresh_sup"
fi

# ------------------------------------------------------------------------------------------------
# Report

mkdir -p "$(dirname "$RESULTS_MD")"
{
    echo "# zoho-auth-proxy benchmark ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo "Machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr)"
    haproxy_desc=""
    [[ -n ${HAPROXY_THREADS_LIST// /} ]] && haproxy_desc="HAProxy $("$HAPROXY" -v | awk 'NR == 1 {print $3}'), "
    echo "Tools: $("$NGINX" -v 2>&1 | sed 's/.*: //'), $haproxy_desc$(wrk -v 2>&1 | head -n 1 | awk '{print $1, $2}'), $(curl --version | head -n 1 | awk '{print $1, $2}')"
    if [[ $SKIP_PROXY != 1 ]]; then
        echo "Proxy: $PROXY_BIN ($(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown))"
        profile_age "$ROOT"
    fi
    refresh_desc="off"
    [[ $SKIP_PROXY != 1 && $REFRESH == 1 ]] && refresh_desc="${REFRESH_DURATION}s at $REFRESH_CONNS conns, expires_in ${REFRESH_EXPIRES_IN}s"
    echo "Command: BENCH_QUICK=$QUICK BENCH_SKIP_PROXY=$SKIP_PROXY BENCH_PROFILE=$PROFILE bench/run.sh"
    echo "Peers: $(for peer in "${PEERS[@]}"; do printf '%s (%s), ' "$peer" "${PEER_SETTING[$peer]}"; done | sed 's/, $//')"
    echo "Settings: duration=${DURATION}s conns='$CONNS' rounds=$ROUNDS wrk threads=$THREADS upstream nginx workers=$UPSTREAM_WORKERS keepalive_requests=$UPSTREAM_KEEPALIVE_REQUESTS proxy upstream_concurrency=$UPSTREAM_CONCURRENCY stream=${STREAM_MIB}MiB x$STREAM_REPEAT idle=$IDLE_CONNS refresh=$refresh_desc"
    echo
    echo '```'
    "$PY" "$HERE/bench.py" report "$RESULTS" --json "${RESULTS_MD%.md}.json" --markdown "$WORK/tables.md"
    echo '```'
    echo
    cat "$WORK/tables.md"
} >"$RESULTS_MD"
cat "$RESULTS_MD"
cp "$RESULTS" "${RESULTS_MD%.md}.tsv"
log "report written to $RESULTS_MD (JSON: ${RESULTS_MD%.md}.json, raw rows: ${RESULTS_MD%.md}.tsv)"
if [[ $STRICT == 1 ]] && grep -q '\[FAIL\]' "$RESULTS_MD"; then
    die "BENCH_STRICT=1: at least one target was missed"
fi

#!/usr/bin/env bash
# Overhead benchmark: zoho-auth-proxy against nginx (static Authorization header) and the direct TLS
# path, on one machine, loopback only (issue 6). See bench/README.md.
#
#   bench/run.sh                      full run (~5 minutes)
#   BENCH_QUICK=1 bench/run.sh        smoke mode (a few seconds of load)
#   BENCH_SKIP_PROXY=1 bench/run.sh   only the direct and nginx paths (no proxy binary needed)
#
# Settings (environment): BENCH_DURATION (s per wrk run), BENCH_CONNS ("1 64 256"), BENCH_ROUNDS,
# BENCH_WARMUP, BENCH_STREAM_MIB, BENCH_STREAM_REPEAT,
# BENCH_IDLE_CONNS, BENCH_REFRESH (0/1), BENCH_REFRESH_DURATION, BENCH_REFRESH_SLICE,
# BENCH_REFRESH_EXPIRES_IN, BENCH_REFRESH_CONNS, BENCH_PROXY_BIN, BENCH_PORT_BASE, BENCH_WRK_THREADS,
# BENCH_NGINX_WORKERS, BENCH_LOG_LEVEL, BENCH_MINT_BUDGET, BENCH_KEEP (keep the work directory),
# BENCH_RESULTS (report path), BENCH_STRICT (1: exit 1 when a target is missed).
#
# Everything listens on 127.0.0.1; every load run is bounded in time; every process started here is
# stopped by PID on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
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
WORKERS=${BENCH_NGINX_WORKERS:-auto}
LOG_LEVEL=${BENCH_LOG_LEVEL:-warn}
MINT_BUDGET=${BENCH_MINT_BUDGET:-8}
STRICT=${BENCH_STRICT:-0}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PROXY_BIN=${BENCH_PROXY_BIN:-$TARGET_DIR/release/zoho-auth-proxy}
RESULTS_MD=${BENCH_RESULTS:-$TARGET_DIR/bench/results.md}

UP_PORT=$((PORT_BASE + 1))       # TLS API upstream (nginx)
ACC_PORT=$((PORT_BASE + 2))      # token endpoint stand-in, expires_in 3600
ACC2_PORT=$((PORT_BASE + 3))     # token endpoint stand-in, short expires_in
NGX_PORT=$((PORT_BASE + 10))     # nginx as the reverse proxy
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

need_cmds() {
    local missing=() pkg
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    command -v "$PY" >/dev/null 2>&1 || missing+=(python3)
    if ((${#missing[@]})); then
        [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
        log "installing from apt: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
        # The package may start a system nginx on port 80; it is not ours and not used.
        for pkg in "${missing[@]}"; do log "installed $pkg"; done
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

rss_of() { "$PY" "$HERE/bench.py" rss "$@"; }

# nginx_pids MASTER_PID: the master and its workers.
nginx_pids() {
    local children
    children=$(pgrep -P "$1" | tr '\n' ' ' || true)
    echo "$1 $children"
}

start_nginx() { # NAME TEMPLATE -> NGINX_STARTED_PID
    local name=$1 template=$2 dir="$WORK/$1" user_directive=""
    mkdir -p "$dir/tmp"
    if [[ $(id -u) -eq 0 ]]; then
        # Workers must read the 0700 work directory; everything stays on loopback.
        user_directive="user $(id -un) $(id -gn);"
    fi
    render "$template" "$dir/nginx.conf" \
        USER_DIRECTIVE="$user_directive" WORKERS="$WORKERS" DIR="$dir" WORK="$WORK" \
        UP_PORT="$UP_PORT" ACC_PORT="$ACC_PORT" ACC2_PORT="$ACC2_PORT" NGX_PORT="$NGX_PORT" \
        RECORD_ID="$RECORD_ID" ATTACHMENT_ID="$ATTACHMENT_ID" REFRESH_EXPIRES_IN="$REFRESH_EXPIRES_IN"
    "$NGINX" -t -q -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" || die "nginx config $name invalid"
    "$NGINX" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' &
    local pid=$!
    STARTED_PIDS+=("$pid")
    NGINX_STARTED_PID=$pid
}

# proxy_config NAME ACCOUNTS_PORT PROXY_PORT ADMIN_PORT STORE -> $WORK/proxy-NAME.yaml
proxy_config() {
    render "$HERE/proxy.yaml" "$WORK/proxy-$1.yaml" \
        PROXY_PORT="$3" ADMIN_PORT="$4" ACCOUNTS_PORT="$2" UP_PORT="$UP_PORT" WORK="$WORK" \
        STORE="$5" LOG_LEVEL="$LOG_LEVEL" MINT_BUDGET="$MINT_BUDGET"
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
        nginx) echo "http://127.0.0.1:$NGX_PORT$2" ;;
        proxy) echo "http://127.0.0.1:$PROXY_PORT$2" ;;
        *) die "unknown path $1" ;;
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

PATHS=(direct nginx proxy)
if [[ $SKIP_PROXY == 1 ]]; then
    PATHS=(direct nginx)
    log "BENCH_SKIP_PROXY=1: measuring the direct and nginx paths only"
elif [[ ! -x $PROXY_BIN ]]; then
    log "building $PROXY_BIN (cargo build --release --locked)"
    (cd "$ROOT" && cargo build --release --locked --bin zoho-auth-proxy) || die "release build failed"
    [[ -x $PROXY_BIN ]] || die "$PROXY_BIN not found after the build (set BENCH_PROXY_BIN?)"
fi

for port in "$UP_PORT" "$ACC_PORT" "$ACC2_PORT" "$NGX_PORT" "$PROXY_PORT" "$ADMIN_PORT" "$PROXY_R_PORT" "$ADMIN_R_PORT"; do
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

start_nginx upstream "$HERE/nginx-upstream.conf"
NGINX_PID_upstream=$NGINX_STARTED_PID
start_nginx proxy "$HERE/nginx-proxy.conf"
NGINX_PID_proxy=$NGINX_STARTED_PID
wait_port "$UP_PORT" "$NGINX_PID_upstream" || die "upstream nginx did not start (see $WORK/upstream/error.log)"
wait_port "$ACC2_PORT" "$NGINX_PID_upstream" || die "upstream nginx did not start"
wait_port "$NGX_PORT" "$NGINX_PID_proxy" || die "proxy nginx did not start (see $WORK/proxy/error.log)"

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
for ((round = 1; round <= ROUNDS; round++)); do
    for c in $CONNS; do
        for p in "${PATHS[@]}"; do
            log "wrk: round $round/$ROUNDS, $p, $c connection(s), ${DURATION}s"
            out=$(run_wrk "$(url_for "$p" "$LEADS_PATH")" "$c" "$DURATION")
            rss="" hwm=""
            # shellcheck disable=SC2046 # nginx_pids prints one PID per word
            case $p in
                proxy) read -r rss hwm < <(rss_of "$PROXY_PID") ;;
                nginx) read -r rss hwm < <(rss_of $(nginx_pids "$NGINX_PID_proxy")) ;;
                direct) ;; # the upstream itself: not a proxy, no figure
            esac
            "$PY" "$HERE/bench.py" wrkline --path "$p" --conns "$c" --rss "$rss" --hwm "$hwm" <<<"$out" >>"$RESULTS" ||
                die "could not parse wrk output for $p/$c"
        done
    done
done

# ------------------------------------------------------------------------------------------------
# Memory at idle keep-alive connections.

for p in nginx proxy; do
    [[ " ${PATHS[*]} " == *" $p "* ]] || continue
    if [[ $p == proxy ]]; then
        port=$PROXY_PORT pids=$PROXY_PID
    else
        port=$NGX_PORT pids=$(nginx_pids "$NGINX_PID_proxy" | tr ' ' ',')
    fi
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
    echo "Tools: $("$NGINX" -v 2>&1 | sed 's/.*: //'), $(wrk -v 2>&1 | head -n 1 | awk '{print $1, $2}'), $(curl --version | head -n 1 | awk '{print $1, $2}')"
    if [[ $SKIP_PROXY != 1 ]]; then
        echo "Proxy: $PROXY_BIN ($(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown))"
    fi
    refresh_desc="off"
    [[ $SKIP_PROXY != 1 && $REFRESH == 1 ]] && refresh_desc="${REFRESH_DURATION}s at $REFRESH_CONNS conns, expires_in ${REFRESH_EXPIRES_IN}s"
    echo "Command: BENCH_QUICK=$QUICK BENCH_SKIP_PROXY=$SKIP_PROXY bench/run.sh"
    echo "Settings: duration=${DURATION}s conns='$CONNS' rounds=$ROUNDS wrk threads=$THREADS nginx workers=$WORKERS stream=${STREAM_MIB}MiB x$STREAM_REPEAT idle=$IDLE_CONNS refresh=$refresh_desc"
    echo
    echo '```'
    "$PY" "$HERE/bench.py" report "$RESULTS"
    echo '```'
} >"$RESULTS_MD"
cat "$RESULTS_MD"
cp "$RESULTS" "${RESULTS_MD%.md}.tsv"
log "report written to $RESULTS_MD"
if [[ $STRICT == 1 ]] && grep -q '\[FAIL\]' "$RESULTS_MD"; then
    die "BENCH_STRICT=1: at least one target was missed"
fi

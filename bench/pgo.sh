#!/usr/bin/env bash
# Records the profile that release builds are optimised with (pgo/zoho-auth-proxy.profdata; see
# pgo/rustc-wrapper and bench/README.md, "Profile-guided optimisation").
#
#   bench/pgo.sh
#
# 1. builds an instrumented release binary (-Cprofile-generate) in target/pgo-generate, and drops
#    the counts its build scripts and proc macros wrote while it was built;
# 2. makes a bench work directory with it (a quick bench/run.sh: the TLS HTTP/2 nginx upstream and
#    token stand-in, the proxy's default config apart from listen addresses);
# 3. runs the proxy under load there: GET at 1, 64 and 256 connections (PGO_DURATION seconds each,
#    default 5), then uploads, a large download, POSTs with JSON bodies, refused scopes, unknown paths
#    and the admin endpoints;
# 4. merges the counts (llvm-profdata of the same LLVM major version as rustc's) into
#    pgo/zoho-auth-proxy.profdata and writes that version to pgo/llvm-major.
# Needs wrk, nginx, haproxy and curl (as bench/run.sh) and llvm-profdata (Debian: llvm-NN, where NN is
# `rustc -vV`'s LLVM major version). Cargo does not see the profile change: rebuild with
# `cargo clean --release && cargo build --release` afterwards.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
duration=${PGO_DURATION:-5}
llvm=$(rustc -vV | sed -n 's/^LLVM version: \([0-9][0-9]*\).*/\1/p')
[[ -n $llvm ]] || { echo "pgo.sh: cannot tell rustc's LLVM version" >&2; exit 2; }

profdata=
for candidate in llvm-profdata-"$llvm" llvm-profdata; do
    if command -v "$candidate" >/dev/null &&
        "$candidate" --version | grep -q "LLVM version $llvm\."; then
        profdata=$candidate
        break
    fi
done
[[ -n $profdata ]] || {
    echo "pgo.sh: rustc uses LLVM $llvm; install llvm-profdata of that version (apt-get install -y llvm-$llvm)" >&2
    exit 2
}
for tool in wrk nginx haproxy curl; do
    command -v "$tool" >/dev/null || { echo "pgo.sh: $tool is required (apt-get install -y wrk nginx haproxy curl)" >&2; exit 2; }
done

target=$root/target/pgo-generate
raw=$target/profraw
rm -rf "$raw"
mkdir -p "$raw"
echo "==> instrumented build in $target"
(cd "$root" && CARGO_TARGET_DIR=$target RUSTFLAGS="-Cprofile-generate=$raw" \
    cargo build --release --locked --bin zoho-auth-proxy)
bin=$target/release/zoho-auth-proxy
# RUSTFLAGS instrument the build scripts and proc macros too, and they wrote their own counts (for
# serde, memchr and the like) while the build ran: only the proxy's runs below may count. (An
# explicit --target would keep them uninstrumented, but it changes every crate's symbol hashes, and
# a profile recorded that way matches nothing in a plain `cargo build --release`.)
rm -rf "$raw"
mkdir -p "$raw"

echo "==> bench work directory (quick bench/run.sh with the instrumented proxy)"
# shellcheck source=bench/workdir.sh
. "$here/workdir.sh"
work=$(quick_workdir "$bin") || exit 1

pids=()
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap 'stop_all; rm -rf "$work"' EXIT
nginx -p "$work/upstream" -e "$work/upstream/error.log" -c "$work/upstream/nginx.conf" -g 'daemon off;' &
pids+=($!)
"$bin" --config "$work/proxy-main.yaml" >/dev/null 2>"$work/pgo-proxy.log" &
proxy=$!
pids+=($proxy)
{ read -r port; read -r admin; } < <(proxy_ports "$work")
wait_ready "$admin" || exit 1

u=http://127.0.0.1:$port
echo "==> training load"
wrk -t1 -c1 -d"${duration}s" "$u/crm/v8/Leads" | grep -E 'Requests/sec|Non-2xx'
wrk -t2 -c64 -d"${duration}s" "$u/crm/v8/Leads" | grep -E 'Requests/sec|Non-2xx'
wrk -t2 -c256 -d"${duration}s" "$u/crm/v8/Leads" | grep -E 'Requests/sec|Non-2xx'
record=4150868000000000001
for _ in $(seq 1 20); do
    curl -s -o /dev/null "$u/crm/v8/Leads/$record/Attachments/4150868000000000002"
    curl -s -o /dev/null -X PUT --data-binary "@$work/www/leads.json" "$u/crm/v8/Leads/$record"
    curl -s -o /dev/null -X POST -H 'content-type: application/json' \
        -d '{"data":[{"Last_Name":"Doe"}]}' "$u/crm/v8/Leads"
    curl -s -o /dev/null "$u/crm/v8/Deals"
    curl -s -o /dev/null "$u/no/such/path"
    curl -s -o /dev/null "http://127.0.0.1:$admin/metrics"
    curl -s -o /dev/null "http://127.0.0.1:$admin/healthz"
done
kill -TERM "$proxy"
wait "$proxy" || true

files=("$raw"/*.profraw)
[[ -f ${files[0]} ]] || { echo "pgo.sh: the instrumented proxy wrote no profile" >&2; exit 1; }
"$profdata" merge --sparse -o "$root/pgo/zoho-auth-proxy.profdata" "${files[@]}"
echo "$llvm" >"$root/pgo/llvm-major"
echo "==> wrote pgo/zoho-auth-proxy.profdata ($(wc -c <"$root/pgo/zoho-auth-proxy.profdata") bytes, LLVM $llvm, ${#files[@]} raw profiles)"
echo "rebuild with: cargo clean --release && cargo build --release"

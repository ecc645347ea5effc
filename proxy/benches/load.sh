#!/usr/bin/env bash
# Load test of swg-proxy on loopback: an nginx origin (TLS 1.3, HTTP/2) measured
# straight and through swg, for a small page and a 1 MiB file.
#
#   keep-alive HTTP/1.1 and HTTP/2 at the TLS landing  h2load --connect-to
#   a new TLS connection per request at the landing     oha --disable-keepalive
#   the explicit proxy (CONNECT, then HTTP/1.1)         oha -x
#   p99 at half load                                    oha -q (rate limit)
#
# Needs nginx, openssl, h2load (nghttp2-client) and oha (cargo install oha).
# Everything listens on 127.0.0.1: nginx on 19443, swg on 18443/18080/13128.
# DURATION (seconds per run, default 10) and CONNECTIONS (default 32) are
# overridable. WORKERS (default 1) is both the number of nginx worker processes
# and the number of swg's tokio worker threads, so that each server gets the same
# number of threads on a machine that also runs the clients. With ROUNDS (default
# 1) above 1, each h2load case runs that many times on each side and the fastest
# run of each side is reported, and the half-load pair runs that many times, with
# the median p99 added reported. HALF_LOAD_RATE=N runs only the half-load pairs,
# at N requests per second.
# Results go to stdout as Markdown table rows.
set -euo pipefail

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
WORKERS=${WORKERS:-1}
ROUNDS=${ROUNDS:-1}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

for tool in nginx openssl h2load oha; do
    command -v "$tool" >/dev/null || { echo "load.sh: $tool not found" >&2; exit 1; }
done

# Origin certificates: a CA that swg trusts as an extra root, and a leaf for bench.test.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=swg bench origin CA" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=bench.test" \
    -keyout "$WORK/leaf.key" -out "$WORK/leaf.csr" 2>/dev/null
printf "subjectAltName=DNS:bench.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n" > "$WORK/leaf.ext"
openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
    -days 2 -extfile "$WORK/leaf.ext" -out "$WORK/leaf.pem" 2>/dev/null

# nginx workers run as an unprivileged user and must read the files.
chmod 755 "$WORK"
mkdir -p "$WORK/www"
head -c 600 /dev/zero | tr '\0' 'a' > "$WORK/www/small.html"
head -c 1048576 /dev/urandom > "$WORK/www/1m.bin"
chmod 644 "$WORK/www/small.html" "$WORK/www/1m.bin"
cat > "$WORK/nginx.conf" <<NGINX
worker_processes $WORKERS;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/body;
    proxy_temp_path $WORK/proxy;
    fastcgi_temp_path $WORK/fastcgi;
    uwsgi_temp_path $WORK/uwsgi;
    scgi_temp_path $WORK/scgi;
    server {
        listen 127.0.0.1:19443 ssl http2;
        ssl_certificate $WORK/leaf.pem;
        ssl_certificate_key $WORK/leaf.key;
        ssl_protocols TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        root $WORK/www;
    }
}
NGINX
nginx -c "$WORK/nginx.conf" -p "$WORK" &
PIDS+=($!)

cargo build --quiet --profile bench -p swg-proxy --example bench_proxy --manifest-path "$ROOT/Cargo.toml"
TOKIO_WORKER_THREADS=$WORKERS "$ROOT/target/release/examples/bench_proxy" "$WORK/ca.pem" "$WORK/swg-root.pem" 2>"$WORK/proxy.log" &
PROXY=$!
PIDS+=($PROXY)

wait_for_port() {
    for _ in $(seq 1 100); do
        (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "load.sh: nothing listens on port $1" >&2
    exit 1
}
wait_for_port 19443
wait_for_port 18443
wait_for_port 13128

DIRECT="--connect-to=127.0.0.1:19443"
LANDING="--connect-to=127.0.0.1:18443"

# CPU time (user and system, in clock ticks) that the given processes have used.
cpu_ticks() {
    local total=0 pid
    for pid in "$@"; do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$total"
}

NGINX_WORKERS=$(pgrep -P "$(cat "$WORK/nginx.pid")" | tr '\n' ' ')
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# h2load: prints "<requests/s> <mean latency> <swg CPU µs per request>
# <nginx CPU µs per request>" for one run.
h2load_run() {
    local output swg_before nginx_before swg_after nginx_after
    swg_before=$(cpu_ticks "$PROXY")
    nginx_before=$(cpu_ticks $NGINX_WORKERS)
    # h2load once kept running here for ten minutes at full CPU after its duration
    # (HTTP/2, the 1 MiB file, straight to nginx). A run stopped by the timeout
    # counts as no run.
    if ! output=$(timeout $((DURATION + 60)) h2load -D "$DURATION" -c "$CONNECTIONS" -t 1 "$@" 2>&1); then
        echo "load.sh: h2load $* failed or did not end within $((DURATION + 60)) s; run not counted" >&2
        output=""
    fi
    swg_after=$(cpu_ticks "$PROXY")
    nginx_after=$(cpu_ticks $NGINX_WORKERS)
    if ! grep -q "0 failed, 0 errored" <<<"$output"; then
        grep -E "requests:|status codes" <<<"$output" >&2 || true
        tail -n 3 "$WORK/proxy.log" >&2
    fi
    local rps mean completed
    rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$output")
    mean=$(awk '/time for request:/ {print $6}' <<<"$output")
    completed=$(sed -n 's/^requests: .* \([0-9]*\) done,.*/\1/p' <<<"$output")
    awk -v rps="$rps" -v mean="$mean" -v completed="$completed" -v tick="$TICK_US" \
        -v swg=$((swg_after - swg_before)) -v nginx=$((nginx_after - nginx_before)) \
        'BEGIN { if (completed > 0) printf "%s %s %.1f %.1f\n", rps, mean, swg * tick / completed, nginx * tick / completed }'
}

# oha: prints "<requests/s> <p50 ms> <p99 ms> <success rate>" for one run.
oha_run() {
    oha --no-tui --output-format json -z "${DURATION}s" "$@" \
        | jq -r '[(.summary.requestsPerSec | floor), (.latencyPercentiles.p50 * 1000 * 100 | round / 100),
                  (.latencyPercentiles.p99 * 1000 * 100 | round / 100), .summary.successRate] | map(tostring) | join(" ")'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / b; else print "n/a" }'; }
greater() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }

if [ -z "${HALF_LOAD_RATE:-}" ]; then
echo "| case | path | direct req/s | swg req/s | swg/direct | direct mean | swg mean | CPU µs/request: nginx direct / swg / nginx behind swg |"
echo "|---|---|---|---|---|---|---|---|"
for path in /small.html /1m.bin; do
    url="https://bench.test:19443$path"
    for mode in h1 h2; do
        flags=()
        [ "$mode" = h1 ] && flags=(--h1)
        [ "$mode" = h2 ] && flags=(-m 10)
        # Direct and through swg alternate ROUNDS times. The fastest run of each
        # side is kept because it is the one least slowed by other load.
        direct=(0) swg=(0)
        for _ in $(seq "$ROUNDS"); do
            read -r -a run < <(h2load_run "${flags[@]}" $DIRECT "$url") || run=(0)
            greater "${run[0]}" "${direct[0]}" && direct=("${run[@]}")
            read -r -a run < <(h2load_run "${flags[@]}" $LANDING "$url") || run=(0)
            greater "${run[0]}" "${swg[0]}" && swg=("${run[@]}")
        done
        echo "| keep-alive $mode (h2load) | $path | ${direct[0]} | ${swg[0]} | $(ratio "${swg[0]}" "${direct[0]}") | ${direct[1]} | ${swg[1]} | ${direct[3]} / ${swg[2]} / ${swg[3]} |"
    done
done

echo
echo "| case | path | direct req/s | swg req/s | swg/direct | direct p50/p99 ms | swg p50/p99 ms |"
echo "|---|---|---|---|---|---|---|"
url="https://bench.test:19443/small.html"
read -r d_rps d_p50 d_p99 _ < <(oha_run -c "$CONNECTIONS" --disable-keepalive --insecure --connect-to "bench.test:19443:127.0.0.1:19443" "$url")
read -r s_rps s_p50 s_p99 _ < <(oha_run -c "$CONNECTIONS" --disable-keepalive --insecure --connect-to "bench.test:19443:127.0.0.1:18443" "$url")
echo "| new TLS connection per request (oha) | /small.html | $d_rps | $s_rps | $(ratio "$s_rps" "$d_rps") | $d_p50 / $d_p99 | $s_p50 / $s_p99 |"

# oha resolves the URL host itself even through a proxy, so this case names the
# origin by its address (the nginx certificate has an IP SAN for it).
ip_url="https://127.0.0.1:19443/small.html"
read -r d_rps d_p50 d_p99 _ < <(oha_run -c "$CONNECTIONS" --insecure "$ip_url")
read -r s_rps s_p50 s_p99 _ < <(oha_run -c "$CONNECTIONS" --insecure -x http://127.0.0.1:13128 --proxy-header "Proxy-Authorization: Bearer bench" "$ip_url")
echo "| explicit proxy, keep-alive HTTP/1.1 (oha) | /small.html | $d_rps | $s_rps | $(ratio "$s_rps" "$d_rps") | $d_p50 / $d_p99 | $s_p50 / $s_p99 |"

read -r d_rps d_p50 d_p99 _ < <(oha_run -c "$CONNECTIONS" --insecure --connect-to "bench.test:19443:127.0.0.1:19443" "$url")
read -r s_rps s_p50 s_p99 _ < <(oha_run -c "$CONNECTIONS" --insecure --connect-to "bench.test:19443:127.0.0.1:18443" "$url")
echo "| landing, keep-alive HTTP/1.1 (oha) | /small.html | $d_rps | $s_rps | $(ratio "$s_rps" "$d_rps") | $d_p50 / $d_p99 | $s_p50 / $s_p99 |"

# Half load: both sides at half of the rate swg reached with keep-alive HTTP/1.1
# at the landing, alternating ROUNDS times. One p99 of a few seconds moves by
# about a millisecond from run to run, so each pair is reported and the median
# of the p99 added.
half=$(awk -v r="$s_rps" 'BEGIN { printf "%d", r / 2 }')
else
    url="https://bench.test:19443/small.html"
    half=$HALF_LOAD_RATE
fi
added_all=()
for _ in $(seq "$ROUNDS"); do
    read -r _ d_p50 d_p99 _ < <(oha_run -c "$CONNECTIONS" -q "$half" --insecure --connect-to "bench.test:19443:127.0.0.1:19443" "$url")
    read -r _ s_p50 s_p99 _ < <(oha_run -c "$CONNECTIONS" -q "$half" --insecure --connect-to "bench.test:19443:127.0.0.1:18443" "$url")
    added=$(awk -v a="$s_p99" -v b="$d_p99" 'BEGIN { printf "%.2f", a - b }')
    added_all+=("$added")
    echo "| half load ($half req/s), keep-alive HTTP/1.1 (oha) | /small.html | | | | $d_p50 / $d_p99 | $s_p50 / $s_p99 (p99 added: $added ms) |"
done
median=$(printf '%s\n' "${added_all[@]}" | sort -n | awk '{ values[NR] = $1 } END { print values[int((NR + 1) / 2)] }')
echo
echo "p99 added at half load: median $median ms of ${#added_all[@]} runs (${added_all[*]})"

#!/usr/bin/env bash
# Whole-gateway load benchmark on loopback: the built `swg serve` with the
# 1 000 000-domain policy, dnsmasq as its upstream and nginx (TLS 1.3) as the
# origin, each swg figure beside the direct figure where one exists.
#
#   DNS queries per second over plain UDP          dnsperf, swg vs dnsmasq
#   HTTPS requests per second at the TLS landing   h2load (keep-alive HTTP/1.1, HTTP/2)
#                                                   oha --disable-keepalive (new connection
#                                                   per request), swg vs nginx
#   HTTPS requests per second through the explicit oha -x with the device token
#   proxy (CONNECT, then TLS in the tunnel)        (keep-alive HTTP/1.1, HTTP/2, new
#                                                   connection per request), swg vs nginx
#   10 000 distinct hosts, resolved and fetched    dig through the agent, then Python
#   RSS of swg idle, after the load runs, after    /proc/<pid>/status, ss, Python
#   the pooled origin connections close, with
#   10 000 open TLS connections to the landing and
#   after they close
#   activity events written and dropped            swg's /metrics
#
# Requests at the landing are identified by correlation hints: every host is first
# resolved through `swg agent run` as Safari (DoH with the app's context), from
# 127.0.0.1, so the landing serves them as that device. The explicit proxy gets the
# device token of a second device, enrolled through the console's agent API.
#
# Needs: nginx, dnsmasq, dnsperf, dig (bind9-dnsutils), h2load (nghttp2-client),
# oha (cargo install oha), openssl, python3, curl, ss (iproute2).
# DURATION: seconds per measured run (default 15; 13 runs, so the script takes
# about 3.5 minutes plus the policy build, the 10 000 hosts and up to 200 s waiting
# for the pooled origin connections to close). HOSTS (default 10000) and
# CONNECTIONS (open connections of the memory case, default 10000) are overridable.
# SWG: the binary to measure (default target/release/swg).
# The Markdown table goes to stdout and to $OUT (default benches/load-results.md).
set -euo pipefail

DURATION=${DURATION:-15}
HOSTS=${HOSTS:-10000}
CONNECTIONS=${CONNECTIONS:-10000}
CLIENTS=${CLIENTS:-32}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/benches/load-results.md}
SWG=${SWG:-$ROOT/target/release/swg}
ORIGIN_IP=127.0.0.2
# Unusual ports, all on loopback.
ORIGIN_PORT=29443
UPSTREAM_PORT=25353
DNS_PORT=25354
DOH_PORT=29444
TLS_PORT=29445
HTTP_PORT=29446
EXPLICIT_PORT=29447
CONSOLE_PORT=29448
OPERATIONS_PORT=29449
AGENT_PORT=25355
SAFARI=com.apple.mobilesafari

WORK=$(mktemp -d /tmp/swg-load.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

for tool in nginx dnsmasq dnsperf dig h2load oha openssl python3 curl ss; do
    command -v "$tool" >/dev/null || { echo "load.sh: $tool not found" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"

if [ ! -x "$SWG" ]; then
    (cd "$ROOT" && cargo build --quiet --release)
fi
echo "load.sh: writing the 1 000 000-domain policy" >&2
(cd "$ROOT" && cargo run --quiet -p swg-policy --release --example synthetic_policy -- "$WORK/policy" >/dev/null)
# Plain DNS from this machine is answered as a location.
cat >> "$WORK/policy/policy.toml" <<'TOML'

[[locations]]
id = "loopback"
cidrs = ["127.0.0.1/32"]
TOML

# Origin: a test CA that swg trusts as an extra root, a leaf for *.bench.test.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=swg load origin CA" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=www.bench.test" \
    -keyout "$WORK/leaf.key" -out "$WORK/leaf.csr" 2>/dev/null
printf "subjectAltName=DNS:*.bench.test\nextendedKeyUsage=serverAuth\n" > "$WORK/leaf.ext"
openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
    -days 2 -extfile "$WORK/leaf.ext" -out "$WORK/leaf.pem" 2>/dev/null

chmod 755 "$WORK"
mkdir -p "$WORK/www"
head -c 600 /dev/zero | tr '\0' 'a' > "$WORK/www/small.html"
head -c 1048576 /dev/urandom > "$WORK/www/1m.bin"
chmod 644 "$WORK/www/small.html" "$WORK/www/1m.bin"
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 16384; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/body;
    proxy_temp_path $WORK/proxy;
    fastcgi_temp_path $WORK/fastcgi;
    uwsgi_temp_path $WORK/uwsgi;
    scgi_temp_path $WORK/scgi;
    server {
        listen $ORIGIN_IP:$ORIGIN_PORT ssl http2;
        server_name _;
        ssl_certificate $WORK/leaf.pem;
        ssl_certificate_key $WORK/leaf.key;
        ssl_protocols TLSv1.3;
        root $WORK/www;
    }
}
NGINX
nginx -c "$WORK/nginx.conf" -p "$WORK" &
PIDS+=($!)

# Upstream: every name under bench.test resolves to the origin's address, with a
# TTL of 300 s (dnsmasq gives such names TTL 0 by default, which no cache keeps).
dnsmasq --keep-in-foreground --no-resolv --no-hosts --conf-file=/dev/null --bind-interfaces \
    --user=root --pid-file --log-facility="$WORK/dnsmasq.log" --cache-size=10000 --local-ttl=300 \
    --listen-address=127.0.0.1 --port="$UPSTREAM_PORT" --address="/bench.test/$ORIGIN_IP" &
PIDS+=($!)

mkdir -p "$WORK/swg"
cat > "$WORK/swg/swg.toml" <<TOML
data_dir = "$WORK/swg/data"

[operations]
listen = "127.0.0.1:$OPERATIONS_PORT"

[policy]
files = ["$WORK/policy/policy.toml"]

[console]
listen = "127.0.0.1:$CONSOLE_PORT"
doh_url = "https://localhost:$DOH_PORT/dns-query"
console_url = "https://localhost:$CONSOLE_PORT"
proxy = "localhost:$EXPLICIT_PORT"

[dns]
doh_listen = "127.0.0.1:$DOH_PORT"
udp_listen = "127.0.0.1:$DNS_PORT"
tcp_listen = "127.0.0.1:$DNS_PORT"
upstreams = ["udp://127.0.0.1:$UPSTREAM_PORT"]
proxy_ipv4 = "127.0.0.1"
udp_rate_limit_qps = 0

[proxy]
tls_listen = "127.0.0.1:$TLS_PORT"
http_listen = "127.0.0.1:$HTTP_PORT"
explicit_listen = "127.0.0.1:$EXPLICIT_PORT"
allowed_destinations = ["$ORIGIN_IP/32"]
extra_roots = ["$WORK/ca.pem"]

[proxy.limits]
max_connections_per_client = 100000
max_connections = 100000

# The memory case keeps connections open without sending a request. swg closes such a
# connection after client_header_read_ms (default 10 s), and opening 10 000 of them can
# take longer than that.
[proxy.timeouts]
client_header_read_ms = 600000
TOML
(cd "$WORK/swg" && exec "$SWG" serve --config "$WORK/swg/swg.toml" > "$WORK/swg.log" 2>&1) &
SWG_PID=$!
PIDS+=($SWG_PID)
for _ in $(seq 1 600); do
    grep -q "swg is ready" "$WORK/swg.log" && break
    kill -0 "$SWG_PID" 2>/dev/null || break
    sleep 0.5
done
grep -q "swg is ready" "$WORK/swg.log" || { cat "$WORK/swg.log" >&2; echo "load.sh: swg did not start" >&2; exit 1; }
AUTH_KEY=$(grep "authentication key (for agents" "$WORK/swg.log" | head -1 | awk '{print $NF}')

"$SWG" agent run --server "https://localhost:$CONSOLE_PORT" --auth-key "$AUTH_KEY" \
    --user bench --device bench-1 --ca-file "$WORK/swg/data/ca/root-cert.pem" \
    --listen "127.0.0.1:$AGENT_PORT=$SAFARI" > "$WORK/agent.log" 2>&1 &
PIDS+=($!)

wait_for_port() { # ip port
    for _ in $(seq 1 200); do
        (echo > "/dev/tcp/$1/$2") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "load.sh: nothing listens on $1:$2" >&2
    exit 1
}
wait_for_port "$ORIGIN_IP" "$ORIGIN_PORT"
wait_for_port 127.0.0.1 "$TLS_PORT"
wait_for_port 127.0.0.1 "$AGENT_PORT"

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SWG_PID/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / b; else print "n/a" }'; }
# Counts established TCP connections to IP:PORT on this machine.
established() { ss -Htn state established dst "$1" dport = ":$2" | wc -l; }
metric() { curl -s "http://127.0.0.1:$OPERATIONS_PORT/metrics" | awk -v m="$1" '$1 == m { s += $2 } END { printf "%d", s }'; }
# Resolves names (one a line in $1) through the agent as Safari: the correlation hints.
hint() { dig @127.0.0.1 -p "$AGENT_PORT" +short +tries=1 +time=5 -f "$1" A > "$WORK/hint.out"; }

# jemalloc returns the memory that the policy load freed within about 15 s of swg
# being ready (its dirty_decay_ms is 10 s by default), so idle RSS is read after that.
sleep 15
RSS_IDLE=$(rss_kib)
ROWS=()
row() { ROWS+=("$1"); echo "$1" >&2; }

# DNS: cached answers for names under bench.test, swg (location source) vs dnsmasq.
for i in $(seq 1 1000); do echo "d$i.bench.test A"; done > "$WORK/queries.txt"
dnsperf_qps() { # port seconds
    dnsperf -s 127.0.0.1 -p "$1" -d "$WORK/queries.txt" -l "$2" -c 20 -q 200 2>&1 \
        | awk '/Queries per second/ { printf "%.0f", $4 }'
}
dnsperf_qps "$UPSTREAM_PORT" 2 >/dev/null
dnsperf_qps "$DNS_PORT" 2 >/dev/null
d=$(dnsperf_qps "$UPSTREAM_PORT" "$DURATION")
s=$(dnsperf_qps "$DNS_PORT" "$DURATION")
row "| DNS over UDP, cached (dnsperf, 20 clients, 200 outstanding) | $d queries/s | $s queries/s | $(ratio "$s" "$d") |"

# HTTPS at the landing, one host, hinted first.
echo "www.bench.test" > "$WORK/one.txt"
hint "$WORK/one.txt"
grep -q 127.0.0.1 "$WORK/hint.out" || { echo "load.sh: the agent did not steer www.bench.test to the landing" >&2; cat "$WORK/agent.log" >&2; exit 1; }
URL="https://www.bench.test:$ORIGIN_PORT/small.html"
# The landing must serve the origin's page (identified by the hint), not a page of its own.
curl -s --cacert "$WORK/swg/data/ca/root-cert.pem" --connect-to "www.bench.test:$ORIGIN_PORT:127.0.0.1:$TLS_PORT" \
    "$URL" | cmp -s - "$WORK/www/small.html" || { echo "load.sh: the landing did not serve the origin's page" >&2; exit 1; }
h2load_rps() { # connect-to flags...
    local to=$1; shift
    local output
    output=$(h2load -D "$DURATION" -c "$CLIENTS" -t 1 --connect-to="$to" "$@" "$URL" 2>&1)
    grep -q " 0 failed, 0 errored" <<<"$output" || grep -E "requests:|status codes" <<<"$output" >&2
    grep -q "0 3xx, 0 4xx, 0 5xx" <<<"$output" || grep -E "status codes" <<<"$output" >&2
    sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$output" | awk '{ printf "%.0f", $1 }'
}
for mode in h1 h2; do
    flags=(--h1)
    [ "$mode" = h2 ] && flags=(-m 10)
    d=$(h2load_rps "$ORIGIN_IP:$ORIGIN_PORT" "${flags[@]}")
    s=$(h2load_rps "127.0.0.1:$TLS_PORT" "${flags[@]}")
    label="keep-alive HTTP/1.1"
    [ "$mode" = h2 ] && label="HTTP/2, 10 streams per connection"
    row "| HTTPS $label, 600-byte page (h2load, $CLIENTS connections) | $d req/s | $s req/s | $(ratio "$s" "$d") |"
done
# Prints requests/s and the share of responses that were 200. "$@": oha's flags.
oha_rps() {
    oha --no-tui --output-format json -z "${DURATION}s" -c "$CLIENTS" --insecure "$@" "$URL" \
        | python3 -c 'import json, sys
r = json.load(sys.stdin)
codes = r.get("statusCodeDistribution", {})
print(round(r["summary"]["requestsPerSec"]), "%.2f" % (codes.get("200", 0) / max(1, sum(codes.values()))))'
}
read -r d d_ok < <(oha_rps --disable-keepalive --connect-to "www.bench.test:$ORIGIN_PORT:$ORIGIN_IP:$ORIGIN_PORT")
read -r s s_ok < <(oha_rps --disable-keepalive --connect-to "www.bench.test:$ORIGIN_PORT:127.0.0.1:$TLS_PORT")
row "| HTTPS new TLS connection per request, 600-byte page (oha, $CLIENTS connections; share of 200: $d_ok / $s_ok) | $d req/s | $s req/s | $(ratio "$s" "$d") |"
DIRECT_NEW_CONNECTION=$d
DIRECT_NEW_CONNECTION_OK=$d_ok

# The explicit proxy: CONNECT with the device token of an enrolled device, then TLS
# with a leaf from swg inside the tunnel. oha's pre-lookup resolves the URL's host
# through the system resolver, which cannot resolve bench.test, so it is turned off.
TOKEN=$(curl -s --cacert "$WORK/swg/data/ca/root-cert.pem" "https://localhost:$CONSOLE_PORT/api/agent/enroll" \
    -H 'content-type: application/json' \
    -d "{\"authenticationKey\":\"$AUTH_KEY\",\"deviceId\":\"bench-2\",\"userId\":\"bench\"}" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
curl -s --cacert "$WORK/swg/data/ca/root-cert.pem" -x "http://127.0.0.1:$EXPLICIT_PORT" \
    --proxy-header "Proxy-Authorization: Bearer $TOKEN" "$URL" | cmp -s - "$WORK/www/small.html" \
    || { echo "load.sh: the explicit proxy did not serve the origin's page" >&2; exit 1; }
EXPLICIT=(--no-pre-lookup -x "http://127.0.0.1:$EXPLICIT_PORT" --proxy-header "Proxy-Authorization: Bearer $TOKEN")
for mode in h1 h2; do
    flags=()
    label="keep-alive HTTP/1.1"
    if [ "$mode" = h2 ]; then
        flags=(--http2 -p 10)
        label="HTTP/2, 10 streams per connection"
    fi
    read -r d d_ok < <(oha_rps "${flags[@]}" --connect-to "www.bench.test:$ORIGIN_PORT:$ORIGIN_IP:$ORIGIN_PORT")
    read -r s s_ok < <(oha_rps "${flags[@]}" "${EXPLICIT[@]}")
    row "| HTTPS through the explicit proxy, $label in the tunnel, 600-byte page (oha, $CLIENTS connections; share of 200: $d_ok / $s_ok) | $d req/s | $s req/s | $(ratio "$s" "$d") |"
done
read -r s s_ok < <(oha_rps --disable-keepalive "${EXPLICIT[@]}")
row "| HTTPS through the explicit proxy, new connection, CONNECT and TLS per request, 600-byte page (oha, $CLIENTS connections; share of 200: $DIRECT_NEW_CONNECTION_OK / $s_ok; direct as in the landing row) | $DIRECT_NEW_CONNECTION req/s | $s req/s | $(ratio "$s" "$DIRECT_NEW_CONNECTION") |"

# Leaf minting under load: HOSTS distinct names, each resolved and fetched once.
for i in $(seq 1 "$HOSTS"); do echo "h$i.bench.test"; done > "$WORK/hosts.txt"
cat > "$WORK/fetch.py" <<'PY'
# Fetches https://NAME:PORT/small.html once for each name, connecting to IP:CONNECT_PORT.
import concurrent.futures, socket, ssl, sys, time
names = [line.strip() for line in open(sys.argv[1]) if line.strip()]
ip, landing, origin_port, cafile = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
context = ssl.create_default_context(cafile=cafile)
def fetch(name):
    with socket.create_connection((ip, landing), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname=name) as tls:
            tls.sendall(f"GET /small.html HTTP/1.1\r\nHost: {name}:{origin_port}\r\nConnection: close\r\n\r\n".encode())
            head = b""
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                head += chunk
            # The origin's page, not a page of swg's own.
            return head.split(b" ", 2)[1] == b"200" and head.endswith(b"a" * 600)
start = time.monotonic()
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    results = []
    for future in [pool.submit(fetch, n) for n in names]:
        try:
            results.append(future.result())
        except Exception:
            results.append(False)
elapsed = time.monotonic() - start
print(f"{elapsed:.2f} {sum(results)} {len(names)}")
PY
start=$(date +%s.%N)
hint "$WORK/hosts.txt"
hinted=$(date +%s.%N)
read -r fetch_s fetched total < <(python3 "$WORK/fetch.py" "$WORK/hosts.txt" 127.0.0.1 "$TLS_PORT" "$ORIGIN_PORT" "$WORK/swg/data/ca/root-cert.pem")
# The same client straight to nginx: the rate the Python client itself reaches.
read -r direct_s direct_ok _ < <(python3 "$WORK/fetch.py" "$WORK/hosts.txt" "$ORIGIN_IP" "$ORIGIN_PORT" "$ORIGIN_PORT" "$WORK/ca.pem")
awk -v a="$start" -v b="$hinted" -v f="$fetch_s" -v n="$fetched" -v t="$total" -v df="$direct_s" -v dn="$direct_ok" 'BEGIN {
    printf "| %d distinct hosts: resolved through the agent (dig -f, one at a time) | | %.1f s | |\n", t, b - a
    printf "| %d distinct hosts: fetched once each (Python, 16 threads, new connection each; 200 with the origin page: %d direct, %d swg) | %.2f s, %.0f req/s | %.2f s, %.0f leaves/s | %.0f%% |\n", t, dn, n, df, dn / df, f, n / f, 100 * (n / f) / (dn / df)
}' > "$WORK/hosts.rows"
while read -r line; do row "$line"; done < "$WORK/hosts.rows"
HOSTS_DONE=$(date +%s)

# Memory with CONNECTIONS open TLS connections (handshake done, keep-alive, idle).
cat > "$WORK/hold.py" <<'PY'
# Opens N TLS connections to the landing for www.bench.test, prints N once all are open, then waits.
import socket, ssl, sys, time
n, landing, cafile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
context = ssl.create_default_context(cafile=cafile)
held = []
for _ in range(n):
    raw = socket.create_connection(("127.0.0.1", landing), timeout=30)
    held.append(context.wrap_socket(raw, server_hostname="www.bench.test"))
print(len(held), flush=True)
time.sleep(3600)
PY
RSS_BEFORE=$(rss_kib)
POOLED_BEFORE=$(established "$ORIGIN_IP" "$ORIGIN_PORT")

# The origin pool keeps one idle connection, and one file descriptor, per distinct
# host until nginx (keepalive_timeout, 75 s by default) or swg's pool (90 s idle)
# closes it. Opening the connections below before then can exhaust swg's descriptors.
for _ in $(seq 1 100); do
    [ "$(established "$ORIGIN_IP" "$ORIGIN_PORT")" -le 1 ] && break
    sleep 2
done
RSS_SETTLED=$(rss_kib)
SETTLED_AFTER=$(awk -v a="$HOSTS_DONE" -v b="$(date +%s)" 'BEGIN { print b - a }')
POOLED_SETTLED=$(established "$ORIGIN_IP" "$ORIGIN_PORT")

python3 "$WORK/hold.py" "$CONNECTIONS" "$TLS_PORT" "$WORK/swg/data/ca/root-cert.pem" > "$WORK/hold.out" 2> "$WORK/hold.err" &
HOLD_PID=$!
PIDS+=($HOLD_PID)
for _ in $(seq 1 1200); do
    [ -s "$WORK/hold.out" ] && break
    kill -0 "$HOLD_PID" 2>/dev/null || break
    sleep 0.25
done
if [ -s "$WORK/hold.out" ]; then
    sleep 2
    RSS_HELD=$(rss_kib)
    HELD="$(mib "$RSS_HELD") ($(established 127.0.0.1 "$TLS_PORT") open when measured)"
else
    tail -3 "$WORK/hold.err" >&2
    HELD="not measured (the client failed to open the connections)"
fi
kill "$HOLD_PID" 2>/dev/null || true
sleep 3
RSS_AFTER=$(rss_kib)

row "| RSS of swg: idle (policy loaded, 15 s after ready) | | $(mib "$RSS_IDLE") | |"
row "| RSS of swg: after the load runs ($POOLED_BEFORE pooled origin connections) | | $(mib "$RSS_BEFORE") | |"
row "| RSS of swg: pooled origin connections closed ($POOLED_SETTLED left, $SETTLED_AFTER s after the last distinct host) | | $(mib "$RSS_SETTLED") | |"
row "| RSS of swg: $CONNECTIONS TLS connections opened at the landing | | $HELD | |"
row "| RSS of swg: after the run (those connections closed) | | $(mib "$RSS_AFTER") | |"
sleep 1
row "| activity events written / dropped (swg_activity_written_total / swg_activity_dropped_total) | | $(metric swg_activity_written_total) / $(metric swg_activity_dropped_total) | |"

{
    echo "Machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'). Date: $(date -u +%Y-%m-%d)."
    echo "DURATION=$DURATION s per run, HOSTS=$HOSTS, CONNECTIONS=$CONNECTIONS."
    echo
    echo "| case | direct | swg | swg/direct |"
    echo "|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
} | tee "$OUT"

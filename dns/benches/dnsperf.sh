#!/usr/bin/env bash
# Measures swg-dns and unbound side by side with dnsperf on loopback: queries per
# second and latency percentiles for cached answers over UDP.
#
# swg-dns runs with the 1 000 000-name benchmark policy, the real threat lists and a
# SQLite activity log. Both resolvers forward to one authoritative unbound that serves
# the query names from a static zone; both are warmed first, so the measured runs are
# answered from their caches.
#
# Needs: dnsperf, unbound (Debian packages dnsperf, unbound), cargo.
# Usage: dns/benches/dnsperf.sh [seconds per run, default 20]
set -euo pipefail

SECONDS_PER_RUN="${1:-20}"
NAMES=10000
AUTH_PORT=5400
UNBOUND_PORT=5401
SWG_PORT=5402
CLIENTS="${CLIENTS:-20}"
OUTSTANDING="${OUTSTANDING:-200}"
# Rate of the latency runs: below both servers' maximum, so queueing in the client
# does not dominate the percentiles.
LATENCY_QPS="${LATENCY_QPS:-20000}"

here="$(cd "$(dirname "$0")" && pwd)"
workspace="$(cd "$here/../.." && pwd)"
work="$(mktemp -d /tmp/swg-dnsperf.XXXXXX)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

for tool in dnsperf unbound; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install dnsperf unbound" >&2; exit 1; }
done

echo "building the benchmark server (bench profile)" >&2
(cd "$workspace" && cargo build --quiet --profile bench -p swg-dns --example bench_server)
server="$workspace/target/release/examples/bench_server"

# Query names and the authoritative zone.
for i in $(seq 1 "$NAMES"); do echo "h$i.bench.test A"; done > "$work/queries.txt"
{
    echo 'local-zone: "bench.test." static'
    for i in $(seq 1 "$NAMES"); do
        echo "local-data: \"h$i.bench.test. 3600 IN A 192.0.2.$(( i % 250 + 1 ))\""
    done
} > "$work/zone.conf"

common_server_options() {
    cat <<CONF
    interface: 127.0.0.1
    do-ip6: no
    username: ""
    chroot: ""
    pidfile: ""
    directory: "$work"
    use-syslog: no
    logfile: ""
    verbosity: 0
    module-config: "iterator"
    access-control: 127.0.0.0/8 allow
    local-zone: "test." nodefault
    ratelimit: 0
    ip-ratelimit: 0
CONF
}

cat > "$work/auth.conf" <<CONF
server:
    port: $AUTH_PORT
    num-threads: 1
$(common_server_options)
    include: "$work/zone.conf"
CONF

# The compared resolver: a caching forwarder like swg-dns, two threads for two cores.
cat > "$work/unbound.conf" <<CONF
server:
    port: $UNBOUND_PORT
    num-threads: 2
    so-reuseport: yes
    msg-cache-size: 64m
    rrset-cache-size: 128m
    do-not-query-localhost: no
    prefetch: no
$(common_server_options)
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@$AUTH_PORT
CONF

unbound -d -c "$work/auth.conf" & pids+=($!)
unbound -d -c "$work/unbound.conf" & unbound_pid=$!
pids+=($unbound_pid)

mkdir -p "$work/swg"
"$server" "127.0.0.1:$SWG_PORT" "udp://127.0.0.1:$AUTH_PORT" "$work/swg" > "$work/swg.out" 2> "$work/swg.err" & swg_pid=$!
pids+=($swg_pid)
for _ in $(seq 1 600); do
    grep -q ready "$work/swg.out" 2>/dev/null && break
    sleep 0.5
done
grep -q ready "$work/swg.out" || { cat "$work/swg.err" >&2; echo "swg-dns did not start" >&2; exit 1; }
cat "$work/swg.err" >&2

run() { # name port seconds extra...
    local port="$2" seconds="$3"; shift 3
    dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries.txt" -l "$seconds" \
        -c "$CLIENTS" -q "$OUTSTANDING" "$@"
}

# Latency percentiles from dnsperf's per-query lines ("> NOERROR name A 0.000123").
percentiles() {
    awk '$1 == ">" { print $NF }' | sort -g | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "no samples"; exit }
            printf "p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, p99.9 %.3f ms (%d samples)\n",
                v[int(NR*0.50)]*1000, v[int(NR*0.90)]*1000, v[int(NR*0.99)]*1000,
                v[int(NR*0.999)]*1000, NR
        }'
}

# CPU time (user + system, in clock ticks) a process has used so far.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
ticks_per_second="$(getconf CLK_TCK)"

echo "warming both caches" >&2
run x "$UNBOUND_PORT" 3 -n 1 >/dev/null
run x "$SWG_PORT" 3 -n 1 >/dev/null

echo "== load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
for target in "unbound:$UNBOUND_PORT:$unbound_pid" "swg-dns:$SWG_PORT:$swg_pid"; do
    IFS=: read -r name port pid <<<"$target"
    echo "== $name: throughput ($SECONDS_PER_RUN s, $CLIENTS clients, $OUTSTANDING outstanding)"
    before="$(cpu_ticks "$pid")"
    run "$name" "$port" "$SECONDS_PER_RUN" > "$work/throughput.txt"
    after="$(cpu_ticks "$pid")"
    grep -E "Queries (sent|completed|lost)|Queries per second|Average Latency|Latency StdDev" "$work/throughput.txt"
    completed="$(awk '/Queries completed/ { print $3 }' "$work/throughput.txt")"
    awk -v t=$(( after - before )) -v hz="$ticks_per_second" -v n="$completed" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
        'BEGIN { printf "  server CPU: %.2f s for %d queries, %.3f CPU s per 100 000 queries (load average %s)\n", t/hz, n, t/hz*100000/n, l }'
    echo "== $name: latency at full load"
    run "$name" "$port" 5 -v | percentiles
    echo "== $name: latency at $LATENCY_QPS queries per second"
    run "$name" "$port" 5 -v -Q "$LATENCY_QPS" | percentiles
done

kill -INT "$swg_pid"
wait "$swg_pid" 2>/dev/null || true
echo "== swg-dns counters"
grep -v ready "$work/swg.out"

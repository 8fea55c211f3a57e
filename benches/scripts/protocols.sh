#!/usr/bin/env bash
# HTTP /plaintext with wrk (plain and pipelined 16) and RESP with
# redis-benchmark -P 16, epoll vs io_uring, 1 worker, interleaved rounds.
# Server on CPU 0, load on CPU 1. Needs wrk and redis-tools.
#
# Usage: benches/scripts/protocols.sh [rounds] [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
SECS=${2:-4}
cargo build --release -q -p pollring-examples --bin http --bin resp
PORT=7800
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

wrk_run() { # backend depth port -> req/s
    local backend=$1 depth=$2 port=$3
    POLLRING_IDLE_TIMEOUT_MS=0 taskset -c 0 target/release/http --backend "$backend" --workers 1 \
        --addr 127.0.0.1:"$port" 2>/dev/null &
    local pid=$!
    sleep 0.5
    local args=()
    [[ $depth -gt 1 ]] && args=(-s benches/scripts/pipeline.lua)
    local out
    out=$(taskset -c 1 wrk -t1 -c64 -d"${SECS}s" "${args[@]}" "http://127.0.0.1:$port/plaintext" -- "$depth")
    kill -INT $pid; wait $pid 2>/dev/null || true
    if grep -q -E "Socket errors|Non-2xx" <<<"$out"; then echo "wrk reported errors:" >&2; echo "$out" >&2; fi
    awk '/Requests\/sec/ {print $2}' <<<"$out"
}

redis_run() { # backend test port -> req/s
    local backend=$1 test=$2 port=$3
    POLLRING_IDLE_TIMEOUT_MS=0 taskset -c 0 target/release/resp --backend "$backend" --workers 1 \
        --addr 127.0.0.1:"$port" 2>/dev/null &
    local pid=$!
    sleep 0.5
    local out
    out=$(taskset -c 1 redis-benchmark -p "$port" -t "$test" -P 16 -n 1000000 -c 50 -q 2>&1)
    kill -INT $pid; wait $pid 2>/dev/null || true
    grep -o -E '[0-9.]+ requests per second' <<<"$out" | head -1 | awk '{print $1}'
}

declare -A R=()
for round in $(seq "$ROUNDS"); do
    for backend in epoll uring; do
        for depth in 1 16; do
            PORT=$((PORT + 1)); R[wrk-$depth-$backend]+="$(wrk_run $backend $depth $PORT)"$'\n'
        done
        for t in set get; do
            PORT=$((PORT + 1)); R[redis-$t-$backend]+="$(redis_run $backend $t $PORT)"$'\n'
        done
    done
done
echo "1 worker, server on CPU 0, load on CPU 1, $ROUNDS interleaved rounds (medians), requests/s"
printf "%-42s %12s %12s\n" workload epoll uring
row() { printf "%-42s %12s %12s\n" "$1" "$(echo -n "${R[$2-epoll]}" | median)" "$(echo -n "${R[$2-uring]}" | median)"; }
row "wrk /plaintext, 64 conns"                 wrk-1
row "wrk /plaintext, 64 conns, pipelined 16"   wrk-16
row "redis-benchmark SET -P 16, 50 conns"      redis-set
row "redis-benchmark GET -P 16, 50 conns"      redis-get

#!/usr/bin/env bash
# Echo: epoll vs io_uring, 1 worker, side by side in interleaved rounds.
# Reports msg/s, server CPU time per message (from /proc schedstat) and
# system calls per message (perf stat -e raw_syscalls:sys_enter on the
# server's PID over a fixed window inside the load).
#
# Usage: benches/scripts/echo-syscalls.sh [rounds] [seconds]
#   VARIANTS="epoll uring uring+POLLRING_URING_TASKRUN=coop"  compare settings:
#   each variant is a backend, then '+'-separated VAR=VALUE for the server.
#   BIN=/path/to/echo in a variant runs that build instead, for A/B runs of
#   two commits: VARIANTS="epoll epoll+BIN=/tmp/old/target/release/echo".
#   DEPTHS="1 16" CONNS=100 SIZE=64 set the load.
# Needs: linux-perf (perf). Server on CPU 0, load generator on CPU 1.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
SECS=${2:-4}
CONNS=${CONNS:-100}
SIZE=${SIZE:-64}
VARIANTS=${VARIANTS:-epoll uring}
DEPTHS=${DEPTHS:-1 16}
cargo build --release -q -p pollring-examples --bin echo -p pollring-bench --bin pollring-bench
ECHO=target/release/echo
LOAD=target/release/pollring-bench
PORT=7500

cpu_ns() { # total on-CPU ns of all threads of $1
    local t=0
    for f in /proc/"$1"/task/*/schedstat; do t=$((t + $(cut -d' ' -f1 "$f"))); done
    echo $t
}

one_run() { # variant depth port -> "msgs_per_s cpu_ns_per_msg syscalls_per_msg"
    local variant=$1 depth=$2 PORT=$3
    local backend=${variant%%+*}
    local -a envs=()
    [[ $variant == *+* ]] && IFS=+ read -r -a envs <<<"${variant#*+}"
    # BIN=path picks another build of the echo server (an A/B of two commits).
    local bin=$ECHO
    local -a server_env=()
    for e in "${envs[@]}"; do
        if [[ $e == BIN=* ]]; then bin=${e#BIN=}; else server_env+=("$e"); fi
    done
    env POLLRING_IDLE_TIMEOUT_MS=0 "${server_env[@]}" taskset -c 0 "$bin" --backend "$backend" \
        --workers 1 --addr 127.0.0.1:$PORT 2>/dev/null &
    local pid=$!
    sleep 0.5
    local out; out=$(mktemp)
    taskset -c 1 "$LOAD" load --addr 127.0.0.1:$PORT --connections "$CONNS" --size "$SIZE" \
        --depth "$depth" --warmup 1 --duration "$SECS" >"$out" &
    local lpid=$!
    sleep 1.2
    # Count syscalls and CPU over the same window, inside the recorded run.
    local win=$((SECS - 1))
    local c0; c0=$(cpu_ns $pid)
    local sys; sys=$(perf stat -x, -e raw_syscalls:sys_enter -p $pid -- sleep "$win" 2>&1 | grep raw_syscalls | cut -d, -f1)
    local c1; c1=$(cpu_ns $pid)
    wait $lpid
    kill -INT $pid; wait $pid 2>/dev/null || true
    local rate; rate=$(awk '{print $1}' "$out")
    rm -f "$out"
    awk -v r="$rate" -v s="$sys" -v c=$((c1 - c0)) -v w="$win" \
        'BEGIN { m = r * w; printf "%.0f %.0f %.3f\n", r, c / m, s / m }'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "echo, 1 worker, $CONNS connections, $SIZE-byte messages, $ROUNDS interleaved rounds of ${SECS}s (medians)"
printf "%-6s %-40s %12s %14s %14s\n" depth variant "msg/s" "cpu ns/msg" "syscalls/msg"
for depth in $DEPTHS; do
    declare -A R=()
    for round in $(seq "$ROUNDS"); do
        for v in $VARIANTS; do
            PORT=$((PORT + 1))
            R[$v]+="$(one_run "$v" "$depth" "$PORT")"$'\n'
        done
    done
    for v in $VARIANTS; do
        rates=$(echo -n "${R[$v]}" | awk '{print $1}' | median)
        cpu=$(echo -n "${R[$v]}" | awk '{print $2}' | median)
        sc=$(echo -n "${R[$v]}" | awk '{print $3}' | median)
        printf "%-6s %-40s %12s %14s %14s\n" "$depth" "$v" "$rates" "$cpu" "$sc"
    done
    unset R
done

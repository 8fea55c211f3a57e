#!/usr/bin/env bash
# A zero-downtime restart under load, against the same load without one.
#
# Usage: benches/scripts/restart.sh [ROUNDS]   (default 3)
# Build first: cargo build --release -p pollring-examples --bin http
# Needs wrk. For each backend and round, in turn: the http example with
# --workers 1 on CPU 0, wrk -t1 -c64 -d6s on CPU 1; in the "restart" runs
# the server gets SIGUSR2 two seconds in. Prints wrk's requests/s, socket
# errors, non-2xx answers and latency max/p99 for each run, and whether the
# old process exited and a new one served afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
bin=./target/release/http
[[ -x $bin ]] || { echo "build first: cargo build --release -p pollring-examples --bin http" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }

run() { # backend, restart(0/1)
    local backend=$1 restart=$2 log port old new out
    log=$(mktemp)
    taskset -c 0 "$bin" --backend "$backend" --workers 1 --addr 127.0.0.1:0 2>"$log" &
    old=$!
    for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.05; done
    port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$log" | head -1)
    out=$(mktemp)
    taskset -c 1 wrk -t1 -c64 -d6s --latency "http://127.0.0.1:$port/plaintext" >"$out" &
    local load=$!
    if [[ $restart == 1 ]]; then sleep 2; kill -USR2 "$old"; fi
    wait "$load"
    new=$(sed -n 's/.*drains and exits pid=\([0-9]*\).*/\1/p' "$log" | head -1)
    local rps errors non2xx max p99 after=""
    rps=$(awk '/Requests\/sec/ {print $2}' "$out")
    errors=$(grep -o 'Socket errors.*' "$out" || echo "Socket errors: none")
    non2xx=$(grep -o 'Non-2xx or 3xx responses: [0-9]*' "$out" || echo "non-2xx: none")
    max=$(awk '/Latency/ && !/Distribution/ {print $4; exit}' "$out")
    p99=$(awk '$1 == "99%" {print $2}' "$out")
    if [[ $restart == 1 ]]; then
        sleep 1
        if kill -0 "$old" 2>/dev/null; then after="old still running"; else after="old exited"; fi
        if [[ -n $new ]] && curl -sf "http://127.0.0.1:$port/plaintext" >/dev/null; then
            after="$after, new pid $new serves"
        else
            after="$after, NO new process serving"
        fi
    fi
    printf '%-6s %-8s %10s req/s  p99 %-8s max %-8s %s; %s %s\n' \
        "$backend" "$([[ $restart == 1 ]] && echo restart || echo steady)" \
        "$rps" "$p99" "$max" "$errors" "$non2xx" "${after:+; $after}"
    kill "$old" ${new:+"$new"} 2>/dev/null || true
    wait "$old" 2>/dev/null || true
    sleep 0.5
    rm -f "$log" "$out"
}

for round in $(seq "$rounds"); do
    echo "== round $round"
    for backend in epoll uring; do
        run "$backend" 0
        run "$backend" 1
    done
done

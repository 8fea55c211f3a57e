#!/usr/bin/env python3
"""RSS growth of the echo server per idle connection.

Usage: benches/scripts/idle-rss.py BACKEND N PORT   (e.g. uring 10000 7601)
Build first: cargo build --release -p pollring-examples --bin echo
Opens N connections, then sends one byte on each and reads it back (a
burst, so each is accepted and registered), waits, and reports (VmRSS after
- VmRSS before) / N, and the pool's share of it (its resident pages, read
from /proc/PID/pagemap).

WARM=K (default 10) connections are opened before the baseline, each echoes
one byte in turn, then all K echo one more byte at once. Two one-time costs
per worker depend on K, not on N, and a large K moves them into the
baseline:
  * io_uring: K above the buffer ring's size (1024) cycles every ring
    buffer, committing the first page of each (about 4 MiB per worker).
  * epoll: a burst holds up to one turn's receives (max_events, 256) in
    pool buffers at once, committing their first pages (about 1 MiB).

Both the server and this client need N+K descriptors: this machine class
allows 20,000 per process.
"""
import os, socket, struct, subprocess, sys, time

backend = sys.argv[1]; n = int(sys.argv[2]); port = int(sys.argv[3])
srv = subprocess.Popen(["./target/release/echo", "--backend", backend, "--workers", "1",
                        "--addr", f"127.0.0.1:{port}"],
                       stderr=subprocess.DEVNULL, env={**os.environ, "POLLRING_IDLE_TIMEOUT_MS": "0"})
time.sleep(0.5)


def rss():
    for line in open(f"/proc/{srv.pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])


def pool_kib():
    """Resident KiB of the worker's pool: the first 64 MiB of the first
    anonymous read-write mapping of at least 64 MiB (the default pool,
    16 KiB x 4096, possibly merged with a malloc arena behind it)."""
    try:
        for line in open(f"/proc/{srv.pid}/maps"):
            f = line.split()
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            if f[1].startswith("rw") and len(f) < 6 and hi - lo >= 64 << 20:
                with open(f"/proc/{srv.pid}/pagemap", "rb") as pm:
                    pm.seek(lo // 4096 * 8)
                    entries = pm.read((64 << 20) // 4096 * 8)
                return 4 * sum(1 for (e,) in struct.iter_unpack("<Q", entries) if e >> 63)
    except OSError:
        pass
    return None


def burst(count):
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    for s in socks:
        s.sendall(b"x")
    for s in socks:
        assert s.recv(1) == b"x"
    return socks


# warm-up: lazy allocations and the per-worker one-time costs above go into the baseline
warm = []
for _ in range(int(os.environ.get("WARM", "10"))):
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"x"); s.recv(1); warm.append(s)
for s in warm:
    s.sendall(b"x")
for s in warm:
    assert s.recv(1) == b"x"
time.sleep(0.3); base = rss(); pool0 = pool_kib()
socks = burst(n)
time.sleep(1.0); after = rss(); pool1 = pool_kib()
print(f"{backend}: {n} idle connections: RSS {base} KiB -> {after} KiB, +{(after-base)*1024/n:.0f} bytes/connection")
if pool0 is not None and pool1 is not None:
    print(f"  of which pool pages: {pool0} KiB -> {pool1} KiB, {(pool1-pool0)*1024/n:+.0f} bytes/connection")
for s in socks + warm:
    s.close()
srv.terminate(); srv.wait()

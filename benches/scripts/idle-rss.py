#!/usr/bin/env python3
"""RSS growth of the echo server per idle connection.

Usage: benches/scripts/idle-rss.py BACKEND N PORT   (e.g. uring 10000 7601)
Build first: cargo build --release -p pollring-examples --bin echo
Opens N connections (each echoes one byte, so it is accepted and registered),
waits, and reports (VmRSS after - VmRSS before) / N. WARM=K (default 10)
connections are opened before the baseline: with io_uring, K above the
buffer ring's size (1024) cycles every ring buffer first, so the fixed
per-worker cost of the ring's touched pages stays out of the per-connection
figure. Both the server and this
client need N+ descriptors: this machine class allows 20,000 per process.
"""
import socket, subprocess, sys, time, os
backend = sys.argv[1]; n = int(sys.argv[2]); port = int(sys.argv[3])
srv = subprocess.Popen(["./target/release/echo","--backend",backend,"--workers","1","--addr",f"127.0.0.1:{port}"],
                       stderr=subprocess.DEVNULL, env={**os.environ, "POLLRING_IDLE_TIMEOUT_MS":"0"})
time.sleep(0.5)
def rss():
    for l in open(f"/proc/{srv.pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
# warm-up: a few connections so lazy allocations (first pool pages, slabs) are in the baseline
warm=[]
for i in range(int(os.environ.get("WARM", "10"))):
    s=socket.create_connection(("127.0.0.1",port)); s.sendall(b"x"); s.recv(1); warm.append(s)
time.sleep(0.3); base=rss()
socks=[]
for i in range(n):
    s=socket.create_connection(("127.0.0.1",port)); socks.append(s)
for s in socks: s.sendall(b"x")
for s in socks: assert s.recv(1)==b"x"
time.sleep(1.0); after=rss()
print(f"{backend}: {n} idle connections: RSS {base} KiB -> {after} KiB, +{(after-base)*1024/n:.0f} bytes/connection")
for s in socks+warm: s.close()
srv.terminate(); srv.wait()

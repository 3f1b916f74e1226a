#!/usr/bin/env python3
"""Memory per dataset: a three-node memory-only raftcache cluster against a
real redis-server, side by side in one run (issue 19).

For each dataset (strings, small hashes, lists, sets, sorted sets), a fresh
redis-server and a fresh cluster are loaded with the same keys through
pipelined commands (the cluster through its leader, then every node waits
until it has applied everything). Printed per dataset:

- RSS of redis-server and of each raftcache node after the load (the
  largest node is compared), and their ratio;
- the data as each accounts for it: redis's INFO `used_memory` minus its
  empty-server baseline, and raftcache's INFO `used_memory` (the engine's
  deterministic estimate, what `maxmemory` limits), and their ratio.

Then an eviction run: `--maxmemory` with allkeys-lru and writes of three
times that through the leader; it prints each node's RSS as a multiple of
maxmemory (what the README documents as the bound) and the keys evicted.

RSS does not vary run to run the way throughput does; `--rounds` repeats
each dataset and prints the median anyway.

    bench/memory.py [--scale 1.0] [--rounds 1] [--bin target/release/raftcache]
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from durability import Cluster, free_port  # noqa: E402
from single_node import wait_ready  # noqa: E402


def info_field(port, field):
    """One field of INFO (every section)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(resp("INFO", "everything"))
        data = b""
        while True:
            data += s.recv(1 << 16)
            head, _, rest = data.partition(b"\r\n")
            if head.startswith(b"$") and len(rest) >= int(head[1:]):
                break
    for line in rest.decode().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    sys.exit(f"INFO has no {field}")


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def load(port, commands, batch=500):
    """Sends the commands pipelined, `batch` at a time; fails on any error."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        buf = []
        for cmd in commands:
            buf.append(resp(*cmd))
            if len(buf) == batch:
                _flush(s, buf)
                buf = []
        if buf:
            _flush(s, buf)


def _flush(s, buf):
    s.sendall(b"".join(buf))
    want, data = len(buf), b""
    while data.count(b"\r\n") < want:
        chunk = s.recv(1 << 20)
        if not chunk:
            sys.exit("connection closed while loading")
        data += chunk
    if b"\r\n-" in b"\r\n" + data:
        sys.exit(f"error reply while loading: {data[:200]!r}")


def datasets(scale):
    n = lambda x: max(1, int(x * scale))  # noqa: E731
    field = lambda i: f"field:{i:04d}"  # noqa: E731
    return {
        "strings 100 B": (n(200_000), lambda k: [("SET", f"key:{k:08d}", "v" * 100)]),
        "strings 1 KiB": (n(40_000), lambda k: [("SET", f"key:{k:08d}", "v" * 1024)]),
        "hashes 10 x 16 B": (
            n(40_000),
            lambda k: [("HSET", f"h:{k:08d}", *sum(([field(i), "x" * 16] for i in range(10)), []))],
        ),
        "lists 20 x 16 B": (n(40_000), lambda k: [("RPUSH", f"l:{k:08d}", *["y" * 16] * 20)]),
        "sets 20 x 16 B": (
            n(40_000), lambda k: [("SADD", f"s:{k:08d}", *[f"member:{i:08d}" for i in range(20)])]
        ),
        "zsets 20 x 16 B": (
            n(40_000),
            lambda k: [("ZADD", f"z:{k:08d}", *sum(([i, f"member:{i:08d}"] for i in range(20)), []))],
        ),
    }


def redis_run(keys, make):
    port = free_port()
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        wait_ready(port, p)
        base = int(info_field(port, "used_memory"))
        load(port, (cmd for k in range(keys) for cmd in make(k)))
        return rss_bytes(p.pid), int(info_field(port, "used_memory")) - base
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)


def wait_applied(cluster, timeout=300):
    end = time.time() + timeout
    while time.time() < end:
        idx = [int(info_field(p, "raft_applied_index")) for p in cluster.resp]
        if len(set(idx)) == 1:
            return
        time.sleep(0.2)
    sys.exit("the nodes did not reach the same applied index")


def cluster_run(binary, keys, make, extra=()):
    root = tempfile.mkdtemp(prefix="raftcache-membench-")
    c = Cluster(binary, "memory", root, extra=["--threads", "1", *extra])
    try:
        c.start_all()
        leader = c.leader()
        time.sleep(0.5)
        load(c.resp[leader], (cmd for k in range(keys) for cmd in make(k)))
        wait_applied(c)
        time.sleep(0.5)
        rss = [rss_bytes(p.pid) for p in c.procs]
        used = int(info_field(c.resp[leader], "used_memory"))
        evicted = int(info_field(c.resp[leader], "evicted_keys"))
        return rss, used, evicted
    finally:
        c.stop_all()
        shutil.rmtree(root, ignore_errors=True)


def mb(n):
    return f"{n / 1e6:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every dataset's key count")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--maxmemory-mb", type=int, default=32)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--bin", default=os.path.join(here, "..", "target", "release", "raftcache"))
    a = ap.parse_args()
    if not os.path.exists(a.bin):
        sys.exit(f"{a.bin} not found: cargo build --release -p raftcache-node (or pass --bin)")
    print(f"binary: {a.bin}; rounds: {a.rounds}; medians shown")
    print("| dataset | keys | redis RSS MB | raftcache RSS MB (largest node) | RSS ratio "
          "| redis data MB | raftcache used_memory MB | accounting ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (keys, make) in datasets(a.scale).items():
        r_rss, r_data, c_rss, c_used = [], [], [], []
        for _ in range(a.rounds):
            rss, data = redis_run(keys, make)
            r_rss.append(rss)
            r_data.append(data)
            nodes, used, _ = cluster_run(a.bin, keys, make)
            c_rss.append(max(nodes))
            c_used.append(used)
        rr, rd = statistics.median(r_rss), statistics.median(r_data)
        cr, cu = statistics.median(c_rss), statistics.median(c_used)
        print(f"| {name} | {keys} | {mb(rr)} | {mb(cr)} | {cr / rr:.2f} | {mb(rd)} | {mb(cu)} "
              f"| {cu / rd:.2f} |", flush=True)

    limit = a.maxmemory_mb * 1024 * 1024
    keys = 3 * limit // 200
    make = lambda k: [("SET", f"key:{k:08d}", "v" * 100)]  # noqa: E731
    nodes, used, evicted = cluster_run(
        a.bin, keys, make, extra=["--maxmemory", f"{a.maxmemory_mb}mb", "--maxmemory-policy", "allkeys-lru"])
    print()
    print(f"eviction: maxmemory {a.maxmemory_mb} MB, allkeys-lru, {keys} SETs of 100 B "
          f"(about 3x the limit): used_memory {mb(used)} MB, {evicted} keys evicted, node RSS "
          + ", ".join(f"{mb(r)} MB ({r / limit:.2f}x maxmemory)" for r in nodes))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Durability costs, measured in one run on one machine:

1. SET throughput of a three-node raftcache cluster under appendfsync always,
   everysec and memory-only, side by side with a real redis-server with
   appendonly yes and appendfsync always / everysec
   (`redis-benchmark -t set -n N -c 50` at -P 1 and -P 16, through the leader).
2. Restart time of a node holding 1M small keys (from its snapshot).
3. Snapshot build time (SAVE) for 1M keys, and install time: a wiped follower
   of a three-node cluster receiving and loading the 1M-key snapshot.

    bench/durability.py [--requests 200000] [--keys 1000000] [--bin target/release/raftcache]

Targets (issue 4): restart of 1M small keys under 5 s.
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from single_node import benchmark, free_port, wait_ready  # noqa: E402


def cli(port, *args, timeout=600):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                          timeout=timeout).stdout.strip()


def info_field(port, field):
    for line in cli(port, "info", "replication").splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return None


def load_keys(port, n):
    """Writes n small keys (key:<i> -> value<i>) with pipelined MSETs."""
    batch = 1000
    with socket.create_connection(("127.0.0.1", port)) as s:
        pending = 0
        buf = bytearray()
        for start in range(0, n, batch):
            args = [b"MSET"]
            for i in range(start, min(n, start + batch)):
                args += [b"key:%d" % i, b"value%d" % i]
            buf += b"*%d\r\n" % len(args)
            for a in args:
                buf += b"$%d\r\n%s\r\n" % (len(a), a)
            pending += 1
            if pending == 64 or start + batch >= n:
                s.sendall(buf)
                buf.clear()
                got = 0
                data = b""
                while got < pending:
                    data += s.recv(65536)
                    got = data.count(b"\r\n")
                pending = 0


class Cluster:
    def __init__(self, binary, fsync, data_root, extra=()):
        self.binary, self.fsync, self.data_root, self.extra = binary, fsync, data_root, list(extra)
        self.resp = [free_port() for _ in range(3)]
        self.raft = [free_port() for _ in range(3)]
        self.admin = [free_port() for _ in range(3)]
        self.peers = ",".join(f"{i + 1}=127.0.0.1:{self.raft[i]}" for i in range(3))
        self.procs = [None, None, None]

    def argv(self, i):
        a = [self.binary, "--id", str(i + 1), "--peers", self.peers, "--bind", "127.0.0.1",
             "--port", str(self.resp[i]), "--raft-port", str(self.raft[i]), "--admin-port", str(self.admin[i]), "--metrics-port", "0",
             "--loglevel", "warning", *self.extra]
        if self.fsync != "memory":
            a += ["--data-dir", os.path.join(self.data_root, f"n{i + 1}"), "--appendfsync", self.fsync]
        return a

    def start(self, i):
        self.procs[i] = subprocess.Popen(self.argv(i))

    def start_all(self):
        for i in range(3):
            self.start(i)
        for i in range(3):
            wait_ready(self.resp[i], self.procs[i], timeout=120)

    def leader(self, deadline=60):
        end = time.time() + deadline
        while time.time() < end:
            roles = [info_field(p, "raft_role") for p in self.resp]
            if roles.count("leader") == 1:
                return roles.index("leader")
            time.sleep(0.2)
        sys.exit("no leader")

    def stop(self, i):
        p = self.procs[i]
        if p and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()

    def stop_all(self):
        for i in range(3):
            self.stop(i)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "raftcache"))
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="raftcache-bench-")
    rows = []
    try:
        # 1. Throughput by fsync policy.
        for policy in ("always", "everysec", "memory"):
            c = Cluster(args.bin, policy, os.path.join(root, policy))
            c.start_all()
            try:
                leader = c.leader()
                for pipeline in (1, 16):
                    r = benchmark(c.resp[leader], args.requests, pipeline, tests="set")["set"]
                    rows.append((f"raftcache 3 nodes, {policy}", pipeline, r))
            finally:
                c.stop_all()
        for policy in ("always", "everysec"):
            port = free_port()
            d = os.path.join(root, f"redis-{policy}")
            os.makedirs(d)
            p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "yes", "--appendfsync", policy, "--dir", d, "--loglevel", "warning"])
            try:
                wait_ready(port, p)
                for pipeline in (1, 16):
                    r = benchmark(port, args.requests, pipeline, tests="set")["set"]
                    rows.append((f"redis-server, appendfsync {policy}", pipeline, r))
            finally:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=60)
        print(f"\nSET throughput, redis-benchmark -t set -n {args.requests} -c 50, one {os.cpu_count()}-CPU machine\n")
        print(f"{'setup':<38}{'-P':>4}{'rps':>12}{'p50 ms':>9}{'p99 ms':>9}")
        for name, pipeline, r in sorted(rows, key=lambda x: (x[1], x[0])):
            print(f"{name:<38}{pipeline:>4}{r[0]:>12,.0f}{r[1]:>9.3f}{r[2]:>9.3f}")

        # 2. and 3. One cluster with 1M keys.
        c = Cluster(args.bin, "always", os.path.join(root, "big"), extra=["--snapshot-every", "1000000000"])
        c.start_all()
        try:
            leader = c.leader()
            t = time.time()
            load_keys(c.resp[leader], args.keys)
            load_s = time.time() - t
            t = time.time()
            out = cli(c.resp[leader], "save")
            build_s = time.time() - t
            assert out == "OK", out
            follower = (leader + 1) % 3
            # Restart: clean stop and start of a follower, until it answers and
            # holds every key (stale reads show its own replica).
            c.stop(follower)
            t = time.time()
            c.start(follower)
            wait_ready(c.resp[follower], c.procs[follower], timeout=300)
            answer_s = time.time() - t
            while int(info_field(c.resp[follower], "raft_applied_index") or 0) < int(
                    info_field(c.resp[leader], "raft_applied_index") or 0):
                time.sleep(0.05)
            restart_s = time.time() - t
            # Install: wipe the follower and let the leader send the snapshot.
            c.stop(follower)
            shutil.rmtree(os.path.join(root, "big", f"n{follower + 1}"))
            cli(c.resp[leader], "save")  # a fresh snapshot to send
            t = time.time()
            c.start(follower)
            wait_ready(c.resp[follower], c.procs[follower], timeout=300)
            target = int(info_field(c.resp[leader], "raft_applied_index") or 0)
            deadline = time.time() + 600
            while time.time() < deadline:
                if int(info_field(c.resp[follower], "raft_applied_index") or 0) >= target:
                    break
                time.sleep(0.1)
            install_s = time.time() - t
        finally:
            c.stop_all()
        print(f"\n{args.keys:,} small keys, three nodes, appendfsync always")
        print(f"  load through the leader (pipelined MSET)        {load_s:8.2f} s")
        print(f"  snapshot build (SAVE on the leader)             {build_s:8.2f} s")
        print(f"  restart of a follower: answering clients        {answer_s:8.2f} s")
        print(f"  restart of a follower: caught up with leader    {restart_s:8.2f} s   (target < 5 s)")
        print(f"  wiped follower: snapshot streamed and installed {install_s:8.2f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

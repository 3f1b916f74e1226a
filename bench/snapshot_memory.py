#!/usr/bin/env python3
"""Memory while a large snapshot is built, streamed and installed.

Issue 4 asks that a follower that is wiped (or new, or far behind) receives
the snapshot streamed in chunks with memory bounded for a dataset larger than
1 GB. This script measures it on a real three-node cluster:

1. loads `--gb` GiB of values (1 KiB each, pipelined MSET) through the leader;
2. SAVE on the leader (builds the snapshot file), sampling the leader's RSS;
3. stops a follower, wipes its data directory and starts it again: it rejoins
   as a new incarnation and receives the snapshot, 1 MiB per gRPC chunk.
   The leader's RSS is sampled while it sends, the follower's while it
   receives and loads.

It prints the dataset size, the snapshot file size and, per process, RSS
before and the peak during each phase. Bounded means: the peak above the
steady state is a small constant (buffers), not a second copy of the data.

    bench/snapshot_memory.py [--gb 1.2] [--appendfsync everysec] [--bin target/release/raftcache]
"""
import argparse
import os
import shutil
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from durability import Cluster, cli, info_field  # noqa: E402
from single_node import wait_ready  # noqa: E402

VALUE = 1024
BATCH = 100


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Sampler:
    """Samples the RSS of a process every 20 ms in a thread; keeps the peak."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0.0, False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                pass
            time.sleep(0.02)

    def done(self):
        self.stop = True
        self.thread.join()
        return self.peak


class WriteProbe:
    """SETs in a loop on one connection in a thread; records the slowest reply
    and any error reply (a write stalled by the snapshot shows here)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.slowest, self.count, self.errors, self.stop = 0.0, 0, [], False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        i = 0
        while not self.stop:
            i += 1
            k = b"probe:%d" % i
            t = time.time()
            self.sock.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nx\r\n" % (len(k), k))
            data = b""
            while not data.endswith(b"\r\n"):
                data += self.sock.recv(4096)
            self.slowest = max(self.slowest, time.time() - t)
            self.count += 1
            if not data.startswith(b"+OK"):
                self.errors.append(data.decode(errors="replace").strip())

    def done(self):
        self.stop = True
        self.thread.join()
        self.sock.close()
        return self


def load(port, n):
    """n keys of VALUE bytes each, MSET batches of BATCH, 16 in flight."""
    value = b"v" * VALUE
    with socket.create_connection(("127.0.0.1", port)) as s:
        inflight = 0
        buf = bytearray()
        for start in range(0, n, BATCH):
            end = min(n, start + BATCH)
            buf += b"*%d\r\n$4\r\nMSET\r\n" % (1 + 2 * (end - start))
            for i in range(start, end):
                k = b"big:%d" % i
                buf += b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, VALUE, value)
            inflight += 1
            if inflight == 16 or end >= n:
                s.sendall(buf)
                buf.clear()
                data = b""
                while data.count(b"\r\n") < inflight:
                    chunk = s.recv(65536)
                    if not chunk:
                        sys.exit("connection closed while loading")
                    data += chunk
                if data.count(b"+OK\r\n") != inflight:
                    sys.exit(f"MSET failed: {data[:200]!r}")
                inflight = 0


def local_keys(port):
    """Keys in db 0 of this node's own replica (INFO is answered locally)."""
    for line in cli(port, "info", "keyspace").splitlines():
        if line.startswith("db0:"):
            return int(line.split("keys=")[1].split(",")[0])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=1.2)
    ap.add_argument("--appendfsync", default="everysec", help="always, everysec, no or memory (no data dir)")
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "raftcache"))
    args = ap.parse_args()
    keys = int(args.gb * (1 << 30) / VALUE)
    root = tempfile.mkdtemp(prefix="raftcache-snapmem-")
    c = Cluster(args.bin, args.appendfsync, root, extra=["--snapshot-every", "1000000000"])
    try:
        c.start_all()
        leader = c.leader()
        follower = (leader + 1) % 3
        t = time.time()
        load(c.resp[leader], keys)
        load_s = time.time() - t
        assert int(cli(c.resp[leader], "dbsize")) == keys
        lpid = c.procs[leader].pid
        leader_loaded = rss_mb(lpid)
        follower_loaded = rss_mb(c.procs[follower].pid)

        s = Sampler(lpid)
        probe = WriteProbe(c.resp[leader])
        time.sleep(0.5)
        t = time.time()
        assert cli(c.resp[leader], "save") == "OK"
        build_s = time.time() - t
        time.sleep(0.5)
        probe.done()
        leader_build_peak = s.done()
        snap_dir = os.path.join(root, f"n{leader + 1}")
        snap_bytes = max((os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(snap_dir)
                          for f in fs if "snap" in f), default=0)

        c.stop(follower)
        shutil.rmtree(os.path.join(root, f"n{follower + 1}"), ignore_errors=True)  # memory: nothing to wipe
        leader_before_send = rss_mb(lpid)
        s = Sampler(lpid)
        t = time.time()
        c.start(follower)
        fs = Sampler(c.procs[follower].pid)
        wait_ready(c.resp[follower], c.procs[follower], timeout=600)
        target = int(info_field(c.resp[leader], "raft_applied_index") or 0)
        deadline = time.time() + 900
        while time.time() < deadline:
            if int(info_field(c.resp[follower], "raft_applied_index") or 0) >= target:
                break
            time.sleep(0.1)
        else:
            sys.exit("the wiped follower did not catch up")
        install_s = time.time() - t
        time.sleep(0.5)
        follower_after = rss_mb(c.procs[follower].pid)
        follower_peak = fs.done()
        leader_send_peak = s.done()
        follower_keys = local_keys(c.resp[follower])
        print(f"\n{keys:,} keys x {VALUE} B values = {keys * VALUE / (1 << 30):.2f} GiB of values, "
              f"three nodes, appendfsync {args.appendfsync}")
        print(f"  load through the leader                 {load_s:8.1f} s")
        print(f"  snapshot file                           {snap_bytes / (1 << 20):8.0f} MiB")
        print(f"  SAVE on the leader                      {build_s:8.2f} s")
        print(f"  slowest SET while SAVE ran              {probe.slowest * 1000:8.1f} ms  "
              f"({probe.count:,} SETs, {len(probe.errors)} errors{': ' + probe.errors[0] if probe.errors else ''})")
        print(f"  wiped follower caught up                {install_s:8.2f} s  ({follower_keys:,} keys)")
        print("\n  RSS, MiB                                  steady     peak   peak - steady")
        print(f"  leader while building the snapshot      {leader_loaded:8.0f} {leader_build_peak:8.0f} "
              f"{leader_build_peak - leader_loaded:8.0f}")
        print(f"  leader while streaming it               {leader_before_send:8.0f} {leader_send_peak:8.0f} "
              f"{leader_send_peak - leader_before_send:8.0f}")
        print(f"  wiped follower receiving and loading    {follower_after:8.0f} {follower_peak:8.0f} "
              f"{follower_peak - follower_after:8.0f}   (steady = after install; a loaded "
              f"follower held {follower_loaded:.0f})")
        if follower_keys != keys + probe.count:
            sys.exit(f"the follower holds {follower_keys} keys, expected {keys + probe.count}")
    finally:
        c.stop_all()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

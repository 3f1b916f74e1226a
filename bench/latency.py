#!/usr/bin/env python3
"""Latency of one client: a three-node cluster against a real redis-server.

A single client doing one command at a time (scripts, migrations, many
request handlers) sees the latency of each command, not the throughput of
many. This starts a three-node raftcache cluster (memory-only, release build)
and one redis-server, and runs `redis-benchmark -c 1 -P 1` for PING, SET,
INCR and GET through the leader, a follower and redis-server, in rounds
(every target back to back in each round, medians reported).

With one client and one request in flight, the mean latency is 1/rps. The
target (issue 20): a single client's write within 2x redis-server's write
latency plus one loopback round trip per replica hop. A loopback round trip
is taken as redis-server's PING latency (a round trip and the least work a
server can do); a write through the leader has one hop (leader to
followers and back), through a follower two (the forward to the leader,
then the replication).

    bench/latency.py [--requests 20000] [--rounds 5] [--bin target/release/raftcache]
                     [--threads 1] [--tracking]

With --tracking, a client with CLIENT TRACKING on (RESP3) stays connected to
the third node, the follower not measured: every write then waits until that
node has told its tracking clients (issue 14), which costs a trip from the
leader to it and back.
"""

import argparse
import csv
import io
import os
import signal
import socket
import subprocess
import sys
from statistics import median

sys.path.insert(0, os.path.dirname(__file__))
from single_node import free_port, wait_ready  # noqa: E402
from scripting import start_cluster  # noqa: E402

TESTS = "ping_mbulk,set,incr,get"


def one_client(port, requests, tests=TESTS):
    """redis-benchmark with one client, one request in flight: per test
    (mean us, p50 ms, p99 ms)."""
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", tests, "-n", str(requests), "-c", "1",
         "-P", "1", "--csv"],
        check=True, capture_output=True, text=True,
    ).stdout
    rows = {}
    for row in csv.DictReader(io.StringIO(out)):
        name = row["test"].split()[0].lower()
        if name == "ping_mbulk" or row["test"].startswith("PING_MBULK"):
            name = "ping"
        rps = float(row["rps"])
        rows[name] = (1e6 / rps, float(row["p50_latency_ms"]), float(row["p99_latency_ms"]))
    return rows


def tracking_client(port):
    """A RESP3 connection with CLIENT TRACKING on that has read a key (so
    its node registers with the leader); the caller keeps it open."""
    sock = socket.create_connection(("127.0.0.1", port))
    for cmd in (b"HELLO 3", b"CLIENT TRACKING ON", b"GET key:__rand_int__"):
        sock.sendall(cmd + b"\r\n")
        reply = sock.recv(65536)
        assert not reply.startswith(b"-"), reply
    return sock


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "target",
                                                  "release", "raftcache"))
    ap.add_argument("--threads", default="1", help="worker threads per node (default: %(default)s)")
    ap.add_argument("--tracking", action="store_true",
                    help="keep a tracking client on the third node (see above)")
    args = ap.parse_args()

    procs = []
    try:
        redis_port = free_port()
        procs.append(subprocess.Popen(["redis-server", "--port", str(redis_port), "--save", "",
                                       "--appendonly", "no", "--bind", "127.0.0.1",
                                       "--loglevel", "warning"], stdout=sys.stderr))
        wait_ready(redis_port, procs[-1])
        leader, follower = start_cluster(args, procs)
        if args.tracking:
            third = next(p for p in args.resp_ports if p not in (leader, follower))
            tracker = tracking_client(third)  # noqa: F841 (kept open)
        targets = [("leader", leader), ("follower", follower), ("redis", redis_port)]
        for _, port in targets:
            one_client(port, min(args.requests, 5000))  # warm-up, not counted
        runs = {}
        for rnd in range(args.rounds):
            order = targets[rnd % 3:] + targets[:rnd % 3]
            for name, port in order:
                runs.setdefault(name, []).append(one_client(port, args.requests))

        def med(name, test, i):
            return median(r[test][i] for r in runs[name])

        rtt = med("redis", "ping", 0)
        print(f"\nredis-benchmark -c 1 -P 1 -n {args.requests}; three raftcache nodes "
              f"(memory-only, --threads {args.threads}) and one redis-server on one "
              f"{os.cpu_count()}-CPU machine; median of {args.rounds} round(s)"
              + ("; a tracking client on the third node" if args.tracking else ""))
        print(f"loopback round trip (redis-server PING): {rtt:.1f} us\n")
        print(f"{'test':<6}{'via':>10}{'mean us':>10}{'redis us':>10}{'x redis':>9}"
              f"{'p50 ms':>9}{'p99 ms':>9}{'target us':>11}  met")
        for test in ("ping", "set", "incr", "get"):
            base = med("redis", test, 0)
            for via, hops in (("leader", 1), ("follower", 2)):
                mean = med(via, test, 0)
                line = (f"{test:<6}{via:>10}{mean:>10.1f}{base:>10.1f}{mean / base:>9.2f}"
                        f"{med(via, test, 1):>9.3f}{med(via, test, 2):>9.3f}")
                if test in ("set", "incr"):
                    target = 2 * base + hops * rtt
                    line += f"{target:>11.1f}  {'yes' if mean <= target else 'no'}"
                print(line)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()

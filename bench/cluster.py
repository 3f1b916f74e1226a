#!/usr/bin/env python3
"""Three-node cluster throughput and latency against a single real redis-server,
same machine, same run.

Starts a three-node raftcache cluster (memory-only, release build) and one
redis-server, then runs `redis-benchmark -t set,get,incr -c 50 -n N` at -P 1
and -P 16 against: the cluster's leader, a follower (which forwards to the
leader), and redis-server. Prints requests/second, p50/p99 latency and the
ratio raftcache/redis for each.

    bench/cluster.py [--requests 500000] [--bin target/release/raftcache]
                     [--read-consistency linearizable|lease|stale]
                     [--tests set,get,incr] [--pipelines 1,16] [--threads 1]
                     [--rounds 1] [--warmup 100000]

Each node runs with --threads 1 by default: three nodes share two cores here,
and a node on one thread (a current-thread runtime) has no cross-thread
wake-ups (pass --threads 0 for the server's default, one per CPU).

With --rounds N every measurement is repeated N times (redis and both cluster
paths back to back in each round) and the table shows medians and the range of
the per-round ratios: on a shared 2-core machine one run can be off by 0.2.

Targets (issue 3, 2-core machine shared by three nodes and the load
generator): replicated SET >= 0.5 of redis at -P 1 and >= 0.2 at -P 16,
linearizable GET >= 0.8, p99 < 5 ms at -P 1.
"""
import argparse
import os
import signal
import subprocess
import sys
import time
from statistics import median

sys.path.insert(0, os.path.dirname(__file__))
from single_node import benchmark, free_port, wait_ready  # noqa: E402

TESTS = "set,get,incr"


def info(port, field):
    out = subprocess.run(["redis-cli", "-p", str(port), "info", "replication"],
                         capture_output=True, text=True, timeout=5).stdout
    for line in out.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=500_000)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "raftcache"))
    ap.add_argument("--read-consistency", default="linearizable")
    ap.add_argument("--tests", default=TESTS, help="redis-benchmark tests (default: %(default)s)")
    ap.add_argument("--pipelines", default="1,16", help="-P values (default: %(default)s)")
    ap.add_argument("--threads", default="1", help="worker threads per node (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat every measurement this many times and report medians (default: %(default)s)")
    ap.add_argument("--warmup", type=int, default=100_000,
                    help="requests per test and -P sent to every target before measuring, "
                         "not counted (default: %(default)s; 0 for none)")
    args = ap.parse_args()
    tests = args.tests
    pipelines = [int(p) for p in args.pipelines.split(",")]

    resp = [free_port() for _ in range(3)]
    raft = [free_port() for _ in range(3)]
    admin = [free_port() for _ in range(3)]
    peers = ",".join(f"{i + 1}=127.0.0.1:{raft[i]}" for i in range(3))
    procs = []
    for i in range(3):
        procs.append(subprocess.Popen([
            args.bin, "--id", str(i + 1), "--peers", peers, "--bind", "127.0.0.1",
            "--port", str(resp[i]), "--raft-port", str(raft[i]), "--admin-port", str(admin[i]), "--metrics-port", "0",
            "--read-consistency", args.read_consistency, "--threads", args.threads,
            "--loglevel", "warning"], stdout=sys.stderr))
    redis_port = free_port()
    procs.append(subprocess.Popen(["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no",
                                   "--bind", "127.0.0.1", "--loglevel", "warning"], stdout=sys.stderr))
    try:
        for i in range(3):
            wait_ready(resp[i], procs[i], timeout=60)
        wait_ready(redis_port, procs[3])
        deadline = time.time() + 30
        leader = None
        while time.time() < deadline and leader is None:
            roles = [info(p, "raft_role") for p in resp]
            if roles.count("leader") == 1:
                leader = roles.index("leader")
            else:
                time.sleep(0.2)
        if leader is None:
            sys.exit("no leader elected")
        follower = (leader + 1) % 3
        targets = [("leader", resp[leader]), ("follower", resp[follower]), ("redis", redis_port)]
        # runs[(via, pipeline)] is one result dict per round. Each round runs
        # redis and both cluster paths back to back (in a rotating order), so
        # a ratio compares figures taken moments apart; the table shows the
        # median over rounds and, with several rounds, the range of ratios.
        # A warm-up pass (not counted) for every target alike: the first
        # requests to a fresh process pay for page faults and allocator growth.
        if args.warmup:
            for pipeline in pipelines:
                for _, port in targets:
                    benchmark(port, args.warmup, pipeline, tests=tests)
        runs = {}
        for rnd in range(args.rounds):
            for pipeline in pipelines:
                order = targets[rnd % 3:] + targets[:rnd % 3]
                for name, port in order:
                    runs.setdefault((name, pipeline), []).append(
                        benchmark(port, args.requests, pipeline, tests=tests))
        print(f"\nredis-benchmark -t {tests} -n {args.requests} -c 50; three raftcache nodes "
              f"(memory-only, read consistency {args.read_consistency}, --threads {args.threads}) "
              f"and one redis-server "
              f"on one {os.cpu_count()}-CPU machine; median of {args.rounds} round(s)\n")
        print(f"{'test':<6}{'-P':>4}{'via':>10}{'rps':>12}{'redis rps':>12}{'ratio':>7}"
              f"{'p50 ms':>9}{'p99 ms':>9}{'redis p50':>11}{'redis p99':>11}"
              + (f"{'ratio range':>14}" if args.rounds > 1 else ""))
        for pipeline in pipelines:
            redis = runs[("redis", pipeline)]
            for test in tests.split(","):
                b = [median(r[test][i] for r in redis) for i in range(3)]
                for via in ("leader", "follower"):
                    ours = runs[(via, pipeline)]
                    r = [median(o[test][i] for o in ours) for i in range(3)]
                    ratios = [o[test][0] / x[test][0] for o, x in zip(ours, redis)]
                    line = (f"{test:<6}{pipeline:>4}{via:>10}{r[0]:>12,.0f}{b[0]:>12,.0f}"
                            f"{median(ratios):>7.2f}{r[1]:>9.3f}{r[2]:>9.3f}{b[1]:>11.3f}{b[2]:>11.3f}")
                    if args.rounds > 1:
                        line += f"{min(ratios):>8.2f}-{max(ratios):.2f}"
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

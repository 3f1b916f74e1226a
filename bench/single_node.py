#!/usr/bin/env python3
"""Single-node throughput: raftcache against a real redis-server, same machine,
same run, same redis-benchmark invocation.

Runs `redis-benchmark -t set,get,incr,lpush,hset -n N -c 50` at -P 1 and -P 16
against each server in turn (alternating, so drift in machine load hits both)
and prints requests/second, p50 latency and the ratio raftcache/redis.

    bench/single_node.py [--requests 500000] [--bin target/release/raftcache]

Targets (issue 2): ratio >= 0.9 at -P 1 and >= 0.7 at -P 16.
"""
import argparse
import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

TESTS = "set,get,incr,lpush,hset"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port, proc, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server on port {port} exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"server on port {port} did not answer PING in {timeout}s")


def benchmark(port, requests, pipeline, tests=TESTS):
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", tests, "-n", str(requests), "-c", "50",
         "-P", str(pipeline), "--csv"],
        check=True, capture_output=True, text=True,
    ).stdout
    rows = {}
    for row in csv.DictReader(io.StringIO(out)):
        name = row["test"].split()[0].lower()
        rows[name] = (float(row["rps"]), float(row["p50_latency_ms"]), float(row["p99_latency_ms"]))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=500_000)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "raftcache"))
    args = ap.parse_args()
    for tool in ("redis-server", "redis-benchmark"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: install Debian's redis-server and redis-tools")
    rc_port, redis_port = free_port(), free_port()
    procs = [
        subprocess.Popen([args.bin, "--port", str(rc_port), "--raft-port", "0", "--admin-port", "0", "--metrics-port", "0",
                          "--loglevel", "warning"]),
        subprocess.Popen(["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no",
                          "--bind", "127.0.0.1", "--loglevel", "warning"]),
    ]
    try:
        wait_ready(rc_port, procs[0])
        wait_ready(redis_port, procs[1])
        results = {}
        for pipeline in (1, 16):
            results[("raftcache", pipeline)] = benchmark(rc_port, args.requests, pipeline)
            results[("redis", pipeline)] = benchmark(redis_port, args.requests, pipeline)
        print(f"\nredis-benchmark -t {TESTS} -n {args.requests} -c 50, single node, "
              f"{os.cpu_count()} CPUs, one machine\n")
        print(f"{'test':<8}{'-P':>4}{'raftcache rps':>16}{'redis rps':>14}{'ratio':>8}"
              f"{'rc p50 ms':>11}{'redis p50':>11}")
        for pipeline in (1, 16):
            rc, redis = results[("raftcache", pipeline)], results[("redis", pipeline)]
            for test in TESTS.split(","):
                a, b = rc[test], redis[test]
                print(f"{test:<8}{pipeline:>4}{a[0]:>16,.0f}{b[0]:>14,.0f}{a[0] / b[0]:>8.2f}"
                      f"{a[1]:>11.3f}{b[1]:>11.3f}")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()

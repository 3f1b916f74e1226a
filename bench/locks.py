#!/usr/bin/env python3
"""Lock acquire+release pairs per second: raftcache's LOCK.ACQUIRE/LOCK.RELEASE
on a three-node cluster against the usual Redis lock on a real redis-server,
same machine, same run.

Starts a three-node raftcache cluster (memory-only, release build, --threads 1
per node, as bench/cluster.py does) and one redis-server, then runs 50
clients, each with one request in flight, doing acquire-then-release pairs
for --seconds per measurement, in two workloads:

  distinct   client i locks its own name (no contention): the cost of a lock
             round trip when nobody waits.
  contended  all 50 clients compete for one name.

and with two patterns:

  LOCK       `LOCK.ACQUIRE name owner-i 30000` (contended: `… WAIT 0`, so the
             client queues in the cluster and is granted the lock when the
             holder releases it), then `LOCK.RELEASE name owner-i`.
  SETNX      the idiom every Redis user has: `SET name <token> NX PX 30000`
             (on nil, contended clients send it again at once: a spin, the
             fastest a polling client can go; redis-py's Lock sleeps 0.1 s
             instead), then redis-py's release script (Lock.LUA_RELEASE_SCRIPT,
             loaded with SCRIPT LOAD) by EVALSHA: GET, compare, DEL.

  DELIFEQ    SETNX's acquire, released with `DELIFEQ name <token>` (Valkey 9's
             compare-and-delete command; raftcache only: redis-server 7.0
             has no DELIFEQ).

Targets: LOCK through the cluster's leader and through a follower (which
forwards to the leader), SETNX and DELIFEQ through the leader, and SETNX on
redis-server.
The ratio column is raftcache / redis-server SETNX in the same workload.
`tries/pair` is acquire attempts per successful pair (spinning shows up
there). Latency is per pair, from the first acquire attempt to the release's
reply. Every release must answer 1 (a 0 would mean the lock was lost to
someone else): the run stops with an error otherwise.

    bench/locks.py [--seconds 5] [--rounds 3] [--bin target/release/raftcache]
                   [--threads 1] [--warmup 1] [--driver-procs 2]
                   [--workloads distinct,contended]

The driver is Python (selectors, raw RESP, --driver-procs processes) on the
same two cores as the servers, so redis-server's figures are partly bound by
the driver, not the server: ratios in the distinct workload flatter
raftcache somewhat. Contended SETNX on either server is as unfair as Redis
locks are: the spinning clients that happen to be fast win again and again
(see the p99), while LOCK's waiters are served in order.

With --rounds N every measurement is repeated N times (the targets back to
back in each round, in a rotating order); the table shows medians and the
range of the per-round ratios.
"""
import argparse
import multiprocessing
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import uuid
from statistics import median

sys.path.insert(0, os.path.dirname(__file__))
from scripting import RespError, command, encode, parse, start_cluster  # noqa: E402
from single_node import free_port, wait_ready  # noqa: E402

try:
    from redis.lock import Lock as _RedisPyLock

    RELEASE_SCRIPT = _RedisPyLock.LUA_RELEASE_SCRIPT
except ImportError:  # redis-py not installed: the same text, as in redis-py 8.1.0
    RELEASE_SCRIPT = """
        local token = redis.call('get', KEYS[1])
        if not token or token ~= ARGV[1] then
            return 0
        end
        redis.call('del', KEYS[1])
        return 1
    """

CLIENTS = 50
TTL_MS = 30000
WORKLOADS = "distinct,contended"


class Pattern:
    """The two commands of one client's pair, for one pattern."""

    def __init__(self, pattern, name, owner, sha, wait):
        self.pattern, self.name, self.owner, self.sha, self.wait = pattern, name, owner, sha, wait

    def acquire(self):
        if self.pattern == "LOCK":
            extra = ("WAIT", 0) if self.wait else ()
            return encode("LOCK.ACQUIRE", self.name, self.owner, TTL_MS, *extra)
        return encode("SET", self.name, self.owner, "NX", "PX", TTL_MS)

    def release(self):
        if self.pattern == "LOCK":
            return encode("LOCK.RELEASE", self.name, self.owner)
        if self.pattern == "DELIFEQ":
            return encode("DELIFEQ", self.name, self.owner)
        return encode("EVALSHA", self.sha, 1, self.name, self.owner)

    def granted(self, reply):
        if isinstance(reply, RespError):
            raise reply
        return reply is not None


def _driver_proc(port, pattern, sha, names, owners, wait, seconds, barrier, out):
    """One process: len(names) connections, each doing pairs until the end
    time, then finishing the pair it is in (a holder releases, a queued waiter
    waits for its grant and releases), so the next measurement starts clean."""
    try:
        sel = selectors.DefaultSelector()
        conns = []
        for name, owner in zip(names, owners):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            st = {"p": Pattern(pattern, name, owner, sha, wait), "buf": bytearray(),
                  "phase": "acquire", "start": 0.0}
            conns.append((s, st))
        barrier.wait(timeout=60)
        t0 = time.perf_counter()
        end = t0 + seconds
        pairs = tries = 0
        latencies = []
        for s, st in conns:
            st["start"] = time.perf_counter()
            s.sendall(st["p"].acquire())
            tries += 1
            sel.register(s, selectors.EVENT_READ, st)
        active = len(conns)
        while active:
            events = sel.select(timeout=60)
            if not events:
                raise TimeoutError(f"no reply within 60 s ({pairs} pairs done)")
            for key, _ in events:
                s, st = key.fileobj, key.data
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed a connection")
                st["buf"] += chunk
                got = parse(st["buf"])
                if got is None:
                    continue
                reply, pos = got
                if pos != len(st["buf"]):
                    raise ValueError(f"unexpected extra bytes {bytes(st['buf'][pos:])!r}")
                st["buf"] = bytearray()
                now = time.perf_counter()
                if st["phase"] == "acquire":
                    if st["p"].granted(reply):
                        st["phase"] = "release"
                        s.sendall(st["p"].release())
                    elif now < end:
                        tries += 1
                        s.sendall(st["p"].acquire())
                    else:
                        sel.unregister(s)
                        active -= 1
                else:
                    if reply != 1:
                        raise RespError(f"release answered {reply!r}: the lock was lost")
                    if now <= end:
                        pairs += 1
                        latencies.append((now - st["start"]) * 1000)
                    if now < end:
                        st["phase"] = "acquire"
                        st["start"] = now
                        tries += 1
                        s.sendall(st["p"].acquire())
                    else:
                        sel.unregister(s)
                        active -= 1
        for s, _ in conns:
            s.close()
        out.put(("ok", pairs, tries, t0, end, latencies))
    except BaseException as e:  # reported to the parent
        out.put(("error", f"{type(e).__name__}: {e}", 0, 0, 0, []))


def drive(port, pattern, sha, workload, seconds, procs, run_id):
    """50 connections over `procs` processes: (pairs/s, p50 ms, p99 ms, tries/pair)."""
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(procs), ctx.Queue()
    contended = workload == "contended"
    names = [f"bench:{run_id}" if contended else f"bench:{run_id}:{i}" for i in range(CLIENTS)]
    owners = [f"owner-{i}-{uuid.uuid4().hex[:12]}" for i in range(CLIENTS)]
    workers = []
    for k in range(procs):
        mine = list(range(k, CLIENTS, procs))
        workers.append(ctx.Process(target=_driver_proc, args=(
            port, pattern, sha, [names[i] for i in mine], [owners[i] for i in mine],
            contended and pattern == "LOCK", seconds, barrier, out)))
    for w in workers:
        w.start()
    results = [out.get(timeout=seconds + 300) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    errors = [r[1] for r in results if r[0] != "ok"]
    if errors:
        sys.exit(f"driver ({pattern} {workload}) against port {port} failed: {errors[0]}")
    pairs = sum(r[1] for r in results)
    tries = sum(r[2] for r in results)
    elapsed = max(r[4] for r in results) - min(r[3] for r in results)
    lat = sorted(x for r in results for x in r[5])
    if pattern == "LOCK":  # every lock of the run is free again
        held = [n for n in sorted(set(names)) if command(port, "LOCK.INFO", n) is not None]
        if held:
            sys.exit(f"locks left held after the run: {held[:5]}")
    if not lat:
        sys.exit(f"no pair completed ({pattern} {workload} on port {port})")
    return (pairs / elapsed, lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            tries / max(pairs, 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="per measurement (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="default: %(default)s")
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "target", "release",
                                                  "raftcache"))
    ap.add_argument("--threads", default="1", help="worker threads per node (default: %(default)s)")
    ap.add_argument("--warmup", type=float, default=1.0,
                    help="seconds of each measurement run once first, not counted (default: %(default)s)")
    ap.add_argument("--driver-procs", type=int, default=2,
                    help="client processes sharing the 50 connections (default: %(default)s)")
    ap.add_argument("--workloads", default=WORKLOADS, help="default: %(default)s")
    args = ap.parse_args()
    workloads = args.workloads.split(",")
    if set(workloads) - set(WORKLOADS.split(",")):
        sys.exit(f"unknown workloads in {workloads}")

    procs = []
    try:
        redis_port = free_port()
        procs.append(subprocess.Popen(["redis-server", "--port", str(redis_port), "--save", "",
                                       "--appendonly", "no", "--bind", "127.0.0.1",
                                       "--loglevel", "warning"], stdout=sys.stderr))
        wait_ready(redis_port, procs[-1])
        leader, follower = start_cluster(args, procs)
        shas = {port: command(port, "SCRIPT", "LOAD", RELEASE_SCRIPT)
                for port in (leader, redis_port)}
        targets = [
            ("LOCK", "leader", leader),
            ("LOCK", "follower", follower),
            ("SETNX", "leader", leader),
            ("DELIFEQ", "leader", leader),
            ("SETNX", "redis", redis_port),
        ]
        run_id = [0]

        def measure(pattern, port, workload, seconds):
            run_id[0] += 1
            return drive(port, pattern, shas.get(port, shas[leader]), workload, seconds,
                         args.driver_procs, run_id[0])

        if args.warmup:
            for workload in workloads:
                for pattern, _, port in targets:
                    measure(pattern, port, workload, args.warmup)
        runs = {}
        for rnd in range(args.rounds):
            for workload in workloads:
                order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
                for pattern, via, port in order:
                    runs.setdefault((workload, pattern, via), []).append(
                        measure(pattern, port, workload, args.seconds))
        # No SET NX key is left behind (each LOCK run checked its names).
        left = command(leader, "DBSIZE"), command(redis_port, "DBSIZE")
        if left != (0, 0):
            sys.exit(f"keys left behind (raftcache, redis): {left}")

        print(f"\n{CLIENTS} clients, one request in flight each, {args.driver_procs} client "
              f"processes; {args.seconds:g} s per measurement; three raftcache nodes (memory-only, "
              f"--threads {args.threads}) and one redis-server on one {os.cpu_count()}-CPU machine; "
              f"median of {args.rounds} round(s)\n")
        print(f"{'workload':<11}{'pattern':<8}{'via':>9}{'pairs/s':>10}{'redis':>9}{'ratio':>7}"
              f"{'p50 ms':>9}{'p99 ms':>9}{'redis p50':>10}{'redis p99':>10}{'tries/pair':>11}"
              f"{'ratio range':>13}")
        for workload in workloads:
            base = runs[(workload, "SETNX", "redis")]
            b = [median(x[i] for x in base) for i in range(4)]
            for pattern, via, _ in targets:
                ours = runs[(workload, pattern, via)]
                r = [median(x[i] for x in ours) for i in range(4)]
                ratios = [o[0] / x[0] for o, x in zip(ours, base)]
                print(f"{workload:<11}{pattern:<8}{via:>9}{r[0]:>10,.0f}{b[0]:>9,.0f}"
                      f"{median(ratios):>7.2f}{r[1]:>9.2f}{r[2]:>9.2f}{b[1]:>10.2f}{b[2]:>10.2f}"
                      f"{r[3]:>11.1f}{min(ratios):>7.2f}-{max(ratios):.2f}")
        print("\nchecked: every release answered 1; no lock held and no key left on either server")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Lua scripts and MULTI/EXEC transactions: a three-node cluster against a single
real redis-server, same machine, same run.

Starts a three-node raftcache cluster (memory-only, release build, --threads 1
per node as bench/cluster.py does) and one redis-server, then measures with 50
concurrent clients, each with one request in flight:

  evalsha  `EVALSHA <sha> 1 lock:bench <token> 60000 1` with redis-benchmark:
           redis-py's Lock *extend* script (Lock.LUA_EXTEND_SCRIPT, loaded with
           SCRIPT LOAD) on a lock that holds the token, replacing its TTL with
           60 s: GET, compare, PTTL, PEXPIRE. Every call does the same work and
           writes (a replicated PEXPIRE), and the key stays. The *release*
           script was not chosen: its first call deletes the key, and every
           later call would measure a read-only miss (GET, return 0), which
           replicates nothing and says little about a lock's real cost.
  multi    `MULTI; INCR bench:txn; EXPIRE bench:txn 60; EXEC` as one write per
           transaction (what redis-py's transaction pipeline sends), reading the
           four replies (+OK, +QUEUED, +QUEUED, the EXEC array). redis-benchmark
           sends one command per request, so this uses the small multi-process
           driver below (selectors, raw RESP, --driver-procs processes sharing
           the 50 connections).
  incr     `INCR bench:plain` through the same driver: the baseline that shows
           what the driver itself can carry, so a multi ratio can be read
           against a plain command sent the same way. On the 2-CPU machine the
           driver carries about 85k INCR/s against redis-server where
           redis-benchmark carries about 105k: redis's multi figure is partly
           driver-bound, so the multi ratio flatters raftcache somewhat (compare
           the incr ratio here with bench/cluster.py's).

through the cluster's leader, through a follower (which forwards to the
leader) and against redis-server, printing requests (or transactions) per
second, p50/p99 latency and the ratio raftcache/redis.

    bench/scripting.py [--requests 200000] [--bin target/release/raftcache]
                       [--workloads evalsha,multi,incr] [--rounds 3]
                       [--threads 1] [--warmup 20000] [--driver-procs 2]
                       [--redis-only]

--redis-only measures redis-server alone (no cluster, no ratios): it checks the
script itself before raftcache implements EVALSHA and MULTI/EXEC.

With --rounds N every measurement is repeated N times (the three targets back to
back in each round, in a rotating order) and the table shows medians and the
range of the per-round ratios. After the runs every target is checked: the lock
key still holds the token with a TTL of at most 60 s, and each counter equals
the number of transactions / INCRs sent to it (nothing lost, nothing applied
twice).
"""
import argparse
import csv
import io
import multiprocessing
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from statistics import median

sys.path.insert(0, os.path.dirname(__file__))
from cluster import info  # noqa: E402
from single_node import free_port, wait_ready  # noqa: E402

try:
    from redis.lock import Lock as _RedisPyLock

    LOCK_EXTEND_SCRIPT = _RedisPyLock.LUA_EXTEND_SCRIPT
except ImportError:  # redis-py not installed: the same text, as in redis-py 8.1.0
    LOCK_EXTEND_SCRIPT = """
        local token = redis.call('get', KEYS[1])
        if not token or token ~= ARGV[1] then
            return 0
        end
        local expiration = redis.call('pttl', KEYS[1])
        if not expiration then
            expiration = 0
        end
        if expiration < 0 then
            return 0
        end

        local newttl = ARGV[2]
        if ARGV[3] == "0" then
            newttl = ARGV[2] + expiration
        end
        redis.call('pexpire', KEYS[1], newttl)
        return 1
    """

WORKLOADS = "evalsha,multi,incr"
CLIENTS = 50
LOCK_KEY, TOKEN = "lock:bench", "bench-token-6f1e2d"
TXN_KEY, PLAIN_KEY = "bench:txn", "bench:plain"


# --- RESP over a plain socket (setup, checks, and the driver) ----------------------------


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RespError(Exception):
    pass


def parse(buf, pos=0):
    """One reply from buf at pos: (value, next pos), or None if incomplete.
    Errors are returned as RespError values, not raised."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind, line = buf[pos:pos + 1], bytes(buf[pos + 1:end])
    pos = end + 2
    if kind == b"+":
        return line.decode(), pos
    if kind == b"-":
        return RespError(line.decode()), pos
    if kind == b":":
        return int(line), pos
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            return None
        return bytes(buf[pos:pos + n]).decode(), pos + n + 2
    if kind in (b"*", b"%", b"~"):
        n = int(line)
        if n < 0:
            return None, pos
        items = []
        for _ in range(n * (2 if kind == b"%" else 1)):
            got = parse(buf, pos)
            if got is None:
                return None
            value, pos = got
            items.append(value)
        return items, pos
    if kind == b"_":
        return None, pos
    raise ValueError(f"unexpected RESP type {kind!r} in {bytes(buf[:200])!r}")


def command(port, *args):
    """One command on a fresh connection; its reply (RespError raised)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(encode(*args))
        buf = bytearray()
        while True:
            got = parse(buf)
            if got is not None:
                if isinstance(got[0], RespError):
                    raise got[0]
                return got[0]
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"port {port} closed the connection")
            buf += chunk


# --- the workloads ------------------------------------------------------------------------


def redis_benchmark(port, requests, argv):
    """redis-benchmark -c 50 with an arbitrary command: (rps, p50 ms, p99 ms)."""
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-n", str(requests), "-c", str(CLIENTS), "--csv",
         *map(str, argv)],
        check=True, capture_output=True, text=True,
    ).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    if len(rows) != 1:
        sys.exit(f"unexpected redis-benchmark output:\n{out}")
    row = rows[0]
    return float(row["rps"]), float(row["p50_latency_ms"]), float(row["p99_latency_ms"])


def _driver_proc(port, conns, ops, payload, replies_per_op, barrier, out):
    """ops operations over `conns` connections, one in flight on each."""
    try:
        sel = selectors.DefaultSelector()
        socks = []
        for _ in range(conns):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            socks.append(s)
        latencies = []
        state = {}
        barrier.wait(timeout=60)
        t0 = time.perf_counter()
        issued = 0
        for s in socks:
            if issued == ops:
                break
            s.sendall(payload)
            issued += 1
            state[s] = [bytearray(), time.perf_counter()]
            sel.register(s, selectors.EVENT_READ)
        done = 0
        while done < ops:
            events = sel.select(timeout=30)
            if not events:
                raise TimeoutError(f"no reply within 30 s ({done} of {ops} done)")
            for key, _ in events:
                s = key.fileobj
                st = state[s]
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed a connection")
                st[0] += chunk
                pos, replies = 0, []
                for _ in range(replies_per_op):
                    got = parse(st[0], pos)
                    if got is None:
                        break
                    value, pos = got
                    replies.append(value)
                if len(replies) < replies_per_op:
                    continue
                if pos != len(st[0]):
                    raise ValueError(f"unexpected extra bytes: {bytes(st[0][pos:])!r}")
                last = replies[-1]
                bad = [r for r in replies if isinstance(r, RespError)]
                if bad or (replies_per_op > 1 and not (isinstance(last, list) and len(last) == 2)):
                    raise RespError(f"replies {replies!r}")
                now = time.perf_counter()
                latencies.append((now - st[1]) * 1000)
                done += 1
                st[0] = bytearray()
                if issued < ops:
                    s.sendall(payload)
                    issued += 1
                    st[1] = time.perf_counter()
                else:
                    sel.unregister(s)
        t1 = time.perf_counter()
        for s in socks:
            s.close()
        out.put(("ok", done, t0, t1, latencies))
    except BaseException as e:  # reported to the parent
        out.put(("error", f"{type(e).__name__}: {e}", 0, 0, []))


def drive(port, ops, payload, replies_per_op, procs):
    """The driver: `procs` processes sharing CLIENTS connections; (rps, p50, p99)."""
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(procs), ctx.Queue()
    conns = [CLIENTS // procs + (1 if i < CLIENTS % procs else 0) for i in range(procs)]
    share = [ops // procs + (1 if i < ops % procs else 0) for i in range(procs)]
    workers = [ctx.Process(target=_driver_proc,
                           args=(port, conns[i], share[i], payload, replies_per_op, barrier, out))
               for i in range(procs)]
    for w in workers:
        w.start()
    results = [out.get(timeout=600) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    errors = [r[1] for r in results if r[0] != "ok"]
    if errors:
        sys.exit(f"driver against port {port} failed: {errors[0]}")
    total = sum(r[1] for r in results)
    elapsed = max(r[3] for r in results) - min(r[2] for r in results)
    lat = sorted(x for r in results for x in r[4])
    return total / elapsed, lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]


MULTI_PAYLOAD = (encode("MULTI") + encode("INCR", TXN_KEY) + encode("EXPIRE", TXN_KEY, 60)
                 + encode("EXEC"))
INCR_PAYLOAD = encode("INCR", PLAIN_KEY)


def setup(port, workloads):
    """Zero the counters; for evalsha, SCRIPT LOAD the extend script and take
    the lock. Returns the script's SHA1 (None without evalsha)."""
    command(port, "DEL", TXN_KEY, PLAIN_KEY, LOCK_KEY)
    if "evalsha" not in workloads:
        return None
    try:
        sha = command(port, "SCRIPT", "LOAD", LOCK_EXTEND_SCRIPT)
    except RespError as e:
        sys.exit(f"SCRIPT LOAD on port {port} failed ({e}): this server has no Lua scripting yet")
    command(port, "SET", LOCK_KEY, TOKEN, "PX", 600_000)
    reply = command(port, "EVALSHA", sha, 1, LOCK_KEY, TOKEN, 60_000, 1)
    if reply != 1:
        sys.exit(f"the extend script returned {reply!r} on port {port}, expected 1")
    return sha


def run(workload, port, sha, requests, procs):
    if workload == "evalsha":
        return redis_benchmark(port, requests, ["EVALSHA", sha, 1, LOCK_KEY, TOKEN, 60_000, 1])
    if workload == "multi":
        return drive(port, requests, MULTI_PAYLOAD, 4, procs)
    if workload == "incr":
        return drive(port, requests, INCR_PAYLOAD, 1, procs)
    raise ValueError(workload)


def check(name, port, sent):
    """The lock still holds the token with a TTL; counters equal what was sent."""
    problems, facts = [], []
    if "evalsha" in sent:
        pttl = command(port, "PTTL", LOCK_KEY)
        if command(port, "GET", LOCK_KEY) != TOKEN:
            problems.append(f"{LOCK_KEY} no longer holds the token")
        elif not 0 < pttl <= 60_000:
            problems.append(f"PTTL {LOCK_KEY} is {pttl}, expected 0 < PTTL <= 60000")
        facts.append(f"{LOCK_KEY} holds the token (PTTL {pttl})")
    for workload, key in (("multi", TXN_KEY), ("incr", PLAIN_KEY)):
        if workload in sent:
            value = int(command(port, "GET", key) or 0)
            if value != sent[workload]:
                problems.append(f"{key} is {value}, {sent[workload]} sent")
            facts.append(f"{key}={value} as sent")
    if problems:
        sys.exit(f"{name} (port {port}): " + "; ".join(problems))
    return f"{name}: " + ", ".join(facts)


# --- processes ------------------------------------------------------------------------------


def start_cluster(args, procs):
    resp = [free_port() for _ in range(3)]
    raft = [free_port() for _ in range(3)]
    admin = [free_port() for _ in range(3)]
    peers = ",".join(f"{i + 1}=127.0.0.1:{raft[i]}" for i in range(3))
    for i in range(3):
        procs.append(subprocess.Popen([
            args.bin, "--id", str(i + 1), "--peers", peers, "--bind", "127.0.0.1",
            "--port", str(resp[i]), "--raft-port", str(raft[i]), "--admin-port", str(admin[i]), "--metrics-port", "0",
            "--threads", args.threads, "--loglevel", "warning"], stdout=sys.stderr))
    for i in range(3):
        wait_ready(resp[i], procs[-3 + i], timeout=60)
    args.resp_ports = resp
    deadline = time.time() + 30
    while time.time() < deadline:
        roles = [info(p, "raft_role") for p in resp]
        if roles.count("leader") == 1:
            leader = roles.index("leader")
            return resp[leader], resp[(leader + 1) % 3]
        time.sleep(0.2)
    sys.exit("no leader elected")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200_000,
                    help="calls (or transactions) per workload and target (default: %(default)s)")
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "raftcache"))
    ap.add_argument("--workloads", default=WORKLOADS, help="default: %(default)s")
    ap.add_argument("--threads", default="1", help="worker threads per node (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="repeat every measurement this many times and report medians (default: %(default)s)")
    ap.add_argument("--warmup", type=int, default=20_000,
                    help="calls per workload sent to every target before measuring (default: %(default)s)")
    ap.add_argument("--driver-procs", type=int, default=2,
                    help="processes of the multi/incr driver, sharing the 50 connections (default: %(default)s)")
    ap.add_argument("--redis-only", action="store_true",
                    help="measure redis-server alone (no cluster, no ratios)")
    args = ap.parse_args()
    workloads = args.workloads.split(",")
    unknown = set(workloads) - set(WORKLOADS.split(","))
    if unknown:
        sys.exit(f"unknown workloads: {sorted(unknown)}")

    procs = []
    try:
        redis_port = free_port()
        procs.append(subprocess.Popen(["redis-server", "--port", str(redis_port), "--save", "",
                                       "--appendonly", "no", "--bind", "127.0.0.1",
                                       "--loglevel", "warning"], stdout=sys.stderr))
        wait_ready(redis_port, procs[-1])
        targets = [("redis", redis_port)]
        if not args.redis_only:
            leader, follower = start_cluster(args, procs)
            targets = [("leader", leader), ("follower", follower), ("redis", redis_port)]
        # A follower forwards to the leader: one setup through the leader is
        # the cluster's; the follower only needs the SHA1.
        shas = {}
        for name, port in targets:
            shas[name] = shas.get("leader") if name == "follower" else setup(port, workloads)
        sent = {name: {} for name, _ in targets}

        def measure(name, port, workload, n):
            result = run(workload, port, shas[name], n, args.driver_procs)
            # The cluster's counters are shared by the leader and the follower.
            key = "cluster" if name in ("leader", "follower") else name
            sent.setdefault(key, {})
            sent[key][workload] = sent[key].get(workload, 0) + n
            return result

        if args.warmup:
            for workload in workloads:
                for name, port in targets:
                    measure(name, port, workload, args.warmup)
        runs = {}
        for rnd in range(args.rounds):
            for workload in workloads:
                order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
                for name, port in order:
                    runs.setdefault((name, workload), []).append(measure(name, port, workload, args.requests))
        checks = [check("redis-server", redis_port, sent["redis"])]
        if not args.redis_only:
            checks.append(check("raftcache (through the follower)", dict(targets)["follower"],
                                sent["cluster"]))

        print(f"\n{CLIENTS} clients, one request in flight each; evalsha with redis-benchmark, "
              f"multi and incr with the driver ({args.driver_procs} processes); "
              f"-n {args.requests} per run; {os.cpu_count()} CPUs; median of {args.rounds} round(s)")
        if args.redis_only:
            print("redis-server only\n")
            print(f"{'workload':<10}{'rps':>12}{'p50 ms':>9}{'p99 ms':>9}{'rps range':>22}")
            for workload in workloads:
                rs = runs[("redis", workload)]
                r = [median(x[i] for x in rs) for i in range(3)]
                print(f"{workload:<10}{r[0]:>12,.0f}{r[1]:>9.3f}{r[2]:>9.3f}"
                      f"{min(x[0] for x in rs):>11,.0f}-{max(x[0] for x in rs):,.0f}")
        else:
            print(f"three raftcache nodes (memory-only, --threads {args.threads}) and one redis-server\n")
            print(f"{'workload':<10}{'via':>10}{'rps':>12}{'redis rps':>12}{'ratio':>7}"
                  f"{'p50 ms':>9}{'p99 ms':>9}{'redis p50':>11}{'redis p99':>11}{'ratio range':>14}")
            for workload in workloads:
                redis = runs[("redis", workload)]
                b = [median(x[i] for x in redis) for i in range(3)]
                for via in ("leader", "follower"):
                    ours = runs[(via, workload)]
                    r = [median(o[i] for o in ours) for i in range(3)]
                    ratios = [o[0] / x[0] for o, x in zip(ours, redis)]
                    print(f"{workload:<10}{via:>10}{r[0]:>12,.0f}{b[0]:>12,.0f}{median(ratios):>7.2f}"
                          f"{r[1]:>9.3f}{r[2]:>9.3f}{b[1]:>11.3f}{b[2]:>11.3f}"
                          f"{min(ratios):>8.2f}-{max(ratios):.2f}")
        print("\nchecked: " + "\n         ".join(checks), flush=True)
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

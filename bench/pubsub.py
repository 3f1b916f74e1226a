#!/usr/bin/env python3
"""Pub/sub on a three-node cluster against a single real redis-server, same
machine, same run.

Starts a three-node raftcache cluster (memory-only, release build, --threads 1
by default) and one redis-server, then measures:

1. PUBLISH throughput: `redis-benchmark -c 50 -n N [-P p] PUBLISH bench:ch msg`
   through the leader, through a follower (which forwards to the leader), and
   against redis-server. A subscriber to the channel is connected to every
   raftcache node and to redis-server and drains its socket meanwhile, so the
   messages are also delivered (on every node: a message goes through the log
   and each node delivers it to its own subscribers).

2. Publish-to-receive latency: one publisher sends `--latency-messages`
   PUBLISHes at `--rate` per second, each payload carrying the send time
   (CLOCK_MONOTONIC ns); a subscriber on ANOTHER node (raftcache) or on the
   same server (redis) records the receive time. Paths: leader -> follower and
   follower -> the other follower. p50/p99/max in ms.

    bench/pubsub.py [--requests 200000] [--pipelines 1,16] [--rounds 3]
                    [--latency-messages 3000] [--rate 500] [--threads 1]
                    [--bin target/release/raftcache] [--warmup 20000]

Each round runs redis and both cluster paths back to back (rotating order);
the tables show the median over rounds and, with several rounds, the range of
the per-round ratios raftcache/redis (throughput: higher is better; latency:
lower is better).
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from statistics import median

sys.path.insert(0, os.path.dirname(__file__))
from cluster import info  # noqa: E402
from single_node import free_port, wait_ready  # noqa: E402

CHANNEL = "bench:ch"


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Drain(threading.Thread):
    """A subscriber that reads and discards everything (counts bytes)."""

    def __init__(self, port, channel=CHANNEL):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(resp("SUBSCRIBE", channel))
        self.bytes = 0
        self.stop = False

    def run(self):
        try:
            while not self.stop:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    return
                self.bytes += len(chunk)
        except OSError:
            return

    def close(self):
        self.stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def publish_benchmark(port, requests, pipeline):
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-c", "50", "-n", str(requests), "-P", str(pipeline),
         "--csv", "PUBLISH", CHANNEL, "msg"],
        check=True, capture_output=True, text=True).stdout
    row = out.strip().splitlines()[-1].replace('"', "").split(",")
    # test, rps, avg, min, p50, p95, p99, max
    return float(row[1]), float(row[4]), float(row[6])


class Receiver(threading.Thread):
    """Subscribes on `port` and records (send_ns, receive_ns) per message."""

    def __init__(self, port, channel, expect):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.channel = channel
        self.expect = expect
        self.samples = []
        self.ready = threading.Event()
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _bulk(self):
        n = int(self._line()[1:])
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def run(self):
        self.sock.sendall(resp("SUBSCRIBE", self.channel))
        try:
            while len(self.samples) < self.expect:
                header = self._line()  # *3
                kind = self._bulk()
                if kind == b"subscribe":
                    self._bulk()
                    self._line()
                    self.ready.set()
                    continue
                self._bulk()  # channel
                payload = self._bulk()
                now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
                sent = int(payload.split(b":", 1)[0])
                self.samples.append((now - sent) / 1e6)
                assert header == b"*3", header
        except (EOFError, OSError):
            pass
        finally:
            self.sock.close()


def latency(pub_port, sub_port, messages, rate, channel):
    """Publishes `messages` at `rate`/s through pub_port; returns the
    publish-to-receive latencies (ms) seen by a subscriber on sub_port."""
    rx = Receiver(sub_port, channel, messages)
    rx.start()
    if not rx.ready.wait(10):
        sys.exit(f"subscriber on {sub_port} not confirmed")
    pub = socket.create_connection(("127.0.0.1", pub_port))
    pub.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.monotonic()
    for i in range(messages):
        due = t0 + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        pub.sendall(resp("PUBLISH", channel, f"{sent}:{i}:" + "x" * 32))
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = pub.recv(256)
            if not chunk:
                sys.exit("publisher connection closed")
            reply += chunk
        if not reply.startswith(b":"):
            sys.exit(f"PUBLISH answered {reply!r}")
    pub.close()
    rx.join(30)
    if len(rx.samples) != messages:
        print(f"  warning: subscriber on {sub_port} got {len(rx.samples)} of {messages} messages",
              file=sys.stderr)
    return sorted(rx.samples)


def pct(sorted_ms, p):
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(round(p / 100 * (len(sorted_ms) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--pipelines", default="1,16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=20_000,
                    help="PUBLISHes per target and -P before measuring (default: %(default)s)")
    ap.add_argument("--latency-messages", type=int, default=3000)
    ap.add_argument("--rate", type=float, default=500.0, help="latency test: messages/second")
    ap.add_argument("--threads", default="1", help="worker threads per node (default: %(default)s)")
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "target",
                                                  "release", "raftcache"))
    args = ap.parse_args()
    pipelines = [int(p) for p in args.pipelines.split(",")]

    resp_ports = [free_port() for _ in range(3)]
    raft = [free_port() for _ in range(3)]
    admin = [free_port() for _ in range(3)]
    peers = ",".join(f"{i + 1}=127.0.0.1:{raft[i]}" for i in range(3))
    procs = []
    drains = []
    for i in range(3):
        procs.append(subprocess.Popen([
            args.bin, "--id", str(i + 1), "--peers", peers, "--bind", "127.0.0.1",
            "--port", str(resp_ports[i]), "--raft-port", str(raft[i]),
            "--admin-port", str(admin[i]), "--metrics-port", "0", "--threads", args.threads,
            "--loglevel", "warning"], stdout=sys.stderr, start_new_session=True))
    redis_port = free_port()
    procs.append(subprocess.Popen(["redis-server", "--port", str(redis_port), "--save", "",
                                   "--appendonly", "no", "--bind", "127.0.0.1",
                                   "--loglevel", "warning"], stdout=sys.stderr,
                                  start_new_session=True))
    try:
        for i in range(3):
            wait_ready(resp_ports[i], procs[i], timeout=60)
        wait_ready(redis_port, procs[3])
        deadline = time.time() + 30
        leader = None
        while time.time() < deadline and leader is None:
            roles = [info(p, "raft_role") for p in resp_ports]
            if roles.count("leader") == 1:
                leader = roles.index("leader")
            else:
                time.sleep(0.2)
        if leader is None:
            sys.exit("no leader elected")
        f1, f2 = (leader + 1) % 3, (leader + 2) % 3
        targets = [("leader", resp_ports[leader]), ("follower", resp_ports[f1]),
                   ("redis", redis_port)]
        for port in resp_ports + [redis_port]:
            d = Drain(port)
            d.start()
            drains.append(d)

        if args.warmup:
            for pipeline in pipelines:
                for _, port in targets:
                    publish_benchmark(port, args.warmup, pipeline)
        tput = {}
        lat = {}
        paths = [("leader->follower", resp_ports[leader], resp_ports[f1]),
                 ("follower->follower", resp_ports[f1], resp_ports[f2]),
                 ("redis", redis_port, redis_port)]
        for rnd in range(args.rounds):
            for pipeline in pipelines:
                order = targets[rnd % 3:] + targets[:rnd % 3]
                for name, port in order:
                    tput.setdefault((name, pipeline), []).append(
                        publish_benchmark(port, args.requests, pipeline))
            order = paths[rnd % 3:] + paths[:rnd % 3]
            for name, pub, sub in order:
                ms = latency(pub, sub, args.latency_messages, args.rate,
                             f"bench:lat:{rnd}:{name}")
                lat.setdefault(name, []).append((pct(ms, 50), pct(ms, 99), ms[-1] if ms else 0))

        print(f"\nPUBLISH throughput: redis-benchmark -c 50 -n {args.requests} PUBLISH {CHANNEL} "
              f"msg; three raftcache nodes (memory-only, --threads {args.threads}) and one "
              f"redis-server on one {os.cpu_count()}-CPU machine, one draining subscriber per "
              f"server; median of {args.rounds} round(s)\n")
        head = (f"{'-P':>4}{'via':>10}{'rps':>12}{'redis rps':>12}{'ratio':>7}{'p50 ms':>9}"
                f"{'p99 ms':>9}{'redis p50':>11}{'redis p99':>11}")
        print(head + (f"{'ratio range':>14}" if args.rounds > 1 else ""))
        for pipeline in pipelines:
            base = tput[("redis", pipeline)]
            b = [median(r[i] for r in base) for i in range(3)]
            for via in ("leader", "follower"):
                ours = tput[(via, pipeline)]
                r = [median(o[i] for o in ours) for i in range(3)]
                ratios = [o[0] / x[0] for o, x in zip(ours, base)]
                line = (f"{pipeline:>4}{via:>10}{r[0]:>12,.0f}{b[0]:>12,.0f}{median(ratios):>7.2f}"
                        f"{r[1]:>9.3f}{r[2]:>9.3f}{b[1]:>11.3f}{b[2]:>11.3f}")
                if args.rounds > 1:
                    line += f"{min(ratios):>8.2f}-{max(ratios):.2f}"
                print(line)

        print(f"\nPublish-to-receive latency: {args.latency_messages} messages at {args.rate:g}/s, "
              f"payload = send time; subscriber on another node (redis: same server); "
              f"median of {args.rounds} round(s)\n")
        print(f"{'path':<20}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'p50 x redis':>13}"
              f"{'p99 x redis':>13}")
        rb = lat["redis"]
        for name, _, _ in paths:
            rows = lat[name]
            p50, p99, mx = (median(r[i] for r in rows) for i in range(3))
            r50 = median(a[0] / b[0] for a, b in zip(rows, rb))
            r99 = median(a[1] / b[1] for a, b in zip(rows, rb))
            print(f"{name:<20}{p50:>9.3f}{p99:>9.3f}{mx:>9.3f}{r50:>13.1f}{r99:>13.1f}")
    finally:
        for d in drains:
            d.close()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Availability through failover: how long writes stop when a node fails.

Starts a three-node cluster of real processes (tests/cluster/harness.py),
runs one closed-loop writer per node (INCR of its own counter, one request
in flight, through that node), injects one fault, and reports from the
writers' records:

- window: the longest time with no successful write anywhere, from just
  before the fault until the writers stop (issue 21's measure);
- per node: the longest time that node's writer went without a success
  (a killed node's writer is left out while its node is down);
- outcomes: successes, -UNCERTAIN, -CLUSTERDOWN, connection errors;
- exactness: every counter ends between its successes and its successes
  plus its uncertain outcomes (nothing applied twice, nothing lost).

Faults: `kill-leader` (SIGKILL), `pause-leader` (SIGSTOP for --pause
seconds, then SIGCONT), `kill-follower`, `pause-follower`. Each scenario
runs --rounds times on a fresh cluster; the medians are printed.

    bench/failover.py [--bin target/release/raftcache] [--rounds 3]
                      [--scenarios kill-leader,pause-leader,...] [--pause 2]

Targets (issue 21, default election timeout): the window after a leader is
killed, paused or isolated at most 1.5 s; after a follower fails at most
0.5 s for the other nodes' clients. Isolation needs network namespaces and
is not run here.
"""

import argparse
import os
import sys
import threading
import time
from statistics import median

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "cluster"))

import redis  # noqa: E402
from harness import Cluster  # noqa: E402

SCENARIOS = ["kill-leader", "pause-leader", "kill-follower", "pause-follower"]


class Writer(threading.Thread):
    """INCRs `counter:<member>` through one node, one request at a time."""

    def __init__(self, cluster, member):
        super().__init__(daemon=True)
        self.cluster, self.member = cluster, member
        self.key = f"counter:{member}"
        self.stop = threading.Event()
        self.ok = []  # completion times of successes
        self.uncertain = 0
        self.clusterdown = 0
        self.conn_errors = 0
        self.other = []

    def run(self):
        node = self.cluster.node(self.member)
        r = None
        while not self.stop.is_set():
            if r is None:
                r = node.client(socket_timeout=30, socket_connect_timeout=1)
            try:
                r.incr(self.key)
                self.ok.append(time.monotonic())
            except redis.exceptions.ResponseError as e:
                msg = str(e)
                if msg.startswith("UNCERTAIN"):
                    self.uncertain += 1
                elif msg.startswith("CLUSTERDOWN"):
                    self.clusterdown += 1
                else:
                    self.other.append(msg)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
                # The outcome of the request in flight is unknown.
                self.conn_errors += 1
                self.uncertain += 1
                r = None
                time.sleep(0.05)


def longest_gap(times, start, end):
    """Longest interval in [start, end] with no time from `times` inside."""
    points = [start] + sorted(t for t in times if start < t < end) + [end]
    return max(b - a for a, b in zip(points, points[1:]))


def run_once(binary, scenario, pause, before, after, args):
    os.environ["RAFTCACHE_BIN"] = binary
    cluster = Cluster(3, args).start()
    try:
        leader = cluster.leader()
        follower = cluster.followers(leader)[0]
        writers = {m: Writer(cluster, m) for m in cluster.nodes}
        for w in writers.values():
            w.start()
        time.sleep(before)
        victim = leader if scenario.endswith("leader") else follower
        t_fault = time.monotonic()
        if scenario.startswith("kill"):
            cluster.kill9(victim)
            writers[victim].stop.set()
        else:
            cluster.sigstop(victim)
            time.sleep(pause)
            cluster.sigcont(victim)
        time.sleep(after)
        t_end = time.monotonic()
        for w in writers.values():
            w.stop.set()
        for w in writers.values():
            w.join(timeout=40)
        start = t_fault - 0.05
        all_ok = [t for w in writers.values() for t in w.ok]
        window = longest_gap(all_ok, start, t_end)
        per_node = {}
        for m, w in writers.items():
            if scenario.startswith("kill") and m == victim:
                continue
            # A paused node's own clients wait out at least the pause.
            per_node[m] = longest_gap(w.ok, start, t_end)
        others = [g for m, g in per_node.items() if m != victim]
        # Exactness, read through a live node.
        live = next(m for m in cluster.nodes if not (scenario.startswith("kill") and m == victim))
        r = cluster.node(live).client()
        exact = True
        for m, w in writers.items():
            value = int(r.get(w.key) or 0)
            if not (len(w.ok) <= value <= len(w.ok) + w.uncertain):
                exact = False
                print(f"  counter:{m} = {value}, successes {len(w.ok)}, uncertain {w.uncertain}",
                      file=sys.stderr)
        r.close()
        outcomes = {
            "ok": sum(len(w.ok) for w in writers.values()),
            "uncertain": sum(w.uncertain for w in writers.values()),
            "clusterdown": sum(w.clusterdown for w in writers.values()),
            "conn_errors": sum(w.conn_errors for w in writers.values()),
            "other": sum(len(w.other) for w in writers.values()),
        }
        return {
            "window": window,
            "victim_gap": per_node.get(victim),
            "others_max_gap": max(others) if others else None,
            "exact": exact,
            "outcomes": outcomes,
        }
    finally:
        cluster.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "target", "release", "raftcache"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--pause", type=float, default=2.0, help="SIGSTOP length (s)")
    ap.add_argument("--before", type=float, default=2.0, help="writing before the fault (s)")
    ap.add_argument("--after", type=float, default=6.0, help="writing after the fault (s)")
    ap.add_argument("--node-args", default="--threads 1 --loglevel warning")
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    node_args = args.node_args.split()
    print(f"binary {binary}; {args.rounds} rounds per scenario; pause {args.pause}s")
    print("| fault | window s (median) | per-round | victim's clients s | other nodes' "
          "clients s | ok | uncertain | clusterdown | exact |")
    print("|---|---|---|---|---|---|---|---|---|")
    all_exact = True
    for scenario in args.scenarios.split(","):
        results = [run_once(binary, scenario, args.pause, args.before, args.after, node_args)
                   for _ in range(args.rounds)]
        windows = [r["window"] for r in results]
        victim = [r["victim_gap"] for r in results if r["victim_gap"] is not None]
        others = [r["others_max_gap"] for r in results if r["others_max_gap"] is not None]
        exact = all(r["exact"] for r in results)
        all_exact &= exact
        out = results[len(results) // 2]["outcomes"]
        cells = [
            scenario,
            f"{median(windows):.2f}",
            ", ".join(f"{w:.2f}" for w in windows),
            f"{median(victim):.2f}" if victim else "-",
            f"{median(others):.2f}" if others else "-",
            str(out["ok"]),
            str(out["uncertain"]),
            str(out["clusterdown"]),
            "yes" if exact else "NO",
        ]
        print("| " + " | ".join(cells) + " |", flush=True)
    return 0 if all_exact else 1


if __name__ == "__main__":
    sys.exit(main())

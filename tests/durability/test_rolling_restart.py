"""Rolling restarts that follow the documented signal (issue 21).

One node at a time is restarted (alternately SIGTERM and SIGKILL) while a
closed-loop writer runs through every node; before the next node is touched
the test waits for the restarted node's INFO `raft_ready:1` — the signal the
README's rolling-restart procedure gives. Under memory-only, everysec and
always: the cluster never gets stuck (every wait has a deadline), no
acknowledged write is lost and nothing is applied twice (each counter ends
between its acknowledged increments and those plus its uncertain ones), and
the replicas' digests agree at the end.

CI restarts each node twice per mode. The long version keeps restarting for
as long as RAFTCACHE_ROLLING_SECONDS says (at least two rounds), e.g.
``RAFTCACHE_ROLLING_SECONDS=300 python3 -m pytest -q -s
tests/durability/test_rolling_restart.py`` for five minutes per mode.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
import redis

from harness import error_kind

MODES = {
    "memory": dict(data=False, args=[]),
    "everysec": dict(data=True, args=["--appendfsync", "everysec"]),
    "always": dict(data=True, args=["--appendfsync", "always"]),
}


class Writer(threading.Thread):
    """INCR of its own counter through one node; reconnects while the node
    restarts (the request in flight then has an unknown outcome)."""

    def __init__(self, cluster, member: int):
        super().__init__(daemon=True)
        self.cluster, self.member = cluster, member
        self.key = f"counter:{member}"
        self.ok = 0
        self.uncertain = 0
        self.unexpected: list[str] = []
        self.stop = threading.Event()

    def run(self):
        client = None
        while not self.stop.is_set():
            try:
                if client is None:
                    client = self.cluster.client(self.member, socket_timeout=30,
                                                 socket_connect_timeout=1)
                client.incr(self.key)
                self.ok += 1
            except redis.exceptions.RedisError as e:
                kind = error_kind(e)
                if kind == "connection":
                    self.uncertain += 1
                    client = None
                    time.sleep(0.05)
                elif kind == "uncertain":
                    self.uncertain += 1
                elif kind != "clusterdown":
                    self.unexpected.append(repr(e))
                    return


def wait_ready(cluster, m: int, timeout: float = 60.0) -> float:
    start = time.monotonic()
    cluster.wait_for(f"node {m} to report raft_ready:1",
                     lambda: cluster.node(m).info().get("raft_ready") == "1", timeout=timeout)
    return time.monotonic() - start


@pytest.mark.parametrize("mode", list(MODES))
def test_rolling_restart_waiting_for_ready_never_wedges(make_dcluster, mode):
    cluster = make_dcluster(3, args=MODES[mode]["args"], data=MODES[mode]["data"])
    for m in cluster.nodes:
        wait_ready(cluster, m)
    writers = {m: Writer(cluster, m) for m in cluster.nodes}
    for w in writers.values():
        w.start()
    cluster.wait_for("every writer to succeed", lambda: all(w.ok for w in writers.values()))
    waits = []
    seconds = float(os.environ.get("RAFTCACHE_ROLLING_SECONDS", "0"))
    started = time.monotonic()
    round_ = 0
    try:
        while round_ < 2 or time.monotonic() - started < seconds:
            round_ += 1
            for m in cluster.nodes:
                node = cluster.node(m)
                if round_ % 2 == 1:
                    node.terminate()
                else:
                    node.kill9()
                node.spawn()
                node.wait_ping()
                waits.append(wait_ready(cluster, m))
                before = {k: w.ok for k, w in writers.items()}
                cluster.wait_for(
                    "every writer to succeed again after the restart",
                    lambda: all(w.ok > before[k] for k, w in writers.items()), timeout=30)
    finally:
        for w in writers.values():
            w.stop.set()
        for w in writers.values():
            w.join(timeout=60)
    for w in writers.values():
        assert not w.unexpected, f"writer {w.key}: {w.unexpected}"
    leader = cluster.wait_stable(timeout=30)
    c = cluster.client(leader)
    for w in writers.values():
        value = int(c.get(w.key) or 0)
        assert w.ok <= value <= w.ok + w.uncertain, (
            f"{mode}: {w.key} = {value}: {w.ok} acknowledged, {w.uncertain} uncertain")
    c.close()
    cluster.assert_digests_equal(timeout=60)
    print(f"\n{mode}: {len(waits)} restarts in {time.monotonic() - started:.0f} s, ready after "
          f"{min(waits):.1f}-{max(waits):.1f} s (median {sorted(waits)[len(waits) // 2]:.1f}); "
          f"acknowledged {sum(w.ok for w in writers.values())}, "
          f"uncertain {sum(w.uncertain for w in writers.values())}")

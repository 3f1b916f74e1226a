"""Logs an operator can trust: routine cluster events do not log ERROR and
do not flood WARN.

A fresh three-node start (elections, late vote answers), a follower killed
with SIGKILL and started again (its peers cannot reach it for a moment, it
rejoins and catches up a log larger than one AppendEntries batch) and a
clean stop are all routine: each node's log must hold no ERROR line and at
most a few WARN lines. ERROR is for what needs a person (corruption, a
failed fsync, a panic).
"""

from __future__ import annotations

import re
from typing import Dict, List

from harness import Cluster

# A log line's level in the default text format: `<timestamp> <LEVEL> ...`.
LEVEL = re.compile(r"^\S+\s+(TRACE|DEBUG|INFO|WARN|ERROR)\b")
MAX_WARN_PER_NODE = 5


def lines_at(text: str, level: str) -> List[str]:
    out = []
    for line in text.splitlines():
        m = LEVEL.match(line)
        if m and m.group(1) == level:
            out.append(line)
    return out


def fill(cluster: Cluster, m: int, prefix: str, n: int, size: int) -> None:
    """n SETs of `size`-byte values through member m, pipelined."""
    c = cluster.client(m)
    try:
        value = "v" * size
        for start in range(0, n, 200):
            pipe = c.pipeline(transaction=False)
            for i in range(start, min(n, start + 200)):
                pipe.set(f"{prefix}:{i}", value)
            assert all(pipe.execute())
    finally:
        c.close()


def test_start_and_follower_restart_log_no_error_and_few_warnings(make_cluster):
    cluster = make_cluster(3)
    leader = cluster.leader()
    # More than one AppendEntries batch (1 MiB) for the restarted follower to
    # catch up on.
    fill(cluster, leader, "before", 3000, 1000)
    follower = cluster.followers(leader)[0]
    cluster.kill9(follower)
    fill(cluster, leader, "during", 3000, 1000)
    cluster.restart(follower)
    cluster.wait_voter(follower)
    fill(cluster, leader, "after", 200, 100)
    cluster.wait_applied_equal()
    cluster.stop()

    errors: Dict[int, List[str]] = {}
    warnings: Dict[int, List[str]] = {}
    for m, node in cluster.nodes.items():
        text = node.log()
        errors[m] = lines_at(text, "ERROR")
        warnings[m] = lines_at(text, "WARN")

    report = []
    for m in cluster.nodes:
        if errors[m]:
            report.append(f"node {m}: {len(errors[m])} ERROR lines:\n  " + "\n  ".join(errors[m][:20]))
        if len(warnings[m]) > MAX_WARN_PER_NODE:
            report.append(
                f"node {m}: {len(warnings[m])} WARN lines (at most {MAX_WARN_PER_NODE}):\n  "
                + "\n  ".join(warnings[m][:20])
            )
    counts = {m: (len(errors[m]), len(warnings[m])) for m in cluster.nodes}
    print(f"(ERROR, WARN) lines per node: {counts}")
    assert not report, "\n".join(report)


def test_a_paused_follower_keeps_its_peer_connection_and_logs_no_warning(make_cluster):
    """A follower stopped (SIGSTOP) for 4 s while the leader writes: the
    leader's AppendEntries to it time out one after another, and each drops
    its stream (reset before the follower accepted it). When the follower
    resumes, its peer server must not take those resets for a rapid-reset
    flood (h2's default allows 20) and close the connection; no node logs a
    warning for the pause, the late answers to proposals nobody waits for
    included."""
    import threading
    import time

    cluster = make_cluster(3)
    leader = cluster.leader()
    f1 = cluster.followers(leader)[0]
    stop = threading.Event()

    def write():
        c = cluster.client(leader)
        i = 0
        while not stop.is_set():
            c.set(f"k{i % 100}", i)
            i += 1
        c.close()

    t = threading.Thread(target=write, daemon=True)
    t.start()
    time.sleep(1)
    cluster.sigstop(f1)
    time.sleep(4)
    cluster.sigcont(f1)
    cluster.wait_applied_equal(timeout=30)
    stop.set()
    t.join(timeout=30)
    for m, text in cluster.logs().items():
        assert not [l for l in text.splitlines() if "reached limit" in l], f"node {m}: {text}"
        warnings = lines_at(text, "WARN") + lines_at(text, "ERROR")
        assert not warnings, f"node {m} logged: {warnings}"

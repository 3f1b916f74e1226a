"""Durability helpers on top of the cluster harness (``tests/cluster/harness.py``).

The cluster harness starts every node with the same flags. Durability tests
need per-node state on disk, so this module subclasses it (the cluster
harness itself is imported, never edited):

- ``DurableNode`` adds ``--data-dir <workdir>/data<m>`` (or nothing, for a
  memory-only node) and per-node extra flags to the argv, and can read the
  node's ``identity`` file and locate its snapshots and sled files.
- ``DurableCluster`` builds its nodes as ``DurableNode``s and adds what crash
  tests need: killing every node at once (SIGKILL to all pids, then reaping),
  spawning several nodes before waiting for any (a node only answers RESP once
  its bootstrap has decided how to start, which may need the others),
  stopping one node cleanly (SIGTERM) and running the binary once for a
  start-up that is expected to be refused.

Every signal goes to a pid this harness started; every wait is a poll with a
deadline.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import redis

CLUSTER_TESTS = Path(__file__).resolve().parents[1] / "cluster"
if str(CLUSTER_TESTS) not in sys.path:
    sys.path.insert(0, str(CLUSTER_TESTS))

from harness import (  # noqa: E402  (the cluster harness, reused as is)
    POLL,
    START_TIMEOUT,
    Cluster,
    Digest,
    HarnessError,
    Node,
    Outcome,
    WriteLoad,
    answers_ping,
    error_kind,
    free_ports,
    members_of,
    raftcache_bin,
)

__all__ = [
    "Cluster", "Digest", "DurableCluster", "DurableNode", "HarnessError", "Outcome", "POLL",
    "START_TIMEOUT", "WriteLoad", "answers_ping", "error_kind", "free_ports", "members_of",
    "mget_all", "raftcache_bin", "run_to_exit", "verify_load",
]  # fmt: skip


class DurableNode(Node):
    """A node with an optional data directory and its own extra flags."""

    def __init__(self, cluster: "DurableCluster", member: int, resp: int, raft: int, admin: int,
                 data_dir: Optional[str], metrics: int = 0):
        super().__init__(cluster, member, resp, raft, admin, metrics)
        self.data_dir = data_dir
        # Flags for this node only: `args` replaces the cluster's flags when
        # set (e.g. another --appendfsync); `extra_args` is appended.
        self.args: Optional[List[str]] = None
        self.extra_args: List[str] = []

    def node_args(self) -> List[str]:
        args = list(self.cluster.args if self.args is None else self.args)
        if self.data_dir is not None:
            args += ["--data-dir", self.data_dir]
        return args + list(self.extra_args)

    def describe(self) -> str:
        return f"{super().describe()}; data {self.data_dir}"

    # -- life cycle --

    def sigterm(self) -> Optional[int]:
        """Clean stop (SIGTERM; SIGKILL only if it does not exit in 10 s)."""
        return self.terminate()

    def raft_node_id(self) -> str:
        return self.info()["raft_node_id"]

    # -- the data directory --

    def identity(self) -> Dict[str, str]:
        """The identity file as {key: value}; {} if there is none."""
        path = Path(self.data_dir) / "identity"
        try:
            text = path.read_text()
        except FileNotFoundError:
            return {}
        out = {}
        for line in text.splitlines():
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                out[k.strip()] = v.strip()
        return out

    def snapshot_dir(self) -> Path:
        return Path(self.data_dir) / "snapshots"

    def snapshots(self) -> List[Tuple[int, Path]]:
        """(log index, path) of every complete `snapshot-<id>.bin`, oldest
        first. The id is `<term>-<leader node id>-<index>-<seq>`. A snapshot is
        complete once its `.meta` file is written (after the `.bin`); a node
        stopped in between ignores the lone `.bin`, so it is not listed."""
        out = []
        for p in self.snapshot_dir().glob("snapshot-*.bin"):
            m = re.fullmatch(r"snapshot-(\d+)-(\d+)-(\d+)-(\d+)\.bin", p.name)
            if m and p.with_suffix(".meta").exists():
                out.append((int(m.group(3)), int(m.group(4)), p))
        return [(i, p) for i, _, p in sorted(out)]

    def sled_dir(self) -> Path:
        return Path(self.data_dir) / "raft"

    def log_since_last_start(self) -> str:
        """The node's log output since its latest `=== start #k` line."""
        text = self.log()
        marker = f"=== start #{self.starts}:"
        at = text.rfind(marker)
        return text[at:] if at >= 0 else text


class DurableCluster(Cluster):
    """n nodes, each with its own data directory (``data=False``: memory-only)."""

    def __init__(self, n: int = 3, args: Iterable[str] = (), data: bool = True,
                 workdir: Optional[str] = None):
        super().__init__(n, args, workdir)
        self.nodes: Dict[int, DurableNode] = {
            m: DurableNode(
                self, m, node.resp_port, node.raft_port, node.admin_port,
                os.path.join(self.workdir, f"data{m}") if data else None,
                node.metrics_port,
            )
            for m, node in self.nodes.items()
        }  # fmt: skip

    def node(self, m: int) -> DurableNode:
        return self.nodes[m]

    def spawn(self, members: Iterable[int]) -> None:
        """Starts the given members without waiting, then waits until each
        answers PING (a node answers RESP only once its bootstrap is done,
        which may need the others to be up)."""
        members = list(members)
        for m in members:
            self.nodes[m].spawn()
        deadline = time.monotonic() + START_TIMEOUT + 10
        for m in members:
            self.nodes[m].wait_ping(max(1.0, deadline - time.monotonic()))

    def kill_all(self) -> float:
        """SIGKILL to every running node at (nearly) the same instant; returns
        the monotonic time the first signal was sent."""
        running = [n for n in self.nodes.values() if n.alive()]
        for n in running:
            n.killed = True
        t = time.monotonic()
        for n in running:
            os.kill(n.proc.pid, signal.SIGKILL)
        for n in running:
            n.proc.wait(timeout=10)
            n.paused = False
            n._close_grpc()
        return t

    def restart_all(self) -> None:
        self.spawn(self.nodes)


# --- one-off runs of the binary ---------------------------------------------------


def run_to_exit(argv: List[str], timeout: float, log_path: str) -> Tuple[Optional[int], str]:
    """Runs argv (its own process group), waiting up to `timeout` s for it to
    exit. Returns (exit code, output); exit code None if it was still running
    at the deadline (it is then killed by pid)."""
    with open(log_path, "ab") as log:
        log.write(f"=== run: {' '.join(argv)}\n".encode())
        log.flush()
        start_offset = log.tell()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env=dict(os.environ, NO_COLOR="1"))
    try:
        rc: Optional[int] = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        rc = None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    with open(log_path, "r", errors="replace") as f:
        f.seek(start_offset)
        return rc, f.read()


# --- checking what a write load left behind ---------------------------------------


def mget_all(client: redis.Redis, keys: List[str], chunk: int = 500) -> Dict[str, object]:
    out: Dict[str, object] = {}
    for i in range(0, len(keys), chunk):
        part = keys[i : i + chunk]
        out.update(zip(part, client.mget(part)))
    return out


def verify_load(client: redis.Redis, load: WriteLoad,
                acked_before: Optional[float] = None) -> Dict[str, object]:
    """Checks every acknowledged write of `load` through `client`.

    SETs: every acknowledged key holds its value (only those acknowledged
    before the monotonic time `acked_before`, when given); keys whose outcome
    is unknown (uncertain/lost) hold their value or nothing; keys that got
    CLUSTERDOWN hold nothing. INCR counters: acknowledged <= value <=
    acknowledged + unknown (checked only when `acked_before` is None).

    Returns a summary; raises AssertionError listing the violations.
    """
    sets = load.of("set")
    values = mget_all(client, [o.key for o in sets])
    missing, wrong, phantom = [], [], []
    late_acked = late_missing = 0
    for o in sets:
        got = values.get(o.key)
        if o.result == "ack":
            if acked_before is not None and o.end >= acked_before:
                late_acked += 1
                if got != o.value:
                    late_missing += 1
                continue
            if got != o.value:
                missing.append((o.key, o.value, got, o.node))
        elif o.result in ("uncertain", "lost"):
            if got not in (None, o.value):
                wrong.append((o.key, o.value, got))
        elif o.result == "clusterdown":
            if got is not None:
                phantom.append((o.key, got))
    counters = {}
    problems = []
    if acked_before is None:
        for ctr in load.counters:
            incrs = [o for o in load.of("incr") if o.key == ctr]
            acked = sum(1 for o in incrs if o.result == "ack")
            unknown = sum(1 for o in incrs if o.result in ("uncertain", "lost"))
            value = int(client.get(ctr) or 0)
            counters[ctr] = (acked, unknown, value)
            if not acked <= value <= acked + unknown:
                problems.append(f"{ctr}={value}, but {acked} INCRs were acknowledged and "
                                f"{unknown} had an unknown outcome")
    errors = load.of("set", "error") + load.of("incr", "error")
    if missing:
        problems.append(f"{len(missing)} acknowledged SETs are missing, e.g. {missing[:5]}")
    if wrong:
        problems.append(f"{len(wrong)} keys hold a value never written: {wrong[:5]}")
    if phantom:
        problems.append(f"{len(phantom)} keys whose SET got CLUSTERDOWN exist: {phantom[:5]}")
    if errors:
        problems.append(f"{len(errors)} writes got unexpected errors, e.g. "
                        f"{[(o.kind, o.key, o.reply) for o in errors[:3]]}")
    summary = {
        "counts": load.counts(),
        "sets_checked": len(sets),
        "counters": counters,
        "late_acked": late_acked,
        "late_missing": late_missing,
    }
    assert not problems, "; ".join(problems) + f" (load: {load.counts()})"
    return summary

"""Failover without a stall (issue 21), with real processes in network
namespaces: `raftcache-chaos run` with one fault kind at a time and a
counter workload (INCR and GET) through every node.

Each run must be valid: the counter checker finds every counter exact (no
acknowledged increment lost, none applied twice, every unknown outcome
accounted for between the acknowledged and the attempted increments), the
digests agree, no node crashed. And writes must resume: after each fault
every node's clients get acknowledged writes again, and the nodes the fault
did not take away never went long without one.

Timings here are generous bounds (the machine may be shared and slow); the
targets (1.5 s after a leader fault, 0.5 s for the others' clients after a
follower fault) are measured with `raftcache-chaos run` and bench/failover.py
on a release build (README, Failover).

Needs: root, `ip` and `iptables`; RAFTCACHE_BIN (the node) and the
`raftcache-chaos` binary beside it (or RAFTCACHE_CHAOS_BIN). Missing any of
them fails the test with a message; it is never skipped. CHAOS_SEED picks
another seed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from conftest import run_reported


SEED = int(os.environ.get("CHAOS_SEED", "21"))
RUN_TIMEOUT = 240
NODES = (1, 2, 3)

# The longest time without an acknowledged write anywhere after a leader
# fault (the target is 1.5 s; this only catches a stall such as waiting out
# the 5 s request-timeout).
LEADER_FAULT_GAP = 4.0
# The longest a client of a node that can still reach the leader (directly or
# through a peer) goes without an acknowledged write.
REACHABLE_NODE_GAP = 4.5






def _run(binaries, out: Path, fault: str, fault_duration: int = 3):
    """Runs one fault kind twice (18 s of workload: 3 s quiet, the fault,
    3 s quiet, the fault, the rest quiet) and returns the summary."""
    node, chaos = binaries
    cmd = [
        chaos, "run",
        "--bin", node,
        "--out", str(out),
        "--seed", str(SEED),
        "--time", str(12 + 2 * fault_duration),
        "--interval", "3",
        "--fault-duration", str(fault_duration),
        "--faults", fault,
        "--workloads", "counter",
        "--clients", "6",  # two per node
        "--keys", "2",
        "--check-timeout", "60",
    ]  # fmt: skip
    proc, report = run_reported(cmd, out, RUN_TIMEOUT)
    assert proc.returncode == 0, report
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "valid", report
    assert summary["findings"] == [], report
    assert summary["convergence"]["result"] == "agree", report
    checkers = {c["checker"]: c for c in summary["checkers"]}
    counter = checkers["counter"]
    assert counter["verdict"] == "valid", counter
    assert counter["ops"] >= 300, f"the counter checker judged too little: {counter}"
    assert summary["ops_by_f"]["incr"]["ok"] >= 200, summary["ops_by_f"]
    faults = summary["faults"]
    assert len(faults) == 2 and all(f["fault"] == fault for f in faults), faults
    assert all(f["end_s"] is not None for f in faults), faults
    for f in faults:
        assert sorted(n["node"] for n in f["per_node"]) == list(NODES), f
        for n in f["per_node"]:
            # Writes came back on every node once the fault was healed.
            assert n["writes_resumed_after_s"] is not None, (f, n)
            assert n["writes_resumed_after_s"] < 5.0, (f, n)
    return summary, report


def _leader(fault: dict) -> int:
    """The node a leader fault hit, from its detail: "SIGKILL node 2 (kill
    the leader)", "isolate node 2 (isolate the leader) from 1,3"."""
    m = re.search(r"node (\d+) \(\w+ the leader\)", fault["detail"])
    assert m, f"the fault did not hit a known leader: {fault}"
    return int(m.group(1))


def _check_leader_fault(summary, report):
    for f in summary["faults"]:
        leader = _leader(f)
        assert f["longest_write_gap_s"] < LEADER_FAULT_GAP, (f, report)
        for n in f["per_node"]:
            if n["node"] != leader:
                assert n["longest_write_gap_s"] < REACHABLE_NODE_GAP, (f, n, report)


def test_leader_isolated(binaries, tmp_path):
    summary, report = _run(binaries, tmp_path / "run", "partition-leader")
    _check_leader_fault(summary, report)


def test_leader_killed(binaries, tmp_path):
    summary, report = _run(binaries, tmp_path / "run", "kill-leader")
    _check_leader_fault(summary, report)


def test_leader_paused(binaries, tmp_path):
    summary, report = _run(binaries, tmp_path / "run", "pause-leader")
    _check_leader_fault(summary, report)


def test_follower_cut_off_from_the_leader_only(binaries, tmp_path):
    """A bridge: one follower loses its links to the leader and keeps those
    to the other follower, which still hears the leader. Its clients must
    not stall for the length of the partition: their writes are relayed."""
    summary, report = _run(binaries, tmp_path / "run", "partition-leader-follower",
                           fault_duration=5)
    for f in summary["faults"]:
        # "cut node 3 off from node 1 (the leader) only; ..."
        m = re.search(r"cut node (\d+) off from node (\d+) \(the leader\)", f["detail"])
        assert m, f"the fault did not find the leader: {f}"
        follower, leader = int(m.group(1)), int(m.group(2))
        for n in f["per_node"]:
            assert n["longest_write_gap_s"] < REACHABLE_NODE_GAP, (f, n, report)
        cut = next(n for n in f["per_node"] if n["node"] == follower)
        # Served during the partition, not only after it (it lasts 5 s).
        assert cut["longest_write_gap_s"] < 4.0, (f, cut, report)
        # Every answer comes before the 5 s request-timeout: it notices the
        # cut when its election timer fires (at most 4 election timeouts and
        # a tick, 1.35 s), and a read, which it cannot serve without the
        # leader, fails 6 election timeouts (1.8 s) later (README, Failover);
        # its writes are relayed.
        assert cut["longest_wait_s"] < 4.8, (f, cut, report)
        assert leader != follower


def test_isolated_follower_returns_without_an_election(binaries, tmp_path):
    """A follower cut off from every other node stops standing for election
    once no other voter answers it (pre-vote, crates/cluster/src/prevote.rs),
    so its term does not run ahead: when the partition heals it follows the
    leader again without deposing it. Every "new leader" any node logged
    names the same leader and term, through both faults."""
    out = tmp_path / "run"
    summary, report = _run(binaries, out, "partition-follower")
    logs = {p.name: p.read_text(errors="replace") for p in (out / "nodes").rglob("node*.log")}
    assert len(logs) == len(NODES), (sorted(logs), report)
    leaders = set()
    for text in logs.values():
        leaders |= set(re.findall(r"new leader leader=(\S+) term=(\d+)", text))
    assert len(leaders) == 1, (
        f"the leader changed during or after the follower's isolation: {sorted(leaders)}\n{report}")
    cut = [name for name, text in logs.items() if "not standing for election" in text]
    assert cut, f"no isolated node stopped standing for election\n{report}"

"""The chaos harness must be able to fail (issue 17): each test-only unsafe
switch of the node (`--unsafe-test-switch NAME`, hidden) makes a short
`raftcache-chaos run` report a violation, from the checker that judges what
the switch breaks:

* `follower-local-reads` (followers read their own replica, no read index):
  one follower at a time is cut off (`partition-follower`) while the others
  write; its clients' reads return values that writes acknowledged before
  the reads began had overwritten: `linearizable` finds them.
* `ack-before-commit` (a leader answers a write it could not commit within
  100 ms, with the replies of its own engine): the leader is cut off
  (`partition-leader`); in the two seconds before it notices (twice its
  election timeout of 1 s) its clients' RPUSHes and INCRs are acknowledged,
  and the next leader's log overwrites them: `list-append` finds the lost
  appends in the final reads, which read every list.
* `lock-grant-unchecked` (the engine grants a held lock): three clients
  contend for one lock with no fault at all: `lock` finds two holders. The
  switch is in the replicated engine, given to every node, so the digests
  still agree.

Each run is made near-certain by design, not by luck: the fault is aimed
(a follower, the leader), repeated, and the clients are several per node
with a short operation timeout, so that a client stuck behind a fault moves
on within the fault. Every run must exit 1 with that checker's verdict
`invalid` in summary.json. A first test checks that the switch is hidden
(not in --help, --print-config, a config file or the environment), loud
(a WARN at startup) and shown by INFO.

Needs root, `ip` and `iptables` for the runs (as test_campaign.py);
RAFTCACHE_BIN and the `raftcache-chaos` binary beside it (or
RAFTCACHE_CHAOS_BIN). Missing any of them fails the test; none is skipped.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


RUN_TIMEOUT = 240  # each run, checks included, ends well before








def _clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTCACHE_")}
    env.update(extra)
    return env


def _free_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def _info_server(port: int, deadline: float) -> str:
    """INFO server over a raw RESP connection, once the node answers."""
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                    header, sep, body = data.partition(b"\r\n")
                    if sep and header[:1] == b"$" and len(body) >= int(header[1:]) + 2:
                        return body[: int(header[1:])].decode()
        except OSError:
            pass
        assert time.monotonic() < deadline, "the node did not answer INFO"
        time.sleep(0.1)


def _start_node(node_bin: str, port: int, *flags: str, env=None):
    """A one-node cluster on `port` (other ports picked by the system)."""
    return subprocess.Popen(
        [node_bin, "--port", str(port), "--raft-port", "0", "--admin-port", "0",
         "--metrics-port", "0", *flags],
        env=env or _clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _stop(proc) -> str:
    """Stops the node; returns its log (stdout and stderr)."""
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


def test_switches_are_hidden_loud_and_shown_in_info(node_bin, tmp_path):
    # Hidden: not in --help nor in --print-config.
    helped = subprocess.run([node_bin, "--help"], capture_output=True, text=True, timeout=30)
    assert helped.returncode == 0 and "unsafe" not in helped.stdout.lower(), helped.stdout
    printed = subprocess.run([node_bin, "--unsafe-test-switch", "ack-before-commit",
                              "--print-config"], capture_output=True, text=True, timeout=30,
                             env=_clean_env())
    assert printed.returncode == 0, printed.stderr
    assert "unsafe" not in printed.stdout.lower(), printed.stdout
    # Not a setting: a config file cannot turn one on, the environment is ignored.
    conf = tmp_path / "node.toml"
    conf.write_text('unsafe-test-switch = "ack-before-commit"\n')
    refused = subprocess.run([node_bin, "--config", str(conf)], capture_output=True, text=True,
                             timeout=30, env=_clean_env())
    assert refused.returncode == 2 and "unknown key 'unsafe-test-switch'" in refused.stderr, \
        refused.stderr
    bad = subprocess.run([node_bin, "--unsafe-test-switch", "fast-and-loose"],
                         capture_output=True, text=True, timeout=30, env=_clean_env())
    assert bad.returncode == 2 and "unknown switch 'fast-and-loose'" in bad.stderr, bad.stderr

    # A node without switches shows none; the environment turns none on.
    port = _free_port()
    plain = _start_node(node_bin, port,
                        env=_clean_env(RAFTCACHE_UNSAFE_TEST_SWITCH="lock-grant-unchecked"))
    try:
        info = _info_server(port, time.monotonic() + 30)
    finally:
        err = _stop(plain)
    assert "unsafe_test_switches:\r\n" in info, info
    assert "UNSAFE" not in err, err

    # With switches: a WARN per switch at startup, and INFO lists them.
    port = _free_port()
    broken = _start_node(node_bin, port, "--unsafe-test-switch", "lock-grant-unchecked",
                         "--unsafe-test-switch=follower-local-reads")
    try:
        info = _info_server(port, time.monotonic() + 30)
    finally:
        err = _stop(broken)
    assert "unsafe_test_switches:follower-local-reads,lock-grant-unchecked\r\n" in info, info
    warns = [line for line in err.splitlines() if "WARN" in line and "UNSAFE TEST SWITCH" in line]
    assert len(warns) == 2, err
    assert any("lock-grant-unchecked" in w for w in warns), warns


def _chaos_run(binaries, out: Path, switch: str, *args: str):
    node, chaos = binaries
    cmd = [chaos, "run", "--bin", node, "--out", str(out),
           f"--node-arg=--unsafe-test-switch={switch}", *args]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    took = time.monotonic() - started
    report = (
        f"$ {' '.join(cmd)}\n(exit {proc.returncode} after {took:.0f}s; output kept in {out})\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr (last 6000 chars) ---\n{proc.stderr[-6000:]}"
    )
    print(report, file=sys.stderr)
    assert (out / "summary.json").is_file(), report
    summary = json.loads((out / "summary.json").read_text())
    checkers = {c["checker"]: c for c in summary["checkers"]}
    # Every node was started with the switch and said so.
    for log in sorted((out / "nodes").glob("*.log")):
        assert "UNSAFE TEST SWITCH ON" in log.read_text(errors="replace"), log
    return proc, summary, checkers, report


def _anomalies(checker: dict) -> set:
    verdict = checker["report"]["verdict"]
    return {v["anomaly"] for v in verdict.get("violations", [])}


def test_follower_local_reads_make_stale_reads(binaries, tmp_path):
    proc, summary, checkers, report = _chaos_run(
        binaries, tmp_path / "follower-reads", "follower-local-reads",
        "--seed", "1701", "--time", "20", "--interval", "2", "--fault-duration", "4",
        "--faults", "partition-follower", "--workloads", "register",
        "--clients", "6", "--keys", "2", "--key-period", "5", "--op-timeout-ms", "500",
        "--check-timeout", "60",
    )  # fmt: skip
    assert proc.returncode == 1, report
    assert summary["verdict"] == "invalid", report
    lin = checkers["linearizable"]
    assert lin["verdict"] == "invalid", f"linearizable: {lin}\n{report}"
    assert lin["ops"] >= 300, lin
    assert any(f["fault"] == "partition-follower" for f in summary["faults"]), summary["faults"]
    print(f"linearizable: {sorted(_anomalies(lin))}", file=sys.stderr)


def test_ack_before_commit_loses_acknowledged_writes(binaries, tmp_path):
    proc, summary, checkers, report = _chaos_run(
        binaries, tmp_path / "ack-before-commit", "ack-before-commit",
        "--node-arg=--election-timeout-ms=1000", "--election-timeout-ms", "1000",
        "--seed", "1702", "--time", "24", "--interval", "2", "--fault-duration", "5",
        "--faults", "partition-leader", "--workloads", "list-append,counter",
        "--clients", "6", "--key-period", "6", "--op-timeout-ms", "700",
        "--check-timeout", "60",
    )  # fmt: skip
    assert proc.returncode == 1, report
    assert summary["verdict"] == "invalid", report
    lists = checkers["list-append"]
    assert lists["verdict"] == "invalid", f"list-append: {lists}\n{report}"
    assert "lost-append" in _anomalies(lists), lists
    assert any(f["fault"] == "partition-leader" for f in summary["faults"]), summary["faults"]
    print(f"list-append: {sorted(_anomalies(lists))}; counter: {checkers['counter']['verdict']} "
          f"{sorted(_anomalies(checkers['counter']))}", file=sys.stderr)


def test_lock_grant_unchecked_makes_two_holders(binaries, tmp_path):
    proc, summary, checkers, report = _chaos_run(
        binaries, tmp_path / "lock-unchecked", "lock-grant-unchecked",
        "--seed", "1703", "--time", "8", "--faults", "none", "--workloads", "lock",
        "--clients", "3", "--locks", "1",
    )  # fmt: skip
    assert proc.returncode == 1, report
    assert summary["verdict"] == "invalid", report
    lock = checkers["lock"]
    assert lock["verdict"] == "invalid", f"lock: {lock}\n{report}"
    assert "two-holders" in _anomalies(lock), lock
    # The switch is in the replicated engine, on every node: replicas agree.
    assert summary["convergence"]["result"] == "agree", summary["convergence"]
    assert summary["findings"] == [], summary["findings"]

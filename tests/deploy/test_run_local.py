"""deploy/run-local.sh, as a new user runs it: it finds the binaries where
cargo put them (CARGO_TARGET_DIR included), says the three nodes are up only
once they listen, and stops (non-zero, the others stopped) when one does
not come up."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "run-local.sh"
BUILD_TIMEOUT = 1800  # a cold release build on two cores


def target_dir() -> str:
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                          cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(meta.stdout)["target_directory"]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def bases() -> dict:
    """Base ports with every port run-local.sh derives from them free."""
    for base in range(21000, 60000, 997):
        env = {"RESP_BASE": base, "PEER_BASE": base + 100, "ADMIN_BASE": base + 99,
               "METRICS_BASE": base + 200}
        ports = [base + i for i in range(3)] + [base + 100 + 10 * i for i in range(3)] \
            + [base + 99 + 10 * i for i in range(3)] + [base + 200 + i for i in range(3)]
        if all(port_free(p) for p in ports):
            return {k: str(v) for k, v in env.items()}
    raise AssertionError("no free port range for run-local.sh")


def start(env_extra: dict) -> subprocess.Popen:
    env = dict(os.environ, CARGO_TARGET_DIR=target_dir(), **env_extra)
    return subprocess.Popen(["bash", str(SCRIPT)], cwd="/", env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def read_until(proc: subprocess.Popen, marker: str, timeout: float) -> str:
    seen = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
        assert time.monotonic() < deadline, "".join(seen[-50:])
    return "".join(seen)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)  # its trap stops the nodes
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_three_nodes_come_up_and_serve(tmp_path):
    env = bases()
    proc = start(env)
    try:
        out = read_until(proc, "raftcache: three nodes", BUILD_TIMEOUT)
        assert "three nodes" in out, out[-3000:]
        base = int(env["RESP_BASE"])
        redis.Redis(port=base, socket_timeout=5).set("hello", "world")
        for port in (base, base + 1, base + 2):
            assert redis.Redis(port=port, socket_timeout=5).get("hello") == b"world"
    finally:
        stop(proc)
    base = int(env["RESP_BASE"])
    deadline = time.monotonic() + 15
    while not all(port_free(p) for p in (base, base + 1, base + 2)):
        assert time.monotonic() < deadline, "run-local.sh left a node running"
        time.sleep(0.2)


def test_a_node_that_does_not_start_stops_the_script():
    env = bases()
    # Node 2's Raft port is taken: node 2 cannot start.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", int(env["PEER_BASE"]) + 10))
    blocker.listen()
    proc = start(env)
    try:
        out, _ = proc.communicate(timeout=BUILD_TIMEOUT)
        assert proc.returncode != 0, out[-3000:]
        assert "node 2" in out and "three nodes" not in out, out[-3000:]
    finally:
        stop(proc)
        blocker.close()
    base = int(env["RESP_BASE"])
    deadline = time.monotonic() + 15
    while not all(port_free(p) for p in (base, base + 1, base + 2)):
        assert time.monotonic() < deadline, "run-local.sh left a node running after failing"
        time.sleep(0.2)

"""The binaries every chaos test runs: the node (RAFTCACHE_BIN) and
`raftcache-chaos` beside it (or RAFTCACHE_CHAOS_BIN). Chaos runs need root,
`ip` (iproute2) and `iptables`. Anything missing fails the test with a
message saying what to do; nothing is skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest


def binary(env: str, default: Path | None, build: str) -> str:
    path = os.environ.get(env) or (str(default) if default else "")
    if not path:
        pytest.fail(f"{env} is not set: {build}", pytrace=False)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"{env}={path!r} is not an executable file: {build}", pytrace=False)
    return path


@pytest.fixture(scope="module")
def node_bin():
    return binary(
        "RAFTCACHE_BIN", None, "build it with `cargo build -p raftcache-node --bin raftcache`"
    )


@pytest.fixture(scope="module")
def binaries(node_bin):
    """(node, raftcache-chaos), once root, ip and iptables are there."""
    chaos = binary(
        "RAFTCACHE_CHAOS_BIN",
        Path(node_bin).parent / "raftcache-chaos",
        "build it with `cargo build -p raftcache-chaos` (or set RAFTCACHE_CHAOS_BIN)",
    )
    if os.geteuid() != 0:
        pytest.fail("chaos runs need root (network namespaces, iptables)", pytrace=False)
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            pytest.fail(f"`{tool}` is missing: apt-get install iproute2 iptables", pytrace=False)
    return node_bin, chaos


def run_reported(cmd, out, timeout: float, tail: int = 4000):
    """Runs a `raftcache-chaos` command; returns (process, report), the
    report (the command, exit code, time, stdout and the end of stderr)
    also printed for a failing test's output."""
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    report = (
        f"$ {' '.join(map(str, cmd))}\n(exit {proc.returncode} after "
        f"{time.monotonic() - started:.0f}s; output kept in {out})\n--- stdout ---\n{proc.stdout}\n"
        f"--- stderr (last {tail} chars) ---\n{proc.stderr[-tail:]}"
    )
    print(report, file=sys.stderr)
    return proc, report

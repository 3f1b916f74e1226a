"""Fixtures for the cluster tests: real raftcache node processes per test.

``RAFTCACHE_BIN`` names the node binary; when it is unset or not executable,
every test fails (it is never skipped). ``make_cluster(n=3, args=...)`` starts
a cluster (see ``harness.Cluster``) and stops it at teardown: paused nodes get
SIGCONT first, then every node SIGTERM (SIGKILL after 10 s), each by its pid.

A test fails at teardown if a node exited without the harness ending it, or
if a node's log reports a panic. When a test fails, the logs of all nodes of
its clusters are attached to the report (and kept on disk; the path is shown).
"""

from __future__ import annotations

import os
import sys
from typing import Callable, List

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Cluster, HarnessError, raftcache_bin, remove_workdir  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _require_binary():
    """Fails (never skips) every test when RAFTCACHE_BIN is unusable."""
    try:
        raftcache_bin()
    except HarnessError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for cluster in getattr(item, "_raftcache_clusters", []):
            item._raftcache_keep_logs = True
            for m, text in cluster.logs().items():
                node = cluster.node(m)
                report.sections.append(
                    (
                        f"node {m} log ({node.log_path}; resp {node.resp_port}, "
                        f"raft {node.raft_port}, admin {node.admin_port})",
                        text or "<empty>",
                    )
                )


@pytest.fixture
def make_cluster(request) -> Callable[..., Cluster]:
    """Factory: make_cluster(n=3, args=(...), start=True) -> Cluster."""
    clusters: List[Cluster] = []
    request.node._raftcache_clusters = clusters

    def make(n: int = 3, args=(), start: bool = True) -> Cluster:
        cluster = Cluster(n, args)
        clusters.append(cluster)
        if start:
            cluster.start()
        return cluster

    yield make

    problems = []
    for cluster in clusters:
        died = cluster.unexpected_exits()
        cluster.stop()
        for node in died:
            problems.append(
                f"node {node.member} (pid {node.pid}) exited by itself with code "
                f"{node.proc.returncode}"
            )
        problems += cluster.panics()
    failed = getattr(request.node, "_raftcache_keep_logs", False) or problems
    for cluster in clusters:
        if failed:
            print(f"\nnode logs kept in {cluster.workdir}")
        else:
            remove_workdir(cluster)
    if problems:
        if getattr(request.node, "_raftcache_keep_logs", False):
            # The test already failed (its report has the logs): no second failure.
            print("\n" + "\n".join(problems))
        else:
            pytest.fail("\n".join(problems), pytrace=False)

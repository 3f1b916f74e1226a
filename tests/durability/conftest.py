"""Fixtures for the durability tests (see dharness.py).

``make_dcluster(n=3, args=(...), data=True, start=True)`` builds a
``DurableCluster`` (each node with its own ``--data-dir``, or memory-only with
``data=False``) and stops it at teardown: SIGCONT to paused nodes, then SIGTERM
(SIGKILL after 10 s) to each node this harness started, by pid.

As in tests/cluster: ``RAFTCACHE_BIN`` is required (tests fail, never skip,
without it); a test fails at teardown if a node exited without the harness
ending it or if a node log reports a panic; a failed test gets every node's
log attached and its work directory kept.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, List

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dharness import DurableCluster, HarnessError, raftcache_bin  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _require_binary():
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
                        f"node {m} log ({node.log_path}; data {node.data_dir}; resp "
                        f"{node.resp_port}, raft {node.raft_port}, admin {node.admin_port})",
                        text or "<empty>",
                    )
                )


@pytest.fixture
def make_dcluster(request) -> Callable[..., DurableCluster]:
    clusters: List[DurableCluster] = []
    request.node._raftcache_clusters = clusters

    def make(n: int = 3, args=(), data: bool = True, start: bool = True) -> DurableCluster:
        cluster = DurableCluster(n, args, data=data)
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
            print(f"\nnode logs and data kept in {cluster.workdir}")
        else:
            import shutil

            shutil.rmtree(cluster.workdir, ignore_errors=True)
    if problems:
        if getattr(request.node, "_raftcache_keep_logs", False):
            print("\n" + "\n".join(problems))
        else:
            pytest.fail("\n".join(problems), pytrace=False)

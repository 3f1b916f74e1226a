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
from typing import Callable

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Cluster, HarnessError, attach_logs, managed_clusters, raftcache_bin  # noqa: E402


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
    attach_logs(item, outcome.get_result())


@pytest.fixture
def make_cluster(request) -> Callable[..., Cluster]:
    """Factory: make_cluster(n=3, args=(...), start=True) -> Cluster."""
    yield from managed_clusters(request, lambda n=3, args=(): Cluster(n, args))

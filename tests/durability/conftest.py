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
from typing import Callable

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dharness import DurableCluster, HarnessError, raftcache_bin  # noqa: E402
from harness import attach_logs, managed_clusters  # noqa: E402  (on the path via dharness)


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
def make_dcluster(request) -> Callable[..., DurableCluster]:
    """Factory: make_dcluster(n=3, args=(...), data=True, start=True) -> DurableCluster."""
    yield from managed_clusters(
        request, lambda n=3, args=(), data=True: DurableCluster(n, args, data=data)
    )

"""The "nodes" a transaction, scripting or client-library test talks to, and
the switch that runs those tests against one real redis-server instead.

Normally the ``nodes`` fixture is a three-node raftcache cluster (started with
the conftest's ``make_cluster``): ``nodes.leader`` and ``nodes.followers`` are
member ids, ``nodes.client(m)`` is a redis-py client to member m, and
``nodes.check_replicas()`` asserts that the replicas hold the same data (admin
``Digest`` at the same applied index).

With ``RAFTCACHE_TEST_AGAINST_REDIS=1`` the fixture is ONE real redis-server
(``redis-server`` on PATH, Redis 7.0 here) on a free loopback port, started
with ``--save "" --appendonly no`` and stopped by pid at teardown; every
"node" (member 1 plays the leader, 2 and 3 the followers) is that server, so
"write through one node, read through another" still holds, and
``check_replicas()`` has nothing to compare. That is how the expectations of
these tests were checked before raftcache implemented MULTI/EXEC and Lua.
Tests that need a real raftcache fault (kill -9 of a leader, a restarted
follower) take ``make_fault_cluster`` instead, which under the switch skips
the test as not applicable; without the switch nothing here ever skips, and
``RAFTCACHE_BIN`` is required as in the rest of the cluster suite.

The switch is honoured only by the test files that import these fixtures
(``test_transactions.py``, ``test_scripting.py``, ``test_libraries.py``).

Also here: ``run_processes`` (worker processes, spawn start method, each with
its own client to its own node) and small polling helpers.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import queue as queue_mod
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import pytest
import redis
import redis.asyncio

from harness import Cluster, HarnessError, answers_ping, free_ports, no_retry, raftcache_bin

SWITCH = "RAFTCACHE_TEST_AGAINST_REDIS"
AGAINST_REDIS = os.environ.get(SWITCH, "") not in ("", "0")
NOT_APPLICABLE = (
    f"not applicable with {SWITCH}=1: needs kill -9 / restart of raftcache nodes "
    "(one redis-server has no leader to kill and no replicated script cache)"
)
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

# Workers use the spawn start method: the parent may hold gRPC channels (the
# admin Digest) and threads, which a forked child must not inherit.
MP = multiprocessing.get_context("spawn")


# --- one real redis-server ---------------------------------------------------------

_redis_started: List[subprocess.Popen] = []


def _kill_redis_leftovers() -> None:
    for proc in _redis_started:
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except OSError:
                pass


atexit.register(_kill_redis_leftovers)


class RedisServer:
    """One redis-server process on a free loopback port, owned by one test."""

    def __init__(self) -> None:
        self.bin = shutil.which("redis-server")
        if self.bin is None:
            raise HarnessError(
                f"{SWITCH}=1 needs redis-server on PATH (apt-get install redis-server)")
        self.workdir = tempfile.mkdtemp(prefix="raftcache-vs-redis-")
        self.log_path = os.path.join(self.workdir, "redis.log")
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "RedisServer":
        last = ""
        for _attempt in range(3):  # a probed free port can be taken meanwhile
            self.port = free_ports(1)[0]
            argv = [self.bin, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", self.workdir, "--logfile", self.log_path]
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            _redis_started.append(self.proc)
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                if answers_ping(self.port):
                    return self
                time.sleep(0.02)
            self.stop()
            last = f"{' '.join(argv)} did not answer PING; log:\n{self.log()}"
        raise HarnessError(last)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM by pid, SIGKILL after STOP_TIMEOUT."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT)

    def log(self) -> str:
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except OSError as e:
            return f"<cannot read {self.log_path}: {e}>"


# --- the nodes a test talks to --------------------------------------------------------


class Nodes:
    """Three members, a leader and two followers, of raftcache or of one redis-server."""

    def __init__(self, cluster: Optional[Cluster] = None, server: Optional[RedisServer] = None):
        assert (cluster is None) != (server is None)
        self.cluster = cluster
        self.server = server
        if cluster is not None:
            self.leader = cluster.leader()
            self.followers = sorted(m for m in cluster.nodes if m != self.leader)
        else:
            self.leader, self.followers = 1, [2, 3]
        self._clients: List[object] = []

    @property
    def kind(self) -> str:
        return "raftcache" if self.cluster is not None else "redis"

    @property
    def members(self) -> List[int]:
        """Leader first, then the followers."""
        return [self.leader, *self.followers]

    def via(self, name: str) -> int:
        """'leader' or 'follower' (the first follower) -> member id."""
        return self.leader if name == "leader" else self.followers[0]

    def other(self, m: int) -> int:
        """A member other than m (the next one in members())."""
        ms = self.members
        return ms[(ms.index(m) + 1) % len(ms)]

    def port(self, m: int) -> int:
        if self.cluster is not None:
            return self.cluster.nodes[m].resp_port
        assert m in (1, 2, 3), m
        return self.server.port

    def ports(self) -> List[int]:
        """One port per member, leader first."""
        return [self.port(m) for m in self.members]

    def url(self, m: int, scheme: str = "redis") -> str:
        return f"{scheme}://127.0.0.1:{self.port(m)}/0"

    def client(self, m: int, **kwargs) -> redis.Redis:
        """A sync redis-py client (str replies, no client-side retries), closed at teardown."""
        c = redis.Redis(host="127.0.0.1", port=self.port(m), **client_kwargs(kwargs))
        self._clients.append(c)
        return c

    def async_client(self, m: int, **kwargs) -> redis.asyncio.Redis:
        """A redis.asyncio client; the test closes it (aclose) on its own loop."""
        return redis.asyncio.Redis(host="127.0.0.1", port=self.port(m), **client_kwargs(kwargs))

    def check_replicas(self) -> None:
        """raftcache: every replica at the same applied index holds the same data."""
        if self.cluster is not None:
            self.cluster.assert_digests_equal()

    def close(self) -> None:
        for c in self._clients:
            try:
                c.close()
            except Exception:  # noqa: BLE001 (teardown of a possibly dead connection)
                pass


def client_kwargs(kwargs: Dict) -> Dict:
    """The defaults every client in these tests gets (the harness's)."""
    kwargs = dict(kwargs)
    kwargs.setdefault("decode_responses", True)
    kwargs.setdefault("socket_timeout", 20)
    kwargs.setdefault("socket_connect_timeout", 5)
    kwargs.setdefault("retry", no_retry())
    return kwargs


# --- fixtures (imported by the test modules that honour the switch) ---------------------


@pytest.fixture(scope="session", autouse=True)
def _require_binary():
    """Overrides the conftest's: RAFTCACHE_BIN is required unless the switch is on."""
    try:
        if AGAINST_REDIS:
            if shutil.which("redis-server") is None:
                raise HarnessError(f"{SWITCH}=1 needs redis-server on PATH")
        else:
            raftcache_bin()
    except HarnessError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def nodes(request) -> Nodes:
    """A three-node raftcache cluster, or with the switch one real redis-server."""
    if AGAINST_REDIS:
        server = RedisServer().start()
        n = Nodes(server=server)
        yield n
        n.close()
        died = not server.alive()
        server.stop()
        if not died:
            shutil.rmtree(server.workdir, ignore_errors=True)
        else:
            pytest.fail(f"redis-server (port {server.port}) exited during the test; "
                        f"log in {server.log_path}", pytrace=False)
    else:
        cluster = request.getfixturevalue("make_cluster")(3)
        n = Nodes(cluster=cluster)
        yield n
        n.close()


@pytest.fixture
def make_fault_cluster(request) -> Callable[..., Cluster]:
    """make_cluster for tests that kill or restart raftcache nodes; skipped
    (not applicable) only under the switch."""
    if AGAINST_REDIS:
        pytest.skip(NOT_APPLICABLE)
    return request.getfixturevalue("make_cluster")


# --- worker processes ---------------------------------------------------------------


def run_processes(target: Callable, ports: Sequence[int], n: int, args: Iterable = (),
                  timeout: float = 180.0) -> List[tuple]:
    """Runs n processes ``target(idx, port, barrier, out, *args)``, worker idx
    on ports[idx % len(ports)] (so spread over every node), and returns their
    results: each worker puts exactly one tuple ``(idx, "ok"|"error", ...)``
    on ``out``. The first error ends the wait (no use waiting for workers
    that may be blocked behind it, e.g. on a lock it never released); workers
    still alive then, or after the timeout, are killed by pid."""
    barrier = MP.Barrier(n)
    out = MP.Queue()
    args = tuple(args)
    procs = [MP.Process(target=target, args=(i, ports[i % len(ports)], barrier, out, *args),
                        daemon=True) for i in range(n)]
    for p in procs:
        p.start()
    results = []
    deadline = time.monotonic() + timeout
    try:
        while len(results) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                results.append(out.get(timeout=left))
            except queue_mod.Empty:
                break
            if results[-1][1] != "ok":
                deadline = min(deadline, time.monotonic() + 2.0)  # collect a few more reports
                while len(results) < n and time.monotonic() < deadline:
                    try:
                        results.append(out.get(timeout=max(0.01, deadline - time.monotonic())))
                    except queue_mod.Empty:
                        break
                break
    finally:
        for p in procs:
            p.join(timeout=max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
    errors = [r for r in results if r[1] != "ok"]
    assert not errors, f"worker errors: {errors}"
    assert len(results) == n, f"only {len(results)} of {n} workers reported within {timeout}s"
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return sorted(results)


def worker_client(port: int) -> redis.Redis:
    """The client a worker process uses (same defaults as Nodes.client)."""
    return redis.Redis(host="127.0.0.1", port=port, **client_kwargs({}))


def limits_worker(idx, port, barrier, out, strategy, limit, hits):
    """test_libraries' worker: ``hits`` hits of the limits strategy on one
    shared limit; reports how many were allowed. It lives here because a
    spawned worker imports the module of its function, and test_libraries
    imports FastAPI and friends (seconds per process on two cores)."""
    try:
        from limits import RateLimitItemPerHour, strategies
        from limits.storage import storage_from_string

        limiter = {
            "fixed": strategies.FixedWindowRateLimiter,
            "moving": strategies.MovingWindowRateLimiter,
            "sliding": strategies.SlidingWindowCounterRateLimiter,
        }[strategy](storage_from_string(f"redis://127.0.0.1:{port}/0", socket_timeout=20))
        item = RateLimitItemPerHour(limit)
        assert limiter.storage.check()
        barrier.wait(timeout=60)
        allowed = sum(1 for _ in range(hits) if limiter.hit(item, "shared", "key"))
        out.put((idx, "ok", allowed))
    except BaseException as e:  # everything is reported to the parent
        out.put((idx, "error", f"{type(e).__name__}: {e}"))


def wait_until(what: str, predicate: Callable[[], object], timeout: float = 20.0,
               poll: float = 0.02) -> object:
    """Polls predicate() until it returns a true value (returned); fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)

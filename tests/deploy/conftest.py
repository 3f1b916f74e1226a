"""Shared helpers for the deployment tests.

``test_manifests.py`` and ``test_systemd.py`` only read files. The Docker
tests (``test_compose.py``) need a reachable Docker daemon and Compose
(``docker compose`` v2 or ``docker-compose`` v1, whichever answers): without
them every Docker test FAILS with the reason (never skips).

- ``docker_image``: the image under test. ``$RAFTCACHE_IMAGE`` if set (it
  must exist); otherwise ``raftcache:<git short sha>`` when the tracked files
  are committed and such an image exists; otherwise ``deploy/image/build.sh``
  builds it (``cargo build --release``, then ``docker build``).
- ``compose_cluster()``: starts ``deploy/docker-compose.yml`` under a unique
  project name (``raftcache-test-<random>``) with RESP ports chosen free at
  test time, and waits until the three containers are healthy. At teardown,
  pass or fail, ``down -v --remove-orphans`` removes its containers, network
  and volumes (and whatever of them is left is removed by label); a failed
  test gets every container's log attached to its report.

Only containers, networks and volumes of the project names made here are
ever touched.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
BUILD_SCRIPT = DEPLOY / "image" / "build.sh"
SERVICES = ("node1", "node2", "node3")
POLL = 0.2


class DeployError(AssertionError):
    """A docker command failed or a wait ran out of time (fails the test)."""


# --- running commands -------------------------------------------------------------


def run(argv: List[str], *, timeout: float = 120, check: bool = True,
        env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Runs a command, capturing its output; `check`: fail on a non-zero exit."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                           stdin=subprocess.DEVNULL)
    except FileNotFoundError as e:
        raise DeployError(f"{argv[0]}: not installed ({e})") from None
    except subprocess.TimeoutExpired as e:
        raise DeployError(f"{' '.join(argv)}: no exit within {timeout}s\n"
                          f"stdout: {e.stdout}\nstderr: {e.stderr}") from None
    if check and p.returncode != 0:
        raise DeployError(f"{' '.join(argv)} exited with {p.returncode}\n"
                          f"stdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return run(["docker", *args], timeout=timeout, check=check)


_docker_checked: Optional[List[str]] = None


def require_docker() -> List[str]:
    """Checks the docker CLI, the daemon and Compose; returns the Compose
    command (["docker", "compose"] or ["docker-compose"]). Raises if any is
    missing: the Docker tests are never skipped."""
    global _docker_checked
    if _docker_checked is not None:
        return _docker_checked
    if shutil.which("docker") is None:
        raise DeployError("the docker CLI is not installed: the Docker deployment tests need it")
    p = run(["docker", "version", "--format", "{{.Server.Version}}"], timeout=30, check=False)
    if p.returncode != 0:
        why = p.stderr.strip() or p.stdout.strip()
        raise DeployError(f"the Docker daemon is unreachable: {why}")
    if run(["docker", "compose", "version"], timeout=30, check=False).returncode == 0:
        compose = ["docker", "compose"]
    elif shutil.which("docker-compose") and run(["docker-compose", "version"], timeout=30,
                                                check=False).returncode == 0:
        compose = ["docker-compose"]
    else:
        raise DeployError("neither `docker compose` (v2) nor `docker-compose` (v1) works")
    _docker_checked = compose
    return compose


def require_redis_cli() -> str:
    path = shutil.which("redis-cli")
    if path is None:
        raise DeployError("redis-cli is not installed (Debian: apt-get install redis-tools)")
    return path


def free_ports(n: int) -> List[int]:
    """n distinct free ports on 127.0.0.1 (held open together while choosing)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def parse_info(text: str) -> Dict[str, str]:
    """INFO text → {field: value}."""
    fields = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            k, v = line.split(":", 1)
            fields[k] = v
    return fields


def no_retry() -> Retry:
    """redis-py retries nothing: a test sees every error."""
    return Retry(NoBackoff(), 0)


def wait_for(what: str, check: Callable[[], bool], timeout: float,
             diagnose: Callable[[], str] = lambda: "") -> None:
    """Polls `check` until it is true; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (redis.exceptions.RedisError, OSError, DeployError):
            pass
        if time.monotonic() >= deadline:
            raise DeployError(f"timed out after {timeout}s waiting for {what}. {diagnose()}")
        time.sleep(POLL)


def node_flags() -> set:
    """The long flags raftcache has: the fields of `Args` in
    crates/node/src/config.rs (`pub data_dir` → `--data-dir`), and
    --help/--version."""
    text = (REPO / "crates" / "node" / "src" / "config.rs").read_text()
    args = text.split("pub struct Args")[1].split("\n}\n")[0]
    names = re.findall(r"^\s*pub (\w+):", args, re.M)
    return {"--" + n.replace("_", "-") for n in names} | {"--help", "--version"}


@pytest.fixture(scope="session")
def helpers() -> SimpleNamespace:
    """This module's helpers for the test modules (which cannot import a
    conftest reliably: another suite's conftest may hold the name)."""
    return SimpleNamespace(SERVICES=SERVICES, DeployError=DeployError, run=run, docker=docker,
                           require_redis_cli=require_redis_cli, wait_for=wait_for,
                           parse_info=parse_info, free_ports=free_ports,
                           node_flags=node_flags)


# --- the image ------------------------------------------------------------------------


def git(*args: str) -> str:
    return run(["git", "-C", str(REPO), *args], timeout=30).stdout.strip()


def image_exists(ref: str) -> bool:
    return docker("image", "inspect", ref, check=False, timeout=30).returncode == 0


@pytest.fixture(scope="session")
def docker_image() -> str:
    """The image the tests run (see the module docstring)."""
    try:
        require_docker()
        given = os.environ.get("RAFTCACHE_IMAGE")
        if given:
            if not image_exists(given):
                raise DeployError(f"RAFTCACHE_IMAGE={given!r} does not exist")
            return given
        short = git("rev-parse", "--short", "HEAD")
        clean = git("status", "--porcelain", "--untracked-files=no") == ""
        ref = f"raftcache:{short}" if clean else f"raftcache:{short}-dirty"
        if clean and image_exists(ref):
            return ref
        # Builds the release binaries when needed: minutes on a cold target dir.
        run([str(BUILD_SCRIPT)], timeout=3600,
            env=dict(os.environ, TAG=ref.split(":", 1)[1]))
        if not image_exists(ref):
            raise DeployError(f"{BUILD_SCRIPT} ran but there is no image {ref}")
        return ref
    except DeployError as e:
        pytest.fail(str(e), pytrace=False)


# --- a compose cluster ----------------------------------------------------------------

_projects: List["ComposeCluster"] = []


def _down_leftovers() -> None:
    """Last resort (an interrupted run): take down every project started here."""
    for cluster in _projects:
        if not cluster.down_done:
            try:
                cluster.down()
            except Exception:  # noqa: BLE001 - best effort at exit
                pass


atexit.register(_down_leftovers)


@dataclass
class Node:
    service: str
    member: int
    port: int  # the published RESP port on 127.0.0.1


class ComposeCluster:
    """deploy/docker-compose.yml under a project name of its own."""

    def __init__(self, image: str):
        self.compose = require_docker()
        self.project = f"raftcache-test-{secrets.token_hex(4)}"
        ports = free_ports(len(SERVICES))
        self.nodes: Dict[str, Node] = {
            s: Node(s, i + 1, ports[i]) for i, s in enumerate(SERVICES)
        }
        self.env = dict(os.environ, RAFTCACHE_IMAGE=image, RAFTCACHE_PUBLISH_ADDR="127.0.0.1",
                        **{f"RAFTCACHE_PORT_{n.member}": str(n.port) for n in self.nodes.values()})
        self.env.pop("COMPOSE_PROJECT_NAME", None)
        self.down_done = False
        self._ids: Dict[str, str] = {}

    # -- compose --

    def compose_run(self, *args: str, timeout: float = 180, check: bool = True):
        argv = [*self.compose, "-p", self.project, "-f", str(COMPOSE_FILE), *args]
        return run(argv, timeout=timeout, check=check, env=self.env)

    def up(self, timeout: float = 120) -> "ComposeCluster":
        _projects.append(self)
        self.compose_run("up", "-d", timeout=timeout)
        self.wait_healthy(timeout=timeout)
        return self

    def down(self) -> None:
        """Removes the project's containers, network and volumes, then checks
        by label that nothing of it is left (and removes what is)."""
        self.down_done = True
        errors = []
        p = self.compose_run("down", "-v", "--remove-orphans", "-t", "10", check=False,
                             timeout=180)
        if p.returncode != 0:
            errors.append(f"down: {p.stderr.strip()}")
        label = f"label=com.docker.compose.project={self.project}"
        left = docker("ps", "-aq", "--filter", label, check=False).stdout.split()
        if left:
            docker("rm", "-f", "-v", *left, check=False)
        for kind in ("volume", "network"):
            names = docker(kind, "ls", "-q", "--filter", label, check=False).stdout.split()
            if names:
                docker(kind, "rm", *names, check=False)
        if errors:
            raise DeployError("; ".join(errors))

    def container(self, service: str) -> str:
        """The container id of a service."""
        if service not in self._ids:
            cid = self.compose_run("ps", "-q", service, timeout=60).stdout.strip()
            if not cid:
                raise DeployError(f"no container for {service} in {self.project}")
            self._ids[service] = cid
        return self._ids[service]

    def state(self, service: str) -> dict:
        out = docker("inspect", "--format", "{{json .State}}", self.container(service)).stdout
        return json.loads(out)

    def health(self, service: str) -> str:
        """starting, healthy, unhealthy, or the container's status if not running."""
        state = self.state(service)
        if state.get("Status") != "running":
            return state.get("Status", "?")
        return (state.get("Health") or {}).get("Status", "none")

    def wait_healthy(self, services=SERVICES, timeout: float = 120) -> None:
        def all_healthy():
            for s in services:
                h = self.health(s)
                if h in ("exited", "dead"):
                    raise DeployError(f"{s} is {h}:\n{self.logs(s)[-4000:]}")
            return all(self.health(s) == "healthy" for s in services)

        wait_for(f"{', '.join(services)} to be healthy", all_healthy, timeout,
                 diagnose=lambda: str({s: self.health(s) for s in services}))

    def logs(self, service: str) -> str:
        p = docker("logs", "--timestamps", self.container(service), check=False)
        return p.stdout + p.stderr

    def all_logs(self) -> Dict[str, str]:
        out = {}
        for s in SERVICES:
            try:
                out[s] = self.logs(s)
            except DeployError as e:
                out[s] = f"<no log: {e}>"
        return out

    # -- containers --

    def kill(self, service: str) -> None:
        docker("kill", self.container(service))

    def start(self, service: str) -> None:
        docker("start", self.container(service))

    def restart(self, service: str, stop_timeout: int = 20) -> None:
        docker("restart", "-t", str(stop_timeout), self.container(service), timeout=120)

    def exec(self, service: str, *argv: str, check: bool = False, timeout: float = 60):
        return docker("exec", self.container(service), *argv, check=check, timeout=timeout)

    def ctl(self, service: str, *args: str, timeout: float = 60):
        """raftcachectl inside a container, every node's admin port by name."""
        endpoints = ",".join(f"{s}:7379" for s in SERVICES)
        return self.exec(service, "/usr/local/bin/raftcachectl", "--endpoints", endpoints,
                         *args, timeout=timeout)

    # -- clients --

    def client(self, service: str, **kwargs) -> redis.Redis:
        kwargs.setdefault("decode_responses", True)
        kwargs.setdefault("socket_timeout", 10)
        kwargs.setdefault("socket_connect_timeout", 5)
        kwargs.setdefault("retry", no_retry())
        return redis.Redis(host="127.0.0.1", port=self.nodes[service].port, **kwargs)

    def info(self, service: str) -> Dict[str, str]:
        """INFO replication of a node, through its published port."""
        c = self.client(service, socket_timeout=3, socket_connect_timeout=3)
        try:
            conn = c.connection_pool.get_connection()
            try:
                conn.send_command("INFO", "replication")
                reply = conn.read_response()
            finally:
                c.connection_pool.release(conn)
        finally:
            c.close()
        return parse_info(reply if isinstance(reply, str) else reply.decode())

    def leader(self, services=SERVICES, timeout: float = 30) -> str:
        """The service whose node says raft_role:leader, once every given
        node names the same leader."""
        found = {}

        def agreed():
            infos = {s: self.info(s) for s in services}
            leaders = [s for s, i in infos.items() if i.get("raft_role") == "leader"]
            if len(leaders) != 1:
                return False
            leader_id = infos[leaders[0]]["raft_node_id"]
            if any(i.get("raft_leader_id") != leader_id for i in infos.values()):
                return False
            found["leader"] = leaders[0]
            return True

        wait_for(f"one leader among {services}", agreed, timeout)
        return found["leader"]

    def wait_ready(self, service: str, timeout: float = 60) -> None:
        """Until INFO replication says raft_ready:1 (a voter of a settled
        membership with a leader: the signal of a rolling restart)."""
        wait_for(f"{service} to report raft_ready:1",
                 lambda: self.info(service).get("raft_ready") == "1", timeout,
                 diagnose=lambda: self._info_or_error(service))

    def _info_or_error(self, service: str) -> str:
        try:
            return str(self.info(service))
        except Exception as e:  # noqa: BLE001 - a diagnosis
            return f"INFO failed: {e}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for cluster in getattr(item, "_compose_clusters", []):
            if cluster.down_done:
                continue
            for service, text in cluster.all_logs().items():
                tail = text[-200_000:]
                report.sections.append((f"{cluster.project} {service} log", tail or "<empty>"))


@pytest.fixture
def compose_cluster(request, docker_image) -> Callable[[], ComposeCluster]:
    """Factory: compose_cluster() starts a cluster and waits until healthy."""
    clusters: List[ComposeCluster] = []
    request.node._compose_clusters = clusters

    def make() -> ComposeCluster:
        cluster = ComposeCluster(docker_image)
        clusters.append(cluster)
        try:
            return cluster.up()
        except DeployError as e:
            pytest.fail(f"{cluster.project}: {e}", pytrace=False)

    yield make
    failures = []
    for cluster in clusters:
        try:
            cluster.down()
        except DeployError as e:
            failures.append(f"{cluster.project}: {e}")
    if failures:
        pytest.fail("tearing down: " + "; ".join(failures), pytrace=False)

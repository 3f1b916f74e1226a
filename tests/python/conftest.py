"""Fixtures for the real-client tests: a fresh raftcache server per test.

The server binary comes from the environment variable ``RAFTCACHE_BIN``. When
it is unset or does not exist every test that needs a server FAILS (it is
never skipped). Each server is started on a free loopback port with
``--port N --bind 127.0.0.1`` (plus ``--requirepass`` for ``auth_server``),
its stdout/stderr go to a temporary log file, the fixture waits until it
answers PING, and at teardown it is stopped by pid: SIGTERM, then SIGKILL
after a timeout. The log is attached to the report of a failing test.

A server that died during a test (crash, panic, abort) fails that test at
teardown.

Pointing ``RAFTCACHE_BIN`` at a real ``redis-server`` runs the suite against
Redis itself (``--save "" --appendonly no`` are added), which is how the
expectations in these tests were checked.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import pytest
import redis

START_TIMEOUT = 20.0  # seconds until the first PING must be answered
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
PASSWORD = "s3cret-pw"


def server_bin() -> str:
    """The server binary from RAFTCACHE_BIN; fails the test if unusable."""
    bin_path = os.environ.get("RAFTCACHE_BIN")
    if not bin_path:
        pytest.fail(
            "RAFTCACHE_BIN is not set: set it to the raftcache server binary, e.g. "
            "RAFTCACHE_BIN=$PWD/target/debug/raftcache (these tests are never skipped)",
            pytrace=False,
        )
    if not os.path.isfile(bin_path) or not os.access(bin_path, os.X_OK):
        pytest.fail(
            f"RAFTCACHE_BIN={bin_path!r} is not an executable file "
            "(build it with `cargo build -p raftcache-node`)",
            pytrace=False,
        )
    return bin_path


def is_real_redis() -> bool:
    return os.path.basename(os.environ.get("RAFTCACHE_BIN", "")).startswith("redis-server")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(256)
                if not chunk:
                    return False
                data += chunk
            # A password-protected server answers -NOAUTH: it is up as well.
            return data.startswith(b"+PONG") or data.startswith(b"-NOAUTH")
    except OSError:
        return False


@dataclass
class ServerProc:
    """One server process owned by one test."""

    port: int
    proc: subprocess.Popen
    log_path: str
    password: Optional[str] = None
    argv: List[str] = field(default_factory=list)
    exit_code: Optional[int] = None

    host = "127.0.0.1"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except OSError as e:
            return f"<cannot read {self.log_path}: {e}>"

    def client(self, **kwargs) -> redis.Redis:
        """A redis-py sync client; decode_responses defaults to True."""
        kwargs.setdefault("decode_responses", True)
        kwargs.setdefault("socket_timeout", 15)
        if self.password is not None:
            kwargs.setdefault("password", self.password)
        return redis.Redis(host=self.host, port=self.port, **kwargs)

    def async_client(self, **kwargs):
        import redis.asyncio

        kwargs.setdefault("decode_responses", True)
        kwargs.setdefault("socket_timeout", 15)
        if self.password is not None:
            kwargs.setdefault("password", self.password)
        return redis.asyncio.Redis(host=self.host, port=self.port, **kwargs)

    def stop(self) -> Optional[int]:
        """SIGTERM by pid, then SIGKILL after STOP_TIMEOUT. Idempotent."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT)
        return self.proc.returncode


def _start(extra_args: List[str], password: Optional[str]) -> ServerProc:
    bin_path = server_bin()
    last_error = ""
    for _attempt in range(3):  # a probed free port can be taken meanwhile: retry
        port = free_port()
        fd, log_path = tempfile.mkstemp(prefix=f"raftcache-{port}-", suffix=".log")
        argv = [bin_path, "--port", str(port), "--bind", "127.0.0.1"]
        if is_real_redis():
            argv += ["--save", "", "--appendonly", "no"]
        else:
            # A one-node cluster; its Raft, admin and metrics ports are picked
            # by the OS (a test that scrapes metrics passes its own --metrics-port).
            argv += ["--raft-port", "0", "--admin-port", "0"]
            if "--metrics-port" not in extra_args:
                argv += ["--metrics-port", "0"]
        if password is not None:
            argv += ["--requirepass", password]
        argv += extra_args
        with os.fdopen(fd, "wb") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tempfile.gettempdir(),
                env=dict(os.environ, NO_COLOR="1"),  # plain text in the log
            )
        srv = ServerProc(port=port, proc=proc, log_path=log_path, password=password, argv=argv)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not srv.alive():
                break
            if _answers_ping(port):
                return srv
            time.sleep(0.02)
        code = srv.stop()
        last_error = (
            f"{' '.join(argv)} did not answer PING (exit code {code})\n"
            f"--- server log ---\n{srv.log()}"
        )
    pytest.fail(f"could not start the server: {last_error}", pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for srv in getattr(item, "_raftcache_servers", []):
            report.sections.append(
                (
                    f"raftcache server log (pid {srv.pid}, port {srv.port}, {srv.log_path})",
                    srv.log() or "<empty>",
                )
            )


@pytest.fixture
def start_server(request) -> Callable[..., ServerProc]:
    """Factory: start_server(*extra_args, password=None) -> ServerProc.

    Every server started through it is stopped at teardown; one that exited
    on its own during the test fails the test.
    """
    started: List[ServerProc] = []
    request.node._raftcache_servers = started

    def start(*extra_args: str, password: Optional[str] = None) -> ServerProc:
        srv = _start(list(extra_args), password)
        started.append(srv)
        return srv

    yield start

    died = []
    for srv in started:
        if not srv.alive():
            died.append(srv)
        srv.exit_code = srv.stop()
    for srv in started:
        if srv not in died:
            try:
                os.unlink(srv.log_path)
            except OSError:
                pass
    if died:
        msgs = "\n".join(
            f"server pid {s.pid} (port {s.port}) exited during the test with code "
            f"{s.proc.returncode} (its log is in the report section below)"
            for s in died
        )
        pytest.fail(msgs, pytrace=False)


@pytest.fixture
def server(start_server) -> ServerProc:
    """A fresh server without a password."""
    return start_server()


@pytest.fixture
def auth_server(start_server) -> ServerProc:
    """A fresh server started with --requirepass PASSWORD."""
    return start_server(password=PASSWORD)


@pytest.fixture
def r(server) -> redis.Redis:
    """A redis-py sync client (installed redis-py's default protocol), str replies."""
    client = server.client()
    yield client
    client.close()

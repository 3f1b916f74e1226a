"""A harness for cluster tests: real raftcache node processes on loopback.

``Cluster(n, args)`` picks free loopback ports, starts ``n`` node processes of
``$RAFTCACHE_BIN`` with the same ``--peers`` list (each with its own RESP, Raft
and admin port), and captures each node's stdout/stderr in its own log file
(a restarted node appends to the same file, after a ``=== start #k ===``
line). Faults are real: ``kill9`` sends SIGKILL, ``sigstop``/``sigcont``
pause and resume a process, ``restart`` starts the same argv again.

Observation goes through the nodes' own interfaces: ``INFO replication``
(``leader()``, ``info()``) and the admin gRPC service's ``Digest``
(``digests()``), whose Python stubs are generated from ``proto/admin.proto``
with grpcio-tools into a temporary directory on first use.

Every wait is a poll with a deadline: nothing here sleeps for a fixed time
to let the cluster "settle".
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

REPO = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "proto"

START_TIMEOUT = 30.0  # until a started node answers PING
STOP_TIMEOUT = 10.0  # between SIGTERM and SIGKILL at teardown
POLL = 0.05  # seconds between polls


class HarnessError(AssertionError):
    """A wait in the harness ran out of time (fails the test)."""


def raftcache_bin() -> str:
    """The node binary from RAFTCACHE_BIN. Raises (never skips) if unusable."""
    path = os.environ.get("RAFTCACHE_BIN")
    if not path:
        raise HarnessError(
            "RAFTCACHE_BIN is not set: set it to the raftcache binary, e.g. "
            "RAFTCACHE_BIN=$PWD/target/debug/raftcache (cluster tests are never skipped)"
        )
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise HarnessError(
            f"RAFTCACHE_BIN={path!r} is not an executable file "
            "(build it with `cargo build -p raftcache-node`)"
        )
    return path


def raftcachectl_bin() -> str:
    """The admin CLI from RAFTCACHECTL_BIN, by default `raftcachectl` beside
    the node binary (both are built into the same target directory). Raises
    (never skips) if unusable."""
    path = os.environ.get("RAFTCACHECTL_BIN") or os.path.join(
        os.path.dirname(raftcache_bin()), "raftcachectl"
    )
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise HarnessError(
            f"raftcachectl binary {path!r} is not an executable file: build it with "
            "`cargo build -p raftcache-ctl` or set RAFTCACHECTL_BIN"
        )
    return path


def free_ports(n: int) -> List[int]:
    """n distinct free loopback ports (all held open while choosing)."""
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


def answers_ping(port: int, timeout: float = 1.0) -> bool:
    """True if a RESP server on the port answers PING within `timeout`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(256)
                if not chunk:
                    return False
                data += chunk
            return data.startswith(b"+PONG")
    except OSError:
        return False


def no_retry() -> Retry:
    """A redis-py Retry that never retries (a retried write could run twice)."""
    return Retry(NoBackoff(), 0)


def parse_info(text: str) -> Dict[str, str]:
    """INFO text → {field: value} (values left as strings)."""
    fields: Dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        k, v = line.split(":", 1)
        fields[k] = v
    return fields


def members_of(info: Dict[str, str]) -> Dict[str, str]:
    """raft_members → {raft node id "m.i": "addr" or "addr(learner)"}."""
    out = {}
    for item in filter(None, info.get("raft_members", "").split(",")):
        node_id, _, addr = item.partition("@")
        out[node_id] = addr
    return out


def error_kind(e: BaseException) -> str:
    """Classifies an exception from a redis-py call.

    'clusterdown' (no leader: nothing applied), 'uncertain' (outcome unknown),
    'moved', 'connection' (socket-level: refused, reset, timeout) or 'other'.
    """
    msg = str(e)
    if isinstance(e, redis.exceptions.ClusterDownError) or msg.startswith("CLUSTERDOWN"):
        return "clusterdown"
    if msg.startswith("UNCERTAIN"):
        return "uncertain"
    if isinstance(e, redis.exceptions.MovedError) or msg.startswith("MOVED"):
        return "moved"
    if isinstance(e, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)):
        return "connection"
    return "other"


# --- admin gRPC stubs, generated once per process -------------------------

_stub_lock = threading.Lock()
_stub_modules = None


def admin_modules():
    """(admin_pb2, admin_pb2_grpc), generated from proto/admin.proto."""
    global _stub_modules
    with _stub_lock:
        if _stub_modules is None:
            from grpc_tools import protoc  # grpcio-tools

            out = tempfile.mkdtemp(prefix="raftcache-admin-stubs-")
            rc = protoc.main(
                [
                    "grpc_tools.protoc",
                    f"-I{PROTO_DIR}",
                    f"--python_out={out}",
                    f"--grpc_python_out={out}",
                    str(PROTO_DIR / "admin.proto"),
                ]
            )
            if rc != 0:
                raise HarnessError(f"protoc failed ({rc}) on {PROTO_DIR / 'admin.proto'}")
            sys.path.insert(0, out)
            import admin_pb2  # noqa: E402
            import admin_pb2_grpc  # noqa: E402

            _stub_modules = (admin_pb2, admin_pb2_grpc)
        return _stub_modules


@dataclass(frozen=True)
class Digest:
    member: int
    applied_index: int
    digest: str
    keys: int


# --- processes started by this harness, ended at exit if still running ---------

_started: List["Node"] = []


def _kill_leftovers() -> None:
    """Last resort (e.g. the test run was interrupted): SIGKILL, by pid, every
    node process this harness started that still runs."""
    for node in _started:
        if node.proc is not None and node.proc.poll() is None:
            try:
                os.kill(node.proc.pid, signal.SIGCONT)
                os.kill(node.proc.pid, signal.SIGKILL)
            except OSError:
                pass


atexit.register(_kill_leftovers)


# --- one node -----------------------------------------------------------------


class Node:
    """One member: its ports, its current process, and its log file."""

    def __init__(self, cluster: "Cluster", member: int, resp: int, raft: int, admin: int,
                 metrics: int = 0):
        self.cluster = cluster
        self.member = member
        self.resp_port = resp
        self.raft_port = raft
        self.admin_port = admin
        # The Prometheus endpoint's port (0: the node picks one).
        self.metrics_port = metrics
        self.log_path = os.path.join(cluster.workdir, f"node{member}.log")
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0
        self.paused = False
        # Set before this harness kills the process: its exit is expected, and
        # writer threads treat connection errors to it as "outcome unknown".
        self.killed = False
        self._grpc_channel = None
        self._grpc_stub = None

    host = "127.0.0.1"

    @property
    def resp_addr(self) -> str:
        return f"{self.host}:{self.resp_port}"

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def argv(self) -> List[str]:
        return [
            self.cluster.bin,
            "--id", str(self.member),
            "--peers", self.cluster.peers_flag(),
            "--port", str(self.resp_port),
            "--raft-port", str(self.raft_port),
            "--admin-port", str(self.admin_port),
            "--metrics-port", str(self.metrics_port),
            "--bind", "127.0.0.1",
            *self.node_args(),
        ]  # fmt: skip

    def node_args(self) -> List[str]:
        """The flags after the addresses: the cluster's (subclasses add)."""
        return list(self.cluster.args)

    def describe(self) -> str:
        """Where to find this node, for a failed test's report."""
        return (f"{self.log_path}; resp {self.resp_port}, raft {self.raft_port}, "
                f"admin {self.admin_port}, metrics {self.metrics_port}")

    def spawn(self) -> None:
        assert not self.alive(), f"node {self.member} is already running"
        self.starts += 1
        argv = self.argv()
        with open(self.log_path, "ab") as log:
            log.write(f"=== start #{self.starts}: {' '.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cluster.workdir,
                # Memory-only nodes keep snapshots in a temp dir, which a
                # SIGKILLed node cannot remove: keep those in the workdir.
                env=dict(os.environ, NO_COLOR="1", TMPDIR=self.cluster.workdir),
                start_new_session=True,  # own process group: no terminal signals
            )
        self.paused = False
        self.killed = False
        if self not in _started:
            _started.append(self)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def up(self) -> bool:
        """Running and not paused."""
        return self.alive() and not self.paused

    def wait_ping(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise HarnessError(
                    f"node {self.member} exited with code {self.proc.returncode} while starting"
                )
            if answers_ping(self.resp_port):
                return
            time.sleep(POLL)
        raise HarnessError(f"node {self.member} did not answer PING within {timeout}s")

    def log(self) -> str:
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except OSError as e:
            return f"<cannot read {self.log_path}: {e}>"

    # -- signals (by pid, only to processes this harness started) --

    def kill9(self) -> None:
        assert self.alive(), f"node {self.member} is not running"
        self.killed = True
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.paused = False
        self._close_grpc()

    def sigstop(self) -> None:
        """Stops the process and waits until every thread of it is stopped:
        kill() returns once the signal is queued, and on a busy machine a
        thread may still run (and, say, acknowledge an append) for a while."""
        assert self.alive()
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True
        deadline = time.monotonic() + 10
        while not _all_threads_stopped(self.proc.pid):
            if time.monotonic() >= deadline:
                raise HarnessError(f"node {self.member} did not stop within 10 s of SIGSTOP")
            time.sleep(0.005)

    def sigcont(self) -> None:
        if self.alive():
            os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def terminate(self) -> Optional[int]:
        """SIGCONT if paused, SIGTERM, then SIGKILL after STOP_TIMEOUT."""
        self._close_grpc()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.killed = True
            if self.paused:
                os.kill(self.proc.pid, signal.SIGCONT)
                self.paused = False
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT)
        return self.proc.returncode

    # -- clients --

    def client(self, **kwargs) -> redis.Redis:
        """A redis-py client; str replies, no client-side retries."""
        kwargs.setdefault("decode_responses", True)
        kwargs.setdefault("socket_timeout", 20)
        kwargs.setdefault("socket_connect_timeout", 5)
        kwargs.setdefault("retry", no_retry())
        return redis.Redis(host=self.host, port=self.resp_port, **kwargs)

    def info(self, timeout: float = 2.0) -> Dict[str, str]:
        """INFO replication as a dict of strings."""
        r = redis.Redis(
            host=self.host,
            port=self.resp_port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
            protocol=2,
            retry=no_retry(),
        )
        try:
            return parse_info(_raw_info(r))
        finally:
            r.close()

    def metrics_text(self, timeout: float = 5.0) -> str:
        """The node's Prometheus metrics (GET /metrics on its metrics port)."""
        import urllib.request

        assert self.metrics_port, f"node {self.member} was started without a known metrics port"
        url = f"http://{self.host}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.read().decode()

    def _close_grpc(self) -> None:
        if self._grpc_channel is not None:
            self._grpc_channel.close()
        self._grpc_channel = None
        self._grpc_stub = None

    def _stub(self):
        if self._grpc_stub is None:
            import grpc

            _, admin_grpc = admin_modules()
            self._grpc_channel = grpc.insecure_channel(f"{self.host}:{self.admin_port}")
            self._grpc_stub = admin_grpc.AdminStub(self._grpc_channel)
        return self._grpc_stub

    def digest(self, timeout: float = 3.0) -> Digest:
        admin_pb2, _ = admin_modules()
        reply = self._stub().Digest(admin_pb2.DigestRequest(), timeout=timeout)
        return Digest(self.member, reply.applied_index, reply.digest, reply.keys)

    def status(self, timeout: float = 3.0):
        admin_pb2, _ = admin_modules()
        return self._stub().Status(admin_pb2.StatusRequest(), timeout=timeout)


def _all_threads_stopped(pid: int) -> bool:
    """True if every thread of pid is in state T (stopped) per /proc."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True  # gone
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                # The state follows the parenthesised command name.
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("T", "t"):
            return False
    return True


def _raw_info(r: redis.Redis) -> str:
    """INFO replication without redis-py's value parsing ("2.0" stays a str)."""
    conn = r.connection_pool.get_connection()
    try:
        conn.send_command("INFO", "replication")
        reply = conn.read_response()
    finally:
        r.connection_pool.release(conn)
    if isinstance(reply, bytes):
        reply = reply.decode()
    return str(reply)


# --- the cluster --------------------------------------------------------------


class Cluster:
    """n raftcache nodes started with the same --peers and extra flags."""

    def __init__(self, n: int = 3, args: Iterable[str] = (), workdir: Optional[str] = None):
        self.bin = raftcache_bin()
        # RAFTCACHE_NODE_ARGS: flags every node gets before the test's own
        # (scripts/test.sh runs the suite again with "--threads 1").
        self.args = os.environ.get("RAFTCACHE_NODE_ARGS", "").split() + list(args)
        self.workdir = workdir or tempfile.mkdtemp(prefix="raftcache-cluster-")
        ports = free_ports(4 * n)
        self.nodes: Dict[int, Node] = {
            m: Node(self, m, *ports[4 * (m - 1) : 4 * m]) for m in range(1, n + 1)
        }

    # -- life cycle --

    def peers_flag(self) -> str:
        return ",".join(f"{m}=127.0.0.1:{node.raft_port}" for m, node in self.nodes.items())

    def start(self, timeout: float = 40.0) -> "Cluster":
        """Starts every node, waits for each to answer PING and for a leader."""
        for node in self.nodes.values():
            node.spawn()
        deadline = time.monotonic() + timeout
        for node in self.nodes.values():
            node.wait_ping(max(1.0, deadline - time.monotonic()))
        self.wait_stable(timeout=max(1.0, deadline - time.monotonic()))
        return self

    def wait_stable(self, timeout: float = 30.0) -> int:
        """Waits for an agreed leader and a settled membership: every up node
        lists exactly one voter per member, that voter being the member's
        current incarnation, and no learners. Returns the leader."""

        def settled():
            infos = self.infos()
            if len(infos) != len(self.up()):
                return False
            current = {m: i.get("raft_node_id") for m, i in infos.items()}
            for info in infos.values():
                mem = members_of(info)
                if len(mem) != len(self.nodes) or any(a.endswith("(learner)") for a in mem.values()):
                    return False
                if any(current[m] not in mem for m in current):
                    return False
            return True

        self.wait_for("a settled membership (one voter per member, no learners)", settled,
                      timeout=timeout)
        return self.leader(timeout=timeout)

    def stop(self) -> None:
        """Stops every node (SIGCONT first if paused, then SIGTERM/SIGKILL)."""
        for node in self.nodes.values():
            if node.paused:
                node.sigcont()
        for node in self.nodes.values():
            node.terminate()

    def unexpected_exits(self) -> List[Node]:
        """Nodes whose process ended without this harness ending it."""
        return [
            n for n in self.nodes.values()
            if n.proc is not None and n.proc.poll() is not None and not n.killed
        ]  # fmt: skip

    def panics(self) -> List[str]:
        """Log lines that report a panic, over all nodes."""
        out = []
        for node in self.nodes.values():
            lines = node.log().splitlines()
            for i, line in enumerate(lines):
                # The binary's panic hook logs `ERROR raftcache: panic info=...`;
                # the assertion text follows on the next line.
                if re.search(r"\bERROR \S+: panic\b", line):
                    detail = lines[i + 1] if i + 1 < len(lines) else ""
                    out.append(f"node {node.member}: {line} {detail}".strip())
        return out

    def logs(self, max_chars: int = 300_000) -> Dict[int, str]:
        out = {}
        for m, node in self.nodes.items():
            text = node.log()
            if len(text) > max_chars:
                text = f"<first {len(text) - max_chars} chars cut>\n" + text[-max_chars:]
            out[m] = text
        return out

    # -- nodes --

    def node(self, m: int) -> Node:
        return self.nodes[m]

    def up(self) -> List[int]:
        """Members whose process runs and is not paused."""
        return [m for m, n in self.nodes.items() if n.up()]

    def client(self, m: int, **kwargs) -> redis.Redis:
        return self.nodes[m].client(**kwargs)

    def info(self, m: int) -> Dict[str, str]:
        return self.nodes[m].info()

    def kill9(self, m: int) -> None:
        self.nodes[m].kill9()

    def sigstop(self, m: int) -> None:
        self.nodes[m].sigstop()

    def sigcont(self, m: int) -> None:
        self.nodes[m].sigcont()

    def restart(self, m: int, timeout: float = START_TIMEOUT) -> None:
        """Starts member m again with the same flags (killing it first if it
        runs) and waits until it answers PING."""
        node = self.nodes[m]
        if node.alive():
            node.kill9()
        node.spawn()
        node.wait_ping(timeout)

    # -- observation --

    def infos(self, members: Optional[Iterable[int]] = None) -> Dict[int, Dict[str, str]]:
        """INFO replication of the given (default: all up) members that answer."""
        out = {}
        for m in members if members is not None else self.up():
            try:
                out[m] = self.nodes[m].info()
            except (redis.exceptions.RedisError, OSError):
                pass
        return out

    def leader(self, timeout: float = 20.0) -> int:
        """The leader's member id: polls INFO until exactly one up node says
        raft_role:leader and every other up node names it in raft_leader_id."""
        deadline = time.monotonic() + timeout
        last = {}
        next_panic_check = time.monotonic() + 1.0
        while True:
            if time.monotonic() >= next_panic_check:
                next_panic_check = time.monotonic() + 1.0
                panics = self.panics()
                if panics:
                    raise HarnessError(f"while waiting for a leader, a node panicked: {panics}")
            up = self.up()
            infos = self.infos(up)
            last = infos
            if infos and len(infos) == len(up):
                leaders = [m for m, i in infos.items() if i.get("raft_role") == "leader"]
                if len(leaders) == 1:
                    lid = infos[leaders[0]].get("raft_node_id")
                    if all(i.get("raft_leader_id") == lid for i in infos.values()):
                        return leaders[0]
            if time.monotonic() >= deadline:
                summary = {
                    m: {k: i.get(k) for k in ("raft_node_id", "raft_role", "raft_term",
                                              "raft_leader_id", "raft_applied_index")}
                    for m, i in last.items()
                }  # fmt: skip
                raise HarnessError(f"no agreed leader within {timeout}s among {up}: {summary}")
            time.sleep(POLL)

    def followers(self, leader: Optional[int] = None) -> List[int]:
        lead = leader if leader is not None else self.leader()
        return [m for m in self.up() if m != lead]

    def wait_for(
        self, what: str, predicate: Callable[[], object], timeout: float = 20.0
    ) -> object:
        """Polls predicate() until it returns a true value (returned)."""
        deadline = time.monotonic() + timeout
        last_exc = None
        next_panic_check = time.monotonic() + 1.0
        while True:
            try:
                value = predicate()
                if value:
                    return value
            except (redis.exceptions.RedisError, OSError) as e:
                last_exc = e
            if time.monotonic() >= next_panic_check:
                # A panicked Raft core never recovers: fail now, with the reason.
                next_panic_check = time.monotonic() + 1.0
                panics = self.panics()
                if panics:
                    raise HarnessError(f"while waiting for {what}, a node panicked: {panics}")
            if time.monotonic() >= deadline:
                raise HarnessError(
                    f"timed out after {timeout}s waiting for {what}"
                    + (f" (last error: {last_exc!r})" if last_exc else "")
                )
            time.sleep(POLL)

    def wait_applied_equal(
        self, timeout: float = 30.0, members: Optional[Iterable[int]] = None
    ) -> Dict[int, Digest]:
        """Polls the admin Digest of every up member until all report the same
        applied_index; returns those digests (taken at that index)."""
        import grpc

        deadline = time.monotonic() + timeout
        last: Dict[int, Digest] = {}
        errors: Dict[int, str] = {}
        while True:
            ms = list(members) if members is not None else self.up()
            got: Dict[int, Digest] = {}
            errors = {}
            for m in ms:
                try:
                    got[m] = self.nodes[m].digest()
                except grpc.RpcError as e:
                    errors[m] = f"{e.code()}: {e.details()}"
            if got:
                last = got
            if len(got) == len(ms) and len({d.applied_index for d in got.values()}) == 1:
                return got
            if time.monotonic() >= deadline:
                raise HarnessError(
                    f"applied indexes of {ms} did not become equal within {timeout}s: "
                    f"{ {m: d.applied_index for m, d in last.items()} } errors={errors}"
                )
            time.sleep(POLL)

    def digests(self, timeout: float = 30.0, members=None) -> Dict[int, Digest]:
        """The Digest of every up member, taken once all are at the same
        applied index."""
        return self.wait_applied_equal(timeout=timeout, members=members)

    def assert_digests_equal(self, timeout: float = 30.0, members=None) -> Dict[int, Digest]:
        d = self.digests(timeout=timeout, members=members)
        distinct = {x.digest for x in d.values()}
        assert len(distinct) == 1, (
            "replicas at the same applied index have different digests: "
            + ", ".join(
                f"node {m}: index {x.applied_index} keys {x.keys} digest {x.digest[:16]}"
                for m, x in d.items()
            )
        )
        return d

    def wait_voter(self, m: int, timeout: float = 30.0) -> str:
        """Waits until member m's current incarnation is a voter on every up
        node and no other incarnation of m is listed; returns its raft node id."""
        node_id = self.wait_for(
            f"node {m} to report its raft node id",
            lambda: self.nodes[m].info().get("raft_node_id"),
            timeout=timeout,
        )

        def settled():
            infos = self.infos()
            if len(infos) != len(self.up()):
                return False
            for info in infos.values():
                mem = members_of(info)
                mine = [k for k in mem if k.split(".")[0] == str(m)]
                if mine != [node_id] or mem[node_id].endswith("(learner)"):
                    return False
            return True

        self.wait_for(f"node {m} ({node_id}) to be the only voter for member {m}", settled,
                      timeout=timeout)
        return str(node_id)


def remove_workdir(cluster: Cluster) -> None:
    shutil.rmtree(cluster.workdir, ignore_errors=True)


# --- pytest plumbing shared by the cluster and durability suites -------------------


def attach_logs(item, report) -> None:
    """For a failed test: attaches every node log of the clusters it made to
    the report, and marks the logs to be kept on disk."""
    if not report.failed:
        return
    for cluster in getattr(item, "_raftcache_clusters", []):
        item._raftcache_keep_logs = True
        for m, text in cluster.logs().items():
            report.sections.append((f"node {m} log ({cluster.node(m).describe()})", text or "<empty>"))


def managed_clusters(request, build: Callable[..., Cluster]):
    """The body of a cluster factory fixture (``yield from`` it).

    Yields ``make(*args, start=True, **kwargs)``, which builds a cluster with
    ``build(*args, **kwargs)`` and starts it. At teardown every cluster is
    stopped (SIGCONT to paused nodes, then SIGTERM, SIGKILL after 10 s, by
    pid); the test fails if a node exited without the harness ending it or
    if a node log reports a panic. Work directories are removed unless the
    test failed.
    """
    clusters: List[Cluster] = []
    request.node._raftcache_clusters = clusters

    def make(*args, start: bool = True, **kwargs) -> Cluster:
        cluster = build(*args, **kwargs)
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
            print(f"\nnode logs (and data directories) kept in {cluster.workdir}")
        else:
            remove_workdir(cluster)
    if problems:
        if getattr(request.node, "_raftcache_keep_logs", False):
            # The test already failed (its report has the logs): no second failure.
            print("\n" + "\n".join(problems))
        else:
            pytest.fail("\n".join(problems), pytrace=False)


# --- a write load that records every outcome ------------------------------------


@dataclass
class Outcome:
    """One write attempt: what was sent, through which node, and how it ended."""

    kind: str  # "set" | "incr"
    key: str
    value: Optional[str]
    node: int
    start: float
    end: float
    result: str  # "ack" | "clusterdown" | "uncertain" | "lost" | "error"
    reply: object = None


class WriteLoad:
    """Writer threads doing `SET k_i v_i` (unique keys) or `INCR ctr` through
    cluster nodes, recording every outcome.

    A writer starts on its node and, when that node is killed by the harness,
    moves to the next node that is up. Results:
      ack          OK / integer reply
      clusterdown  CLUSTERDOWN (no leader: nothing was applied)
      uncertain    UNCERTAIN (outcome unknown)
      lost         connection error on a node the harness killed (outcome unknown)
      error        anything else (a failure)
    """

    def __init__(self, cluster: Cluster, set_writers: Iterable[int], incr_writers: Iterable[int],
                 counters: int = 3):
        self.cluster = cluster
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.outcomes: List[Outcome] = []
        self.threads: List[threading.Thread] = []
        self.counters = [f"ctr:{i}" for i in range(counters)]
        specs = [("set", m) for m in set_writers] + [("incr", m) for m in incr_writers]
        for idx, (kind, m) in enumerate(specs):
            t = threading.Thread(target=self._run, args=(idx, kind, m), daemon=True,
                                 name=f"writer-{idx}-{kind}-n{m}")
            self.threads.append(t)

    def start(self) -> "WriteLoad":
        for t in self.threads:
            t.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout)
            assert not t.is_alive(), f"{t.name} did not stop within {timeout}s"

    def _next_node(self, m: int) -> Optional[int]:
        ms = sorted(self.cluster.nodes)
        for k in range(len(ms)):
            cand = ms[(ms.index(m) + k) % len(ms)]
            node = self.cluster.nodes[cand]
            if node.alive() and not node.killed:
                return cand
        return None

    def _run(self, idx: int, kind: str, m: int) -> None:
        i = 0
        client = None
        current = m
        while not self.stop_event.is_set():
            node = self.cluster.nodes[current]
            if node.killed or not node.alive():
                if client is not None:
                    client.close()
                    client = None
                nxt = self._next_node(current)
                if nxt is None:
                    time.sleep(POLL)
                    continue
                current = nxt
                node = self.cluster.nodes[current]
            if client is None:
                client = node.client(socket_timeout=20)
            if kind == "set":
                key, value = f"w{idx}:k{i}", f"v{idx}:{i}"
                args = ("SET", key, value)
            else:
                key, value = self.counters[i % len(self.counters)], None
                args = ("INCR", key)
            i += 1
            start = time.monotonic()
            try:
                reply = client.execute_command(*args)
                result = "ack"
                ok = (reply is True or reply == "OK") if kind == "set" else isinstance(reply, int)
                if not ok:
                    result = "error"
            except Exception as e:  # noqa: BLE001 (every error is recorded)
                reply = repr(e)
                k = error_kind(e)
                if k in ("clusterdown", "uncertain"):
                    result = k
                elif k == "connection" and node.killed:
                    result = "lost"
                    client.close()
                    client = None
                else:
                    result = "error"
                    if client is not None:
                        client.close()
                        client = None
            end = time.monotonic()
            with self.lock:
                self.outcomes.append(Outcome(kind, key, value, current, start, end, result, reply))
        if client is not None:
            client.close()

    # -- summaries --

    def of(self, kind: str, result: Optional[str] = None) -> List[Outcome]:
        with self.lock:
            return [o for o in self.outcomes
                    if o.kind == kind and (result is None or o.result == result)]

    def counts(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        with self.lock:
            for o in self.outcomes:
                out[f"{o.kind}:{o.result}"] = out.get(f"{o.kind}:{o.result}", 0) + 1
        return out

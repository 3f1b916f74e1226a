"""Online membership changes with raftcachectl, under a client that writes and
reads through every member throughout; the admin API's refusals; gRPC health
and reflection; WatchStatus.

Nodes that join a running cluster are started with ``--join`` (no --peers): a
bare ``--join`` waits to be added by ``raftcachectl member add``, ``--join
ADDR`` asks the cluster at ADDR itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from typing import Dict, List, Optional

import grpc
import pytest
import redis

from harness import Cluster, Node, admin_modules, free_ports, managed_clusters

CTL_TIMEOUT = 120.0


def ctl_bin() -> str:
    path = os.environ.get("RAFTCACHECTL_BIN") or os.path.join(
        os.path.dirname(os.environ["RAFTCACHE_BIN"]), "raftcachectl"
    )
    assert os.access(path, os.X_OK), f"raftcachectl not found at {path} (set RAFTCACHECTL_BIN)"
    return path


def ctl(endpoints: List[str], *args: str, check: bool = True, token: Optional[str] = None,
        timeout: float = CTL_TIMEOUT) -> subprocess.CompletedProcess:
    argv = [ctl_bin(), "--endpoints", ",".join(endpoints), "--timeout", "60s"]
    if token is not None:
        argv += ["--token", token]
    env = dict(os.environ)
    env.pop("RAFTCACHE_ADMIN_TOKEN", None)
    proc = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert proc.returncode == 0, (
            f"raftcachectl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The refusal: a non-zero exit and one line on stderr, no panic."""
    assert proc.returncode != 0, f"expected a refusal, got exit 0:\n{proc.stdout}"
    err = proc.stderr.strip()
    assert err and len(err.splitlines()) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    assert "panicked" not in err and "RUST_BACKTRACE" not in err, err
    return err


class JoinNode(Node):
    """A node started with --join instead of --peers."""

    def __init__(self, cluster: Cluster, member: int, join: str = "",
                 args: Optional[List[str]] = None):
        super().__init__(cluster, member, *free_ports(3))
        self.join = join
        self.args = args

    def node_args(self) -> List[str]:
        return list(self.cluster.args) if self.args is None else list(self.args)

    def argv(self) -> List[str]:
        argv = super().argv()
        i = argv.index("--peers")
        join = ["--join", self.join] if self.join else ["--join"]
        return argv[:i] + join + argv[i + 2:]

    @property
    def raft_addr(self) -> str:
        return f"127.0.0.1:{self.raft_port}"

    @property
    def admin_addr(self) -> str:
        return f"127.0.0.1:{self.admin_port}"


def text(v) -> Optional[str]:
    return v.decode() if isinstance(v, bytes) else v


def admin_endpoint(node: Node) -> str:
    return f"127.0.0.1:{node.admin_port}"


def members(endpoints: List[str]) -> Dict[int, dict]:
    out = json.loads(ctl(endpoints, "--json", "members").stdout)
    rows = out["members"] if isinstance(out, dict) else out
    return {int(r["member_id"]): r for r in rows}


class Workload:
    """Writes unique keys (SET w:n n) and reads back earlier ones, round robin
    over the nodes in ``targets``, until stopped. A command that fails is
    retried (same key and value: SET is idempotent) for up to RETRY_FOR
    seconds; failing longer is an error the test reports."""

    RETRY_FOR = 15.0

    def __init__(self, cluster: Cluster, targets: List[int]):
        self.cluster = cluster
        self.targets = list(targets)
        self.lock = threading.Lock()
        self.acked: Dict[str, str] = {}
        self.errors: List[str] = []
        self.retries = 0
        self.stale: List[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._clients: Dict[int, redis.Redis] = {}

    def set_targets(self, targets: List[int]) -> None:
        with self.lock:
            self.targets = list(targets)

    def _client(self, m: int) -> redis.Redis:
        if m not in self._clients:
            self._clients[m] = self.cluster.client(m, socket_timeout=10)
        return self._clients[m]

    def _with_retries(self, what: str, fn):
        deadline = time.monotonic() + self.RETRY_FOR
        while True:
            with self.lock:
                targets = list(self.targets)
            m = targets[self._n % len(targets)]
            try:
                return fn(self._client(m))
            except (redis.RedisError, OSError) as e:
                self._clients.pop(m, None)
                self.retries += 1
                if time.monotonic() > deadline:
                    self.errors.append(f"{what} via node {m}: {e}")
                    return None
                time.sleep(0.05)
                self._n += 1

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as e:  # noqa: BLE001 -- reported by the test
            self.errors.append(f"the workload thread failed: {e!r}")

    def _loop(self) -> None:
        self._n = 0
        while not self._stop.is_set():
            key, value = f"w:{self._n}", str(self._n)
            if self._with_retries(f"SET {key}", lambda r: r.set(key, value)):
                self.acked[key] = value
            if self._n % 5 == 0 and self.acked:
                old = f"w:{self._n // 2}"
                want = self.acked.get(old)
                got = self._with_retries(f"GET {old}", lambda r: r.get(old))
                if want is not None and got is not None and text(got) != want:
                    self.stale.append(f"GET {old} = {got!r}, acknowledged {want!r}")
            self._n += 1

    def __enter__(self) -> "Workload":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


@pytest.fixture
def seed_cluster(request):
    """A one-node cluster (member 1) that tests grow with JoinNodes."""
    yield from managed_clusters(request, lambda n=1, args=(): Cluster(n, args))


def add_join_node(cluster: Cluster, member: int, join: str = "",
                  args: Optional[List[str]] = None) -> JoinNode:
    node = JoinNode(cluster, member, join, args)
    cluster.nodes[member] = node
    node.spawn()
    node.wait_ping()
    return node


def retire(cluster: Cluster, member: int) -> None:
    """Stops a node that is no longer a member and forgets it."""
    node = cluster.nodes.pop(member)
    node.killed = True
    node.terminate()


def test_grow_replace_remove_readd_and_transfer_under_load(seed_cluster):
    c = seed_cluster()
    seed = c.node(1)
    eps = lambda: [admin_endpoint(n) for n in c.nodes.values()]  # noqa: E731

    with Workload(c, [1]) as load:
        # Grow 1 -> 3: node 2 waits and is added by the operator, node 3
        # asks the seed itself.
        n2 = add_join_node(c, 2)
        ctl(eps(), "member", "add", "2", n2.raft_addr)
        n3 = add_join_node(c, 3, join=f"127.0.0.1:{seed.raft_port}")
        c.wait_stable(timeout=60)
        load.set_targets([1, 2, 3])
        view = members(eps())
        assert sorted(view) == [1, 2, 3] and all(r["voter"] for r in view.values()), view

        # Replace 3 with a fresh node 4.
        n4 = add_join_node(c, 4)
        load.set_targets([1, 2])
        ctl(eps(), "member", "replace", "3", "4", n4.raft_addr)
        retire(c, 3)
        c.wait_stable(timeout=60)
        load.set_targets([1, 2, 4])
        assert sorted(members(eps())) == [1, 2, 4]

        # Remove 2, then add it back as a fresh node.
        load.set_targets([1, 4])
        ctl(eps(), "member", "remove", "2")
        retire(c, 2)
        c.wait_stable(timeout=60)
        assert sorted(members(eps())) == [1, 4]
        n2 = add_join_node(c, 2)
        ctl(eps(), "member", "add", "2", n2.raft_addr)
        c.wait_stable(timeout=60)
        load.set_targets([1, 2, 4])
        assert sorted(members(eps())) == [1, 2, 4]

        # Transfer leadership twice, each time to a follower.
        for _ in range(2):
            leader = c.leader()
            target = [m for m in c.nodes if m != leader][0]
            out = ctl(eps(), "--json", "leader", "transfer", str(target)).stdout
            assert c.leader() == target, out
        time.sleep(1.0)  # the workload keeps going on the final layout

    assert not load.errors, f"the client saw errors beyond bounded retries: {load.errors[:5]}"
    assert not load.stale, f"stale reads: {load.stale[:5]}"
    assert len(load.acked) > 50, f"only {len(load.acked)} writes acknowledged"
    # No acknowledged write is lost, on any member.
    for m in c.nodes:
        r = c.client(m)
        keys = list(load.acked)
        values = r.mget(keys)
        missing = [k for k, v in zip(keys, values) if text(v) != load.acked[k]]
        assert not missing, f"node {m} lacks acknowledged writes: {missing[:10]}"
    c.assert_digests_equal()
    out = ctl(eps(), "digest")
    assert "agree" in out.stdout.lower(), out.stdout


def test_bad_admin_input_is_refused_and_changes_nothing(make_cluster):
    c = make_cluster(3)
    eps = [admin_endpoint(n) for n in c.nodes.values()]
    before = members(eps)

    err = one_line_error(ctl(eps, "member", "remove", "9", check=False))
    assert "9" in err, err
    err = one_line_error(ctl(eps, "member", "promote", "9", check=False))
    assert "9" in err, err
    err = one_line_error(ctl(eps, "leader", "transfer", "9", check=False))
    assert "9" in err, err
    err = one_line_error(ctl(eps, "member", "add", "4", "not-an-address", check=False))
    assert "address" in err.lower(), err
    err = one_line_error(ctl(eps, "member", "add", "4", "127.0.0.1:1", check=False))
    assert "answer" in err.lower() or "connect" in err.lower(), err
    # A member that is already a voter cannot be promoted.
    err = one_line_error(ctl(eps, "member", "promote", "2", check=False))
    assert "already a voter" in err, err

    # A change that would leave fewer live voters than a quorum.
    leader = c.leader()
    f1, f2 = [m for m in c.nodes if m != leader]
    c.kill9(f1)
    live = [admin_endpoint(c.node(m)) for m in (leader, f2)]
    err = one_line_error(ctl(live, "member", "remove", str(f2), check=False))
    assert "quorum" in err, err
    assert sorted(members(live)) == sorted(before), "a refused change changed the membership"
    c.restart(f1)
    c.wait_stable(timeout=60)
    assert {m: r["voter"] for m, r in members(eps).items()} == {
        m: r["voter"] for m, r in before.items()
    }


def test_removing_the_last_voter_is_refused(make_cluster):
    c = make_cluster(1)
    eps = [admin_endpoint(c.node(1))]
    err = one_line_error(ctl(eps, "member", "remove", "1", check=False))
    assert "last voter" in err, err
    assert sorted(members(eps)) == [1]
    c.client(1).set("still", "here")
    assert text(c.client(1).get("still")) == "here"


def test_admin_token(make_cluster):
    c = make_cluster(3, args=("--admin-token", "s3cret"))
    eps = [admin_endpoint(n) for n in c.nodes.values()]
    err = one_line_error(ctl(eps, "status", check=False))
    assert "token" in err.lower(), err
    err = one_line_error(ctl(eps, "members", check=False, token="wrong"))
    assert "token" in err.lower(), err
    err = one_line_error(ctl(eps, "member", "remove", "2", check=False, token="wrong"))
    assert "token" in err.lower(), err
    assert sorted(members_with_token(eps, "s3cret")) == [1, 2, 3]
    # A call passed on from a follower to the leader carries the token.
    leader = c.leader()
    follower = [m for m in c.nodes if m != leader][0]
    out = ctl([admin_endpoint(c.node(follower))], "--json", "leader", "transfer", str(follower),
              token="s3cret")
    assert c.leader() == follower, out.stdout


def members_with_token(endpoints: List[str], token: str) -> Dict[int, dict]:
    out = json.loads(ctl(endpoints, "--json", "members", token=token).stdout)
    rows = out["members"] if isinstance(out, dict) else out
    return {int(r["member_id"]): r for r in rows}


def test_health_and_reflection(make_cluster):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    c = make_cluster(3, args=("--admin-token", "tok"))
    for node in c.nodes.values():
        with grpc.insecure_channel(admin_endpoint(node)) as channel:
            services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
            assert {"raftcache.admin.v1.Admin", "grpc.health.v1.Health"} <= services, services
            health = health_pb2_grpc.HealthStub(channel)

            def serving():
                reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                return reply.status == health_pb2.HealthCheckResponse.SERVING

            c.wait_for(f"node {node.member} to report SERVING", serving, timeout=20)
    # With two of three nodes gone, the survivor has no leader: NOT_SERVING.
    leader = c.leader()
    survivor = [m for m in c.nodes if m != leader][0]
    for m in c.nodes:
        if m != survivor:
            c.kill9(m)
    with grpc.insecure_channel(admin_endpoint(c.node(survivor))) as channel:
        health = health_pb2_grpc.HealthStub(channel)

        def not_serving():
            reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
            return reply.status == health_pb2.HealthCheckResponse.NOT_SERVING

        c.wait_for("the survivor to report NOT_SERVING", not_serving, timeout=30)


def test_watch_status_reports_leader_changes_and_unreachable_members(make_cluster):
    c = make_cluster(3)
    leader = c.leader()
    f1, f2 = [m for m in c.nodes if m != leader]
    watch = subprocess.Popen(
        [ctl_bin(), "--endpoints", admin_endpoint(c.node(f1)), "--json", "watch"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    events: List[dict] = []
    reader = threading.Thread(
        target=lambda: [events.append(json.loads(line)) for line in watch.stdout], daemon=True
    )
    reader.start()
    try:
        c.wait_for("the first (current) event", lambda: len(events) >= 1, timeout=10)
        ctl([admin_endpoint(c.node(f1))], "leader", "transfer", str(f2))
        c.wait_for(
            "a leader change event",
            lambda: any("LEADER" in str(e.get("kind")).upper() for e in events[1:]),
            timeout=20,
        )
        c.kill9(leader)
        c.wait_for(
            f"member {leader} reported unreachable",
            lambda: any(
                "UNREACHABLE" in str(e.get("kind")).upper() and int(e.get("member_id", 0)) == leader
                for e in events
            ),
            timeout=20,
        )
    finally:
        watch.terminate()
        watch.wait(timeout=10)


def test_peer_secret_keeps_out_nodes_without_it(make_cluster):
    c = make_cluster(3, args=("--peer-secret", "peers-only"))
    seed = f"127.0.0.1:{c.node(1).raft_port}"
    eps = [admin_endpoint(n) for n in c.nodes.values()]
    intruder = add_join_node(c, 4, join=seed, args=["--peer-secret", "guess"])
    time.sleep(3.0)
    assert sorted(members(eps)) == [1, 2, 3], "a node with the wrong peer secret was admitted"
    assert "peer secret" in intruder.log(), intruder.log()[-2000:]
    retire(c, 4)
    friend = add_join_node(c, 5, join=seed)
    c.wait_voter(5, timeout=60)
    assert sorted(members(eps)) == [1, 2, 3, 5]
    c.client(5).set("k", "v")
    assert text(c.client(1).get("k")) == "v"
    assert friend.alive()


def health_status(node: Node, service: str) -> str:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(admin_endpoint(node)) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def test_a_learner_serves_but_is_not_ready_until_promoted(make_cluster):
    """--join-as learner: the node is admitted as a learner and stays one;
    it serves (health "") but is not ready (health raftcache.ready, INFO
    raft_ready) until `member promote` makes it a voter."""
    c = make_cluster(3)
    seed = f"127.0.0.1:{c.node(1).raft_port}"
    eps = [admin_endpoint(n) for n in c.nodes.values()]
    learner = add_join_node(c, 4, join=seed, args=[*c.args, "--join-as", "learner"])
    c.wait_for("member 4 to be a learner",
               lambda: 4 in members(eps) and not members(eps)[4]["voter"], timeout=30)
    c.wait_for("the learner to serve", lambda: health_status(learner, "") == "SERVING", timeout=20)
    assert health_status(learner, "raftcache.ready") == "NOT_SERVING"
    assert c.info(4)["raft_ready"] == "0"
    c.client(1).set("via", "leader")
    assert text(c.client(4).get("via")) == "leader"
    ctl(eps, "member", "promote", "4")
    assert members(eps)[4]["voter"]
    c.wait_for("the promoted node to be ready",
               lambda: health_status(learner, "raftcache.ready") == "SERVING", timeout=20)
    for m in (1, 2, 3):
        assert health_status(c.node(m), "raftcache.ready") == "SERVING"


def test_a_membership_change_that_cannot_commit_is_reported(make_cluster):
    """A learner is being added while both followers are stopped: the
    membership entry cannot commit. The leader (which steps down for want
    of a quorum) says so in INFO (`raft_membership_pending_ms`) and, after
    5 s, in its log; once the followers are back the change is either
    committed or dropped with the entry, and the report clears."""
    c = make_cluster(3)
    leader = c.leader()
    followers = [m for m in c.nodes if m != leader]
    joiner = add_join_node(c, 4)
    for f in followers:
        c.sigstop(f)
    try:
        proc = subprocess.Popen(
            [ctl_bin(), "--endpoints", admin_endpoint(c.node(leader)), "--timeout", "20s",
             "member", "add", "4", joiner.raft_addr, "--learner"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        c.wait_for("the leader to report the pending change",
                   lambda: int(c.info(leader)["raft_membership_pending_ms"]) > 0, timeout=10)
        c.wait_for("the leader to log it",
                   lambda: "a membership change is not committing" in c.node(leader).log(),
                   timeout=15)
    finally:
        for f in followers:
            c.sigcont(f)
    proc.wait(timeout=60)
    c.wait_for("the report to clear on every node",
               lambda: all(int(c.info(m)["raft_membership_pending_ms"]) == 0
                           for m in (leader, *followers)), timeout=30)
    print(f"\nmember add while stopped: exit {proc.returncode}: "
          f"{(proc.stdout.read() + proc.stderr.read()).strip()[:200]}")

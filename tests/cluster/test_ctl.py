"""raftcachectl, the admin CLI, as an operator runs it: the real binary
(``RAFTCACHECTL_BIN``, by default beside ``RAFTCACHE_BIN``) against

- a real three-node cluster: ``status``, ``digest`` and ``snapshot`` (the
  admin calls the nodes implement today), and the failures an operator meets
  (an endpoint that refuses connections, one that never answers, a mistyped
  command line);
- a fake admin server (grpcio, stubs from proto/admin.proto) for what must
  not depend on a node's behaviour: the token on every request, how a
  refused change or an UNIMPLEMENTED answer is reported, the requests the
  membership commands send, ``digest``'s verdicts, ``watch``.

Every failure must be one line on stderr (``raftcachectl: …``), never a
panic, a backtrace or a Debug dump, with exit code 2 for usage errors and 1
otherwise (``digest``: 2 when the applied indexes never line up).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from concurrent import futures
from typing import Dict, List, Optional

import grpc
import pytest

from harness import Cluster, admin_modules, free_ports, raftcachectl_bin

M = 1 << 32  # a Raft node id is member << 32 | incarnation


# --- running the CLI ----------------------------------------------------------


def ctl(*args: str, endpoints: Optional[List[str]] = None, env: Optional[Dict[str, str]] = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs raftcachectl (RUST_BACKTRACE=1, so a panic would show)."""
    argv = [raftcachectl_bin()]
    if endpoints is not None:
        argv += ["--endpoints", ",".join(endpoints)]
    environ = {k: v for k, v in os.environ.items()
               if k not in ("RAFTCACHE_ENDPOINTS", "RAFTCACHE_ADMIN_TOKEN")}
    environ.update(RUST_BACKTRACE="1", **(env or {}))
    return subprocess.run(argv + list(args), capture_output=True, text=True, env=environ,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def assert_one_error_line(p: subprocess.CompletedProcess, code: int = 1) -> str:
    """Exit code `code` and exactly one `raftcachectl: …` line on stderr,
    with no panic or Debug output; returns the line."""
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    line = lines[0]
    assert line.startswith("raftcachectl: "), line
    for bad in ("panicked", "backtrace", "RUST_BACKTRACE", "Status {", "Error {", "Os {"):
        assert bad not in p.stderr, p.stderr
    return line


def parse_table(text: str) -> List[Dict[str, str]]:
    """The rows of an ASCII table as {header: cell} dicts."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    assert lines, text
    split = lambda ln: [c.strip() for c in ln.strip().strip("|").split("|")]  # noqa: E731
    header = split(lines[0])
    return [dict(zip(header, split(ln))) for ln in lines[1:]]


def admin_endpoints(cluster: Cluster) -> List[str]:
    return [f"127.0.0.1:{cluster.node(m).admin_port}" for m in sorted(cluster.nodes)]


def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    return free_ports(1)[0]


# --- a real cluster ---------------------------------------------------------------


def test_status_lists_every_node_with_one_leader(make_cluster):
    cluster = make_cluster(3)
    cluster.leader()
    eps = admin_endpoints(cluster)
    ids = {m: cluster.info(m)["raft_node_id"] for m in cluster.nodes}

    p = ctl("status", endpoints=eps)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    rows = parse_table(p.stdout)
    print(p.stdout)
    assert [r["ENDPOINT"] for r in rows] == eps
    assert [r["ID"] for r in rows] == [ids[m] for m in sorted(cluster.nodes)]
    roles = [r["ROLE"] for r in rows]
    assert roles.count("leader") == 1 and roles.count("follower") == 2, roles
    leader_id = rows[roles.index("leader")]["ID"]
    assert [r["LEADER"] for r in rows] == [leader_id] * 3
    assert len({r["TERM"] for r in rows}) == 1 and int(rows[0]["TERM"]) >= 1
    for r in rows:
        assert int(r["RAFT INDEX"]) >= int(r["APPLIED"]) >= 1, r
        assert r["READY"] in ("true", "false") and r["ERRORS"] == "", r

    # The same as JSON.
    p = ctl("--json", "status", endpoints=eps)
    assert p.returncode == 0, p.stderr
    nodes = json.loads(p.stdout)
    assert [n["endpoint"] for n in nodes] == eps
    assert all(n["error"] is None for n in nodes)
    assert sorted(n["member_id"] for n in nodes) == [1, 2, 3]
    assert [n["id"] for n in nodes] == [ids[m] for m in sorted(cluster.nodes)]
    leaders = [n for n in nodes if n["role"] == "leader"]
    assert len(leaders) == 1
    assert all(n["leader"] == leaders[0]["id"] for n in nodes)
    assert all(n["leader_raft_node_id"] == leaders[0]["raft_node_id"] for n in nodes)
    for n in nodes:
        assert n["raft_node_id"] >> 32 == n["member_id"]
        raft_addrs = {m["member_id"]: m["raft_addr"] for m in n["members"]}
        assert raft_addrs == {m: f"127.0.0.1:{cluster.node(m).raft_port}" for m in cluster.nodes}
        assert all(m["voter"] for m in n["members"])

    # One endpoint that refuses connections: every row is printed, the dead
    # one with its error, then one line on stderr and exit code 1.
    dead = f"127.0.0.1:{closed_port()}"
    p = ctl("status", endpoints=eps + [dead])
    line = assert_one_error_line(p)
    assert line == f"raftcachectl: {dead}: connection refused"
    rows = parse_table(p.stdout)
    assert [r["ENDPOINT"] for r in rows] == eps + [dead]
    assert [r["ERRORS"] for r in rows] == ["", "", "", "connection refused"]
    assert rows[3]["ROLE"] == "" and rows[0]["ROLE"] in ("leader", "follower")

    # A RESP port given by mistake: one line, and the node is unharmed
    # (the harness fails the test if it exits or panics).
    resp = f"127.0.0.1:{cluster.node(1).resp_port}"
    p = ctl("status", endpoints=[resp])
    line = assert_one_error_line(p)
    assert line.startswith(f"raftcachectl: {resp}: "), line
    print(line)
    assert cluster.client(1).ping()


def test_digest_agrees_after_writes_and_snapshot(make_cluster):
    cluster = make_cluster(3)
    cluster.leader()
    eps = admin_endpoints(cluster)
    keys = 0
    for m in sorted(cluster.nodes):
        c = cluster.client(m)
        for i in range(50):
            assert c.set(f"ctl:{m}:{i}", f"v{i}") is True
        assert c.incr("ctl:counter") == m
        c.close()
        keys += 50
    keys += 1  # ctl:counter

    p = ctl("digest", "--rounds", "50", endpoints=eps)
    print(p.stdout)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert p.stderr == ""
    rows = parse_table(p.stdout)
    assert [r["ENDPOINT"] for r in rows] == eps
    assert sorted(r["MEMBER"] for r in rows) == ["1", "2", "3"]
    assert {r["KEYS"] for r in rows} == {str(keys)}
    assert len({r["APPLIED"] for r in rows}) == 1
    assert len({r["DIGEST"] for r in rows}) == 1 and len(rows[0]["DIGEST"]) == 64
    last = p.stdout.strip().splitlines()[-1]
    assert last.startswith("agree"), last
    assert f"applied index {rows[0]['APPLIED']}" in last
    # The harness's own Digest calls see the same state.
    harness = cluster.assert_digests_equal()
    if str(harness[1].applied_index) == rows[0]["APPLIED"]:
        assert harness[1].digest == rows[0]["DIGEST"]

    p = ctl("--json", "digest", "--rounds", "50", endpoints=eps)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["result"] == "agree"
    assert 1 <= report["rounds"] <= 50
    assert {e["applied_index"] for e in report["endpoints"]} == {report["applied_index"]}
    assert len({e["digest"] for e in report["endpoints"]}) == 1
    assert all(e["keys"] == keys and e["error"] is None for e in report["endpoints"])
    applied = report["applied_index"]

    # A snapshot on every node covers at least what each had applied.
    p = ctl("--timeout", "60s", "snapshot", endpoints=eps)
    assert p.returncode == 0, (p.stdout, p.stderr)
    rows = parse_table(p.stdout)
    assert [r["ENDPOINT"] for r in rows] == eps
    assert all(int(r["SNAPSHOT INDEX"]) >= applied and r["ERRORS"] == "" for r in rows), rows
    p = ctl("--json", "--timeout", "60s", "snapshot", endpoints=eps)
    assert p.returncode == 0, p.stderr
    snaps = json.loads(p.stdout)
    assert [s["endpoint"] for s in snaps] == eps
    assert all(s["index"] >= applied and s["error"] is None for s in snaps)


def test_health_serving_on_every_node_then_names_the_dead_one(make_cluster):
    """`health` asks grpc.health.v1.Health/Check on every endpoint: exit 0
    once all three serve; a killed node makes it exit 1 with one line."""
    cluster = make_cluster(3)
    cluster.leader()
    eps = admin_endpoints(cluster)
    # The health status follows the node within 200 ms of it having a leader
    # and its log applied.
    deadline = time.monotonic() + 10
    while True:
        p = ctl("health", endpoints=eps)
        if p.returncode == 0 or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    print(p.stdout)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert p.stderr == ""
    rows = parse_table(p.stdout)
    assert [(r["ENDPOINT"], r["STATUS"], r["ERRORS"]) for r in rows] == [
        (ep, "SERVING", "") for ep in eps
    ]
    p = ctl("--json", "health", "--service", "raftcache.admin.v1.Admin", endpoints=eps)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [
        {"endpoint": ep, "status": "SERVING", "serving": True, "error": None} for ep in eps
    ]
    # A service the node does not report on.
    p = ctl("health", "--service", "no.such.Service", endpoints=eps[:1])
    line = assert_one_error_line(p)
    assert line == f"raftcachectl: {eps[0]}: service not registered", line

    victim = 3
    cluster.kill9(victim)
    p = ctl("health", endpoints=eps)
    line = assert_one_error_line(p)
    assert line == f"raftcachectl: {eps[victim - 1]}: connection refused", line
    rows = parse_table(p.stdout)
    assert [r["STATUS"] for r in rows] == ["SERVING", "SERVING", ""], rows


def test_health_against_a_closed_port_exits_1():
    dead = f"127.0.0.1:{closed_port()}"
    p = ctl("health", endpoints=[dead])
    line = assert_one_error_line(p)
    assert line == f"raftcachectl: {dead}: connection refused"


# --- failures without a node ----------------------------------------------------------


@pytest.mark.parametrize(
    "command, prefix",
    [
        (["status"], ""),
        (["digest"], ""),
        (["snapshot"], ""),
        (["members"], "members: "),
        (["member", "list"], "members: "),
        (["member", "remove", "9"], "member remove 9: "),
        (["member", "add", "4", "127.0.0.1:7380"], "member add 4 127.0.0.1:7380: "),
        (["leader", "transfer", "2"], "leader transfer 2: "),
        (["watch"], "watch: "),
        (["health"], ""),
    ],
)
def test_refused_connection_is_one_line(command, prefix):
    dead = f"127.0.0.1:{closed_port()}"
    p = ctl(*command, endpoints=[dead])
    line = assert_one_error_line(p)
    assert line == f"raftcachectl: {prefix}{dead}: connection refused"


def test_members_tries_the_next_endpoint_and_names_each_failure():
    dead = [f"127.0.0.1:{port}" for port in free_ports(2)]
    p = ctl("members", endpoints=dead)
    line = assert_one_error_line(p)
    assert line == ("raftcachectl: members: no endpoint answered: "
                    f"{dead[0]}: connection refused; {dead[1]}: connection refused")


def test_endpoint_that_never_answers_times_out():
    """A socket that accepts connections but never speaks HTTP/2."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        ep = f"127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        p = ctl("--timeout", "500ms", "status", endpoints=[ep], timeout=30)
        took = time.monotonic() - start
    line = assert_one_error_line(p)
    assert line.startswith(f"raftcachectl: {ep}: no ") and "within 500ms" in line, line
    assert took < 10, took


@pytest.mark.parametrize(
    "args",
    [
        ["member", "remove", "notanumber"],
        ["member", "add", "4", "no-port"],
        ["member", "add", "4", "host:0"],
        ["member", "replace", "1", "2"],
        ["leader", "transfer"],
        ["--timeout", "soon", "status"],
        ["--endpoints", "localhost", "status"],
        ["digest", "--rounds", "0"],
    ],
)
def test_bad_argument_is_a_usage_error(args):
    p = ctl(*args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "panicked" not in p.stderr and p.stdout == ""
    assert p.stderr.startswith("raftcachectl: ") and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_unknown_subcommand_and_help():
    p = ctl("frobnicate")
    assert p.returncode == 2, p.stderr
    assert "frobnicate" in p.stderr and "panicked" not in p.stderr
    p = ctl()
    assert p.returncode == 2 and "Usage:" in p.stderr
    p = ctl("--help")
    assert p.returncode == 0
    for command in ("status", "members", "member", "leader", "snapshot", "digest", "watch",
                    "health"):
        assert f"\n  {command} " in p.stdout, p.stdout


# --- a fake admin server ---------------------------------------------------------------

METHODS = ("Status", "Digest", "Snapshot", "Members", "AddMember", "PromoteMember",
           "RemoveMember", "ReplaceMember", "TransferLeader", "WatchStatus")


class FakeAdmin:
    """An Admin service whose answers a test sets: `handlers[method](request,
    context)`; a method without a handler answers UNIMPLEMENTED. With `token`
    set, a call without `authorization: Bearer <token>` is UNAUTHENTICATED.
    Every call is recorded in `calls` as (method, request, metadata)."""

    def __init__(self):
        self.pb, self.pb_grpc = admin_modules()
        self.handlers = {}
        self.calls = []
        self.token: Optional[str] = None
        self.stopping = threading.Event()
        self.endpoint = ""

    def handle(self, method, request, context):
        metadata = dict(context.invocation_metadata())
        self.calls.append((method, request, metadata))
        if self.token is not None and metadata.get("authorization") != f"Bearer {self.token}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong admin token")
        handler = self.handlers.get(method)
        if handler is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, method)
        return handler(request, context)

    def servicer(self):
        fake = self

        class Servicer(self.pb_grpc.AdminServicer):
            pass

        for method in METHODS:
            setattr(Servicer, method,
                    lambda _self, request, context, m=method: fake.handle(m, request, context))
        return Servicer()

    def members_reply(self, voters=(1, 2, 3), learners=()):
        pb = self.pb
        members = [
            pb.Member(member_id=m, raft_node_id=m * M, raft_addr=f"10.0.0.{m}:7380",
                      voter=m in voters, resp_addr=f"10.0.0.{m}:6379" if m != 3 else "",
                      admin_addr=f"10.0.0.{m}:7379", reachable=True, leader=m == 1,
                      matched_index=40 - m, lag=m - 1)
            for m in list(voters) + list(learners)
        ]
        return pb.MembersReply(members=members, leader_raft_node_id=1 * M, log_index=40)


@pytest.fixture
def fake_admin():
    fake = FakeAdmin()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    fake.pb_grpc.add_AdminServicer_to_server(fake.servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    fake.endpoint = f"127.0.0.1:{port}"
    yield fake
    fake.stopping.set()
    server.stop(grace=None).wait()


def test_token_is_sent_on_every_request(fake_admin):
    pb = fake_admin.pb
    fake_admin.token = "s3cret"
    fake_admin.handlers["Status"] = lambda req, ctx: pb.StatusReply(
        member_id=1, raft_node_id=M, role="leader", term=2, leader_raft_node_id=M)
    fake_admin.handlers["Members"] = lambda req, ctx: fake_admin.members_reply()
    eps = [fake_admin.endpoint]

    assert ctl("--token", "s3cret", "status", endpoints=eps).returncode == 0
    assert ctl("members", endpoints=eps, env={"RAFTCACHE_ADMIN_TOKEN": "s3cret"}).returncode == 0
    assert [c[2].get("authorization") for c in fake_admin.calls] == ["Bearer s3cret"] * 2

    p = ctl("members", endpoints=eps)
    line = assert_one_error_line(p)
    assert line == ("raftcachectl: members: missing or wrong admin token "
                    "(set --token or RAFTCACHE_ADMIN_TOKEN)")
    p = ctl("--token", "wrong", "status", endpoints=eps)
    line = assert_one_error_line(p)
    assert line.startswith(f"raftcachectl: {fake_admin.endpoint}: missing or wrong admin token")


def test_membership_changes_send_what_was_asked_and_print_the_result(fake_admin):
    pb = fake_admin.pb
    for method in ("Members", "AddMember", "PromoteMember", "RemoveMember", "ReplaceMember"):
        fake_admin.handlers[method] = lambda req, ctx: fake_admin.members_reply(learners=(4,))
    eps = [fake_admin.endpoint]

    p = ctl("member", "add", "4", "10.0.0.4:7380", endpoints=eps)
    assert p.returncode == 0, p.stderr
    rows = parse_table(p.stdout)
    assert [r["ID"] for r in rows] == ["1.0", "2.0", "3.0", "4.0"]
    assert [r["TYPE"] for r in rows] == ["voter", "voter", "voter", "learner"]
    assert rows[0]["LEADER"] == "true" and rows[1]["LEADER"] == "false"
    assert rows[2]["RESP ADDR"] == "-" and rows[1]["RAFT ADDR"] == "10.0.0.2:7380"
    assert (rows[2]["MATCHED"], rows[2]["LAG"]) == ("37", "2")
    assert p.stdout.strip().endswith(
        f"leader 1.0, membership at log index 40 (from {fake_admin.endpoint})")
    assert ctl("member", "add", "5", "h:7380", "--learner", endpoints=eps).returncode == 0
    assert ctl("member", "promote", "4", endpoints=eps).returncode == 0
    assert ctl("member", "remove", "3", "--force", endpoints=eps).returncode == 0
    assert ctl("member", "remove", "2", endpoints=eps).returncode == 0
    assert ctl("member", "replace", "2", "6", "h6:7380", endpoints=eps).returncode == 0
    sent = [(m, r) for m, r, _ in fake_admin.calls]
    assert sent == [
        ("AddMember", pb.AddMemberRequest(member_id=4, raft_addr="10.0.0.4:7380", voter=True)),
        ("AddMember", pb.AddMemberRequest(member_id=5, raft_addr="h:7380", voter=False)),
        ("PromoteMember", pb.PromoteMemberRequest(member_id=4)),
        ("RemoveMember", pb.RemoveMemberRequest(member_id=3, force=True)),
        ("RemoveMember", pb.RemoveMemberRequest(member_id=2, force=False)),
        ("ReplaceMember", pb.ReplaceMemberRequest(old_member_id=2, new_member_id=6,
                                                  new_raft_addr="h6:7380")),
    ]

    p = ctl("--json", "member", "list", endpoints=eps)
    assert p.returncode == 0, p.stderr
    view = json.loads(p.stdout)
    assert view["leader"] == "1.0" and view["log_index"] == 40
    assert [m["id"] for m in view["members"]] == ["1.0", "2.0", "3.0", "4.0"]
    assert view["members"][3]["voter"] is False


def test_members_skips_an_endpoint_that_refuses_connections(fake_admin):
    fake_admin.handlers["Members"] = lambda req, ctx: fake_admin.members_reply()
    p = ctl("members", endpoints=[f"127.0.0.1:{closed_port()}", fake_admin.endpoint])
    assert p.returncode == 0, p.stderr
    assert len(parse_table(p.stdout)) == 3


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND,
     grpc.StatusCode.INVALID_ARGUMENT],
)
def test_refused_change_shows_the_nodes_message(fake_admin, code):
    fake_admin.handlers["RemoveMember"] = lambda req, ctx: ctx.abort(
        code, f"no member {req.member_id} in the cluster")
    other = f"127.0.0.1:{closed_port()}"
    # A refused change is not sent to the next endpoint.
    p = ctl("member", "remove", "9", endpoints=[fake_admin.endpoint, other])
    line = assert_one_error_line(p)
    assert line == "raftcachectl: member remove 9: no member 9 in the cluster"
    assert len(fake_admin.calls) == 1


def test_unimplemented_is_one_clear_line(fake_admin):
    p = ctl("leader", "transfer", "2", endpoints=[fake_admin.endpoint])
    line = assert_one_error_line(p)
    assert line.startswith("raftcachectl: leader transfer 2: the node does not implement "
                           "TransferLeader"), line


def test_leader_transfer_prints_the_new_leader(fake_admin):
    pb = fake_admin.pb
    fake_admin.handlers["TransferLeader"] = lambda req, ctx: pb.TransferLeaderReply(
        leader_raft_node_id=req.member_id * M + 1, term=9)
    p = ctl("leader", "transfer", "2", endpoints=[fake_admin.endpoint])
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "leader 2.1 in term 9"
    p = ctl("--json", "leader", "transfer", "3", endpoints=[fake_admin.endpoint])
    assert json.loads(p.stdout) == {"leader": "3.1", "leader_raft_node_id": 3 * M + 1, "term": 9}


def test_digest_disagree_and_unaligned(fake_admin):
    pb = fake_admin.pb
    answers = {"digest": "aa" * 32, "index": 10}
    fake_admin.handlers["Digest"] = lambda req, ctx: pb.DigestReply(
        applied_index=answers["index"], digest=answers["digest"], keys=3, member_id=1)
    # The same endpoint twice: one digest, trivially in agreement.
    eps = [fake_admin.endpoint, fake_admin.endpoint]
    p = ctl("digest", endpoints=eps)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1].startswith("agree")

    # Different digests at the same applied index: DISAGREE, exit 1.
    flip = iter(["aa" * 32, "bb" * 32] * 10)
    fake_admin.handlers["Digest"] = lambda req, ctx: pb.DigestReply(
        applied_index=10, digest=next(flip), keys=3, member_id=1)
    p = ctl("digest", endpoints=eps)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stdout.strip().splitlines()[-1].startswith("DISAGREE")
    assert p.stderr == ""

    # Applied indexes that never line up: asked --rounds times, exit 2.
    fake_admin.calls.clear()
    counter = iter(range(1000))
    fake_admin.handlers["Digest"] = lambda req, ctx: pb.DigestReply(
        applied_index=next(counter), digest="cc" * 32, keys=3, member_id=1)
    p = ctl("--json", "digest", "--rounds", "3", "--interval", "10ms", endpoints=eps)
    assert p.returncode == 2, (p.stdout, p.stderr)
    report = json.loads(p.stdout)
    assert report["result"] == "unaligned" and report["rounds"] == 3
    assert report["applied_index"] is None
    assert len(fake_admin.calls) == 6


def test_watch_prints_each_event_until_the_stream_ends(fake_admin):
    pb = fake_admin.pb
    Kind = pb.StatusEvent.Kind

    def events(req, ctx):
        yield pb.StatusEvent(kind=Kind.CURRENT, time_ms=1_700_000_000_000, term=3,
                             leader_raft_node_id=M, role="follower", message="leader 1.0")
        yield pb.StatusEvent(kind=Kind.MEMBER_UNREACHABLE, time_ms=1_700_000_001_500, term=3,
                             leader_raft_node_id=M, member_id=2, message="2.0 unreachable")

    fake_admin.handlers["WatchStatus"] = events
    p = ctl("watch", endpoints=[fake_admin.endpoint])
    line = assert_one_error_line(p)
    assert line == f"raftcachectl: watch: {fake_admin.endpoint}: the node ended the stream"
    assert p.stdout.splitlines() == [
        "2023-11-14T22:13:20.000Z CURRENT            term=3 leader=1.0 leader 1.0",
        "2023-11-14T22:13:21.500Z MEMBER_UNREACHABLE term=3 leader=1.0 2.0 unreachable",
    ]
    p = ctl("--json", "watch", endpoints=[fake_admin.endpoint])
    lines = [json.loads(ln) for ln in p.stdout.splitlines()]
    assert [e["kind"] for e in lines] == ["CURRENT", "MEMBER_UNREACHABLE"]
    assert lines[1]["member_id"] == 2 and lines[1]["leader"] == "1.0"


def test_watch_stops_on_interrupt(fake_admin):
    pb = fake_admin.pb

    def endless(req, ctx):
        yield pb.StatusEvent(kind=pb.StatusEvent.Kind.CURRENT, term=1, message="now")
        while ctx.is_active() and not fake_admin.stopping.is_set():
            time.sleep(0.05)

    fake_admin.handlers["WatchStatus"] = endless
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAFTCACHE_ENDPOINTS", "RAFTCACHE_ADMIN_TOKEN")}
    argv = [raftcachectl_bin(), "--endpoints", fake_admin.endpoint, "--timeout", "300ms", "watch"]
    proc = subprocess.Popen(argv,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            stdin=subprocess.DEVNULL)
    try:
        first = proc.stdout.readline()
        assert "CURRENT" in first and first.rstrip().endswith("now"), first
        # --timeout bounds the call until the stream starts, not the stream.
        time.sleep(1.0)
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- a fake health service ----------------------------------------------------------------


@pytest.fixture
def fake_health():
    """grpc.health.v1.Health/Check answering `fake["status"]` (a serving
    status number), recording each request's service name and metadata.
    Messages are encoded by hand (one field each): no health stubs needed."""
    fake = {"status": 1, "calls": []}

    def check(request: bytes, context):
        # HealthCheckRequest: field 1 (service), length-delimited, short.
        service = request[2:2 + request[1]].decode() if request[:1] == b"\n" else ""
        fake["calls"].append((service, dict(context.invocation_metadata())))
        return bytes([0x08, fake["status"]])  # HealthCheckResponse.status

    handler = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(
            check, request_deserializer=lambda b: b, response_serializer=lambda b: b),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    fake["endpoint"] = f"127.0.0.1:{port}"
    yield fake
    server.stop(grace=None).wait()


@pytest.mark.parametrize("status, name", [(2, "NOT_SERVING"), (0, "UNKNOWN"),
                                          (3, "SERVICE_UNKNOWN")])
def test_health_not_serving_exits_1(fake_health, status, name):
    fake_health["status"] = status
    ep = fake_health["endpoint"]
    p = ctl("health", endpoints=[ep])
    line = assert_one_error_line(p)
    assert line == f"raftcachectl: {ep}: {name}"
    assert parse_table(p.stdout) == [{"ENDPOINT": ep, "STATUS": name, "ERRORS": ""}]


def test_health_sends_the_service_and_the_token(fake_health):
    ep = fake_health["endpoint"]
    p = ctl("--token", "t0k", "health", "--service", "raftcache.admin.v1.Admin", endpoints=[ep])
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert fake_health["calls"] == [
        ("raftcache.admin.v1.Admin", fake_health["calls"][0][1])
    ]
    assert fake_health["calls"][0][1].get("authorization") == "Bearer t0k"
    p = ctl("health", endpoints=[ep])
    assert p.returncode == 0
    assert fake_health["calls"][1][0] == ""
    # One endpoint serving, one not: exit 1 naming only the one that is not.
    dead = f"127.0.0.1:{closed_port()}"
    p = ctl("health", endpoints=[ep, dead])
    line = assert_one_error_line(p)
    assert line == f"raftcachectl: {dead}: connection refused"

"""Safety under the fault model raftcache is built for (memory-only nodes, a
minority of crashes at once, any number of pauses), and bootstrap.

These tests reproduce faults step by step (SIGSTOP, kill -9, restart) rather
than under load, so that each one shows one property.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import redis

from harness import Cluster, error_kind


def _try_get(cluster: Cluster, m: int, key: str):
    c = cluster.client(m, socket_timeout=10)
    try:
        return c.get(key)
    finally:
        c.close()


def test_committed_write_survives_one_crash_while_others_pause(make_cluster):
    """One crash (memory lost) plus pauses must not lose an acknowledged write.

    The write `x` is committed by the leader L and follower B while follower A
    is paused (after 4 MB of other writes, so that A cannot have `x` queued in
    its socket buffers either). Then L pauses and B crashes and restarts (a new incarnation B',
    empty, not a voter). When A resumes, the only voters that can answer are
    A (which lacks `x`) and nobody else: L is paused and B's incarnation is
    gone. A must not be elected (that would need B's old vote), so `x` is
    safe in L's log, and once L resumes the cluster serves `x`.

    If a new incarnation answers Raft RPCs addressed to its old incarnation
    (the peer service does not check the target node id), B' grants A's vote
    request as if it were B: A leads without `x`, and when L resumes its log
    is truncated: the acknowledged write is gone from every node.
    """
    cluster = make_cluster(3, args=["--request-timeout", "2000"])
    leader = cluster.leader()
    a, b = [m for m in cluster.nodes if m != leader]
    old_b = cluster.info(b)["raft_node_id"]
    lc = cluster.client(leader, socket_timeout=10)
    assert lc.set("before", "1") is True

    cluster.sigstop(a)
    # Fill the HTTP/2 flow-control window of L's connection to the paused A
    # (about 1 MiB), so that the entry of `x` stays in L's memory instead of
    # waiting in A's socket buffer for A to resume.
    ballast = "b" * 100_000
    for i in range(40):
        assert lc.set(f"ballast:{i}", ballast) is True
    assert lc.set("x", "committed") is True  # L + B: a majority
    lc.close()
    cluster.sigstop(leader)
    cluster.kill9(b)
    cluster.node(b).spawn()  # B restarts: a new incarnation (don't wait for it)
    cluster.sigcont(a)

    # Give A every chance to get elected (many election timeouts).
    elected = None
    deadline = time.monotonic() + 6.0
    while time.monotonic() < deadline and elected is None:
        info = cluster.infos([a]).get(a, {})
        if info.get("raft_role") == "leader":
            elected = info
        time.sleep(0.05)
    b_info = cluster.infos([b]).get(b, {})

    cluster.sigcont(leader)
    # Read `x` through every node until each answers (or 20 s pass).
    values = {}

    def all_answer():
        for m in cluster.nodes:
            try:
                values[m] = _try_get(cluster, m, "x")
            except redis.exceptions.RedisError as e:
                values[m] = f"<{e}>"
        return all(not str(v).startswith("<") for v in values.values())

    try:
        cluster.wait_for("every node to answer GET x", all_answer, timeout=20)
    except AssertionError:
        pass
    new_b = cluster.infos([b]).get(b, {}).get("raft_node_id")
    msg = (
        f"Leader {leader} paused, follower {b} ({old_b}) crashed and restarted as {new_b}, "
        f"follower {a} (lacking x) resumed. "
    )
    if elected is not None:
        msg += (
            f"Node {a} was elected leader (term {elected.get('raft_term')}, members "
            f"{elected.get('raft_members')}) while only it and the new incarnation "
            f"{b_info.get('raft_node_id')} ran: the new incarnation voted as {old_b}. "
        )
    panics = cluster.panics()
    if panics:
        msg += f"Panics after node {leader} resumed: {panics[:3]}. "
    assert values == {m: "committed" for m in cluster.nodes}, (
        msg + f"GET x per node: {values} (an acknowledged write was lost)"
    )
    assert elected is None, msg
    cluster.wait_stable(timeout=30)
    cluster.assert_digests_equal()


def test_nodes_started_together_all_start_at_incarnation_zero(make_cluster):
    """Three nodes started together (here: node 1 a tenth of a second before
    the others) should form the cluster as incarnations 1.0, 2.0, 3.0.

    A node whose first Info probe finds fewer than a majority of peers
    listening waits 200 ms and probes again; by then the others may have
    initialized, so it "joins an existing cluster" as a fresh incarnation
    while its incarnation 0 stays a voter that will never answer, until the
    join completes. With two such nodes the initial membership has one live
    voter out of three, and only votes given by new incarnations on behalf of
    the old ones (see the test above) get a leader elected.
    """
    cluster = make_cluster(3, start=False)
    cluster.node(1).spawn()
    time.sleep(0.1)  # node 1 probes first and finds nobody
    cluster.node(2).spawn()
    cluster.node(3).spawn()
    for node in cluster.nodes.values():
        node.wait_ping()
    cluster.wait_stable(timeout=40)
    ids = {m: cluster.info(m)["raft_node_id"] for m in cluster.nodes}
    first_logs = {
        m: [line for line in cluster.node(m).log().splitlines() if "starting Raft" in line]
        for m in cluster.nodes
    }
    assert ids == {m: f"{m}.0" for m in cluster.nodes}, (
        f"after a first start of all three nodes, the raft node ids are {ids}; "
        f"bootstrap decisions: {first_logs}"
    )


def test_nodes_started_together_elect_without_a_split_vote(make_cluster):
    """Three nodes started together elect their first leader in term 1 and log
    no error doing it.

    openraft starts an election the moment a node initializes. When every node
    initialized at once, all three stood as candidates in term 1, split the
    vote, and the first leader came an election timeout later, in term 2; vote
    requests that reached a node whose Raft did not exist yet failed with
    "raft is starting", which openraft logs as an error. Now the nodes
    initialize half an election timeout apart in --peers order, and a Raft RPC
    waits for the receiving node's Raft to start.
    """
    cluster = make_cluster(3)
    leader = cluster.leader(timeout=30)
    terms = {m: cluster.info(m).get("raft_term") for m in cluster.nodes}
    errors = {
        m: [line for line in cluster.node(m).log().splitlines() if " ERROR " in line]
        for m in cluster.nodes
    }
    assert all(not lines for lines in errors.values()), f"errors logged at start: {errors}"
    assert terms == {m: "1" for m in cluster.nodes}, (
        f"node {leader} leads, but the terms are {terms} (a split first election)"
    )


def test_write_during_isolation_is_not_acknowledged_later(make_cluster):
    """A write that got CLUSTERDOWN/UNCERTAIN on an isolated leader is never
    acknowledged afterwards, and the same connection serves again once the
    followers are back (no reply is left queued on it)."""
    cluster = make_cluster(3, args=["--request-timeout", "1500"])
    leader = cluster.leader()
    followers = [m for m in cluster.nodes if m != leader]
    c = cluster.client(leader, socket_timeout=20)
    for f in followers:
        cluster.sigstop(f)
    try:
        for i in range(3):
            try:
                c.incr("iso")
                raise AssertionError("an INCR on an isolated leader was acknowledged")
            except redis.exceptions.RedisError as e:
                assert error_kind(e) in ("clusterdown", "uncertain"), e
    finally:
        for f in followers:
            cluster.sigcont(f)
    new_leader = cluster.leader(timeout=20)
    # The connection is still usable, and its replies line up with requests.
    cluster.wait_for("a write on the old leader's connection to succeed",
                     lambda: _set_ok(c, "probe"), timeout=20)
    assert c.get("probe") == "p"
    value = int(c.get("iso") or 0)
    assert 0 <= value <= 3
    assert c.incr("iso") == value + 1
    c.close()
    print(f"\nnew leader {new_leader}; uncertain INCRs applied: {value} of 3")
    cluster.assert_digests_equal()


def _set_ok(c: redis.Redis, key: str) -> bool:
    try:
        return c.set(key, "p") is True
    except redis.exceptions.RedisError as e:
        if error_kind(e) in ("clusterdown", "uncertain"):
            return False
        raise


def _resp_get(sock, key: str) -> bytes:
    """Sends GET key on a raw socket (RESP2) without reading the reply."""
    k = key.encode()
    sock.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k), k))


def _connections_reading(cluster: Cluster, m: int, key: str, expected: bytes, n: int = 16):
    """Opens n raw connections to node m; on each, GET key must answer expected."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", cluster.node(m).resp_port), timeout=30)
        _resp_get(s, key)
        assert _resp_read(s) == expected
        socks.append(s)
    return socks


def _read_and_close(socks) -> list:
    """Reads one reply from each connection, then closes them."""
    replies = [_resp_read(s) for s in socks]
    for s in socks:
        s.close()
    return replies


def _resp_read(sock) -> bytes:
    """Reads one RESP2 reply (simple string, error, integer or bulk string)."""
    data = b""
    while True:
        if b"\r\n" in data:
            header, _, rest = data.partition(b"\r\n")
            if not header.startswith(b"$") or int(header[1:]) < 0:
                return data
            if len(rest) >= int(header[1:]) + 2:
                return data
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize("consistency", ["linearizable", "lease"])
def test_old_leader_resumed_after_pause_serves_no_stale_read(make_cluster, consistency):
    """A leader is paused (SIGSTOP) long enough for the others to elect a new
    leader, which acknowledges a new value of `k`. GETs sent to the old
    leader while it was paused are read when it resumes: they must not return
    the old value (a newer write was already acknowledged), whatever the read
    consistency (lease reads rely on the lease having expired, which it has:
    the pause outlasted election timeout + lease).

    Repeated up to 6 times (the old leader learns of the new term within
    milliseconds of resuming, so each try is a race; with the current lease
    check most tries show the stale read).
    """
    cluster = make_cluster(3, args=["--read-consistency", consistency])
    stale = []
    tries = 6
    for t in range(tries):
        leader = cluster.wait_stable(timeout=30)
        others = [m for m in cluster.nodes if m != leader]
        lc = cluster.client(leader)
        assert lc.set("k", f"old-{t}") is True
        lc.close()
        socks = _connections_reading(cluster, leader, "k", f"$5\r\nold-{t}\r\n".encode())
        cluster.sigstop(leader)
        try:
            def new_leader():
                infos = cluster.infos(others)
                ls = [m for m, i in infos.items() if i.get("raft_role") == "leader"]
                return ls[0] if len(ls) == 1 else None

            n = cluster.wait_for("a new leader among the others", new_leader, timeout=20)
            nc = cluster.client(n)
            assert nc.set("k", f"new-{t}") is True  # acknowledged before the GETs below
            nc.close()
            for s in socks:
                _resp_get(s, "k")
        finally:
            cluster.sigcont(leader)
        replies = _read_and_close(socks)
        old = [r for r in replies if f"old-{t}".encode() in r]
        print(f"\ntry {t}: old leader {leader}, new leader {n}: "
              f"{len(old)} of {len(replies)} GETs returned the old value")
        if old:
            stale.append((t, leader, n, len(old), old[:2]))
            break
        for r in replies:
            assert r == f"$5\r\nnew-{t}\r\n".encode() or r.startswith(b"-"), r
    assert not stale, (
        f"{consistency} reads: the resumed old leader answered GET k with the old value after "
        f"the new leader had acknowledged SET k new: (try, old leader, new leader, stale "
        f"replies, sample) = {stale}"
    )
    cluster.wait_stable(timeout=30)
    cluster.assert_digests_equal()


def test_quickly_restarted_follower_does_not_crash_the_leader(make_cluster):
    """A follower that crashes and is restarted at once (as a supervisor
    would) while clients keep writing rejoins as a new incarnation; three
    rounds. The leader must keep working.

    The leader still replicates to the old incarnation at the member's
    address; if the new process answers those AppendEntries (the receiver
    does not check that it is their target), its empty log looks like the
    old incarnation's log went backwards, and openraft's leader panics
    ("follower log reversion is not allowed") — its Raft core stops while
    the process keeps running and keeps reporting itself as leader.
    """
    cluster = make_cluster(3)
    for rnd in range(3):
        leader = cluster.wait_stable(timeout=30)
        follower = [m for m in cluster.nodes if m != leader][rnd % 2]
        stop = threading.Event()
        acked = []

        def writer():
            c = cluster.client(leader, socket_timeout=10)
            i = 0
            while not stop.is_set():
                try:
                    if c.set(f"r{rnd}:{i}", i) is True:
                        acked.append(f"r{rnd}:{i}")
                except redis.exceptions.RedisError:
                    pass
                i += 1
                time.sleep(0.005)
            c.close()

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        try:
            cluster.wait_for("writes to flow", lambda: len(acked) >= 20, timeout=20)
            cluster.kill9(follower)
            time.sleep(0.2)  # down for a moment, while writes continue
            cluster.restart(follower)
            new_id = cluster.wait_voter(follower, timeout=30)
        finally:
            stop.set()
            t.join(30)
        print(f"\nround {rnd}: leader {leader}, follower {follower} rejoined as {new_id}, "
              f"{len(acked)} writes acknowledged")
        assert not cluster.panics(), cluster.panics()
    cluster.wait_stable(timeout=30)
    cluster.assert_digests_equal()


@pytest.mark.parametrize("consistency", ["linearizable", "lease"])
def test_resumed_follower_serves_no_stale_read(make_cluster, consistency):
    """Followers serve linearizable (and lease) reads from their own replica
    after the leader hands them a read index. A follower is paused while the
    leader acknowledges a new value of `k`; GETs sent to the follower while it
    was paused are read when it resumes, when its replica still holds the old
    value: every one must return the new value."""
    cluster = make_cluster(3, args=["--read-consistency", consistency])
    leader = cluster.wait_stable(timeout=30)
    follower = next(m for m in cluster.nodes if m != leader)
    lc = cluster.client(leader)
    assert lc.set("k", "old") is True
    socks = _connections_reading(cluster, follower, "k", b"$3\r\nold\r\n")
    cluster.sigstop(follower)
    try:
        assert lc.set("k", "new") is True  # acknowledged by the leader and the third node
        for s in socks:
            _resp_get(s, "k")
    finally:
        cluster.sigcont(follower)
    replies = _read_and_close(socks)
    print(f"\nGETs on the resumed follower: {sorted(set(replies))}")
    assert replies == [b"$3\r\nnew\r\n"] * len(socks)
    lc.close()
    cluster.assert_digests_equal()

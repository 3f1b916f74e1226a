"""A memory-only cluster wedged by a correlated crash (issue 21).

A memory-only node that restarts is a new incarnation; its old incarnation
stays a voter until the leader swaps them, which needs a quorum of the
current voters. When a majority of the voters crash together, that quorum
is gone for good. These tests check that the cluster gets out:

- by itself when the survivor is the last leader and can prove it holds
  every committed write (two followers killed together): nothing
  acknowledged is lost;
- otherwise (a follower survived alone) it says so in INFO (`raft_wedged`),
  in `raftcachectl status` and in its log, with the one command that
  re-forms it (`raftcachectl force-new-cluster`), and that command works.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import redis

from harness import error_kind, raftcachectl_bin

KEYS = 50_000


def load(cluster, through: int) -> int:
    """KEYS keys of 100 bytes through one node (pipelined MSET), then 100
    acknowledged INCRs of `acked`; returns that count."""
    c = cluster.client(through, socket_timeout=60)
    value = "v" * 100
    batch = 1_000
    for start in range(0, KEYS, batch):
        c.mset({f"key:{i}": value for i in range(start, start + batch)})
    acked = sum(1 for _ in range(100) if c.incr("acked"))
    c.close()
    return acked


def write_everywhere(cluster, key: str, timeout: float = 60.0) -> float:
    """Waits until an INCR of `key` succeeds through every node; returns how
    long that took."""
    start = time.monotonic()
    pending = set(cluster.nodes)
    last = {}
    while pending and time.monotonic() - start < timeout:
        for m in sorted(pending):
            try:
                c = cluster.client(m, socket_timeout=5)
                c.incr(key)
                c.close()
                pending.discard(m)
            except (redis.exceptions.RedisError, OSError) as e:
                last[m] = repr(e)
        time.sleep(0.2)
    assert not pending, f"no write succeeded through {sorted(pending)} within {timeout} s: {last}"
    return time.monotonic() - start


def assert_everything_there(cluster, acked: int) -> None:
    for m in cluster.nodes:
        c = cluster.client(m, socket_timeout=30)
        assert c.dbsize() >= KEYS, (m, c.dbsize())
        assert c.get(f"key:{KEYS - 1}") == "v" * 100
        assert int(c.get("acked")) == acked, (m, c.get("acked"), acked)
        c.close()


def test_two_memory_only_followers_killed_together_recover_by_themselves(make_cluster):
    """Both followers are killed 0 ms apart and restarted at once. The leader
    is the last leader and saw both processes gone within a lease of their
    last acknowledgement, so it re-forms the voters by itself; the new
    incarnations join, and writes succeed through every node without a
    person. Every acknowledged write survives; the digests agree."""
    cluster = make_cluster(3)
    leader = cluster.wait_stable(timeout=30)
    f1, f2 = cluster.followers(leader)
    acked = load(cluster, leader)
    term = int(cluster.info(leader)["raft_term"])

    cluster.kill9(f1)
    cluster.kill9(f2)
    for m in (f1, f2):
        cluster.nodes[m].spawn()
    for m in (f1, f2):
        cluster.nodes[m].wait_ping()
    took = write_everywhere(cluster, "after")
    print(f"\nwrites through every node {took:.1f} s after the restarts")

    log = cluster.nodes[leader].log()
    assert "re-forming from it" in log, "the leader did not re-form the cluster"
    info = cluster.info(leader)
    assert int(info["raft_term"]) > term
    assert info["raft_wedged"] == "0"
    cluster.wait_for("both new incarnations to be voters",
                     lambda: all(cluster.info(m)["raft_ready"] == "1" for m in cluster.nodes),
                     timeout=60)
    assert_everything_there(cluster, acked)
    cluster.assert_digests_equal()


def ctl(*args: str, endpoint: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("RAFTCACHE_ADMIN_TOKEN", None)
    return subprocess.run([raftcachectl_bin(), "--endpoints", endpoint, *args],
                          capture_output=True, text=True, timeout=120, env=env)


def test_a_lone_surviving_follower_tells_the_operator_and_force_new_cluster_reforms(make_cluster):
    """The leader and a follower are killed together and restarted. The
    survivor was a follower: it cannot prove it holds every committed write,
    so it does not re-form by itself; it reports `raft_wedged:1` (INFO,
    `raftcachectl status`) and logs the command. `force-new-cluster` without
    --yes refuses; with it, the cluster serves again through every node. The
    survivor had applied everything before the crash, so nothing is lost."""
    cluster = make_cluster(3)
    leader = cluster.wait_stable(timeout=30)
    f1, survivor = cluster.followers(leader)
    acked = load(cluster, leader)
    cluster.wait_applied_equal()

    cluster.kill9(leader)
    cluster.kill9(f1)
    for m in (leader, f1):
        cluster.nodes[m].spawn()
    for m in (leader, f1):
        cluster.nodes[m].wait_ping()
    cluster.wait_for("the survivor to report raft_wedged:1",
                     lambda: cluster.info(survivor).get("raft_wedged") == "1", timeout=30)
    s = cluster.client(survivor, socket_timeout=30)
    try:
        s.set("during", 1)
        raise AssertionError("a wedged cluster acknowledged a write")
    except redis.exceptions.ResponseError as e:
        assert error_kind(e) in ("clusterdown", "uncertain"), e
    s.close()
    endpoint = f"127.0.0.1:{cluster.nodes[survivor].admin_port}"
    status = ctl("status", endpoint=endpoint)
    assert "wedged" in status.stdout, status.stdout
    cluster.wait_for("the survivor to log the command",
                     lambda: "force-new-cluster" in cluster.nodes[survivor].log(), timeout=30)

    refused = ctl("force-new-cluster", endpoint=endpoint)
    assert refused.returncode == 1 and "--yes" in refused.stderr, (refused.stdout, refused.stderr)
    assert cluster.info(survivor)["raft_wedged"] == "1"

    done = ctl("force-new-cluster", "--yes", endpoint=endpoint)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "re-formed the cluster" in done.stdout, done.stdout
    assert "may have been lost" in done.stdout, done.stdout
    took = write_everywhere(cluster, "after")
    print(f"\n{done.stdout.strip()}\nwrites through every node {took:.1f} s after force-new-cluster")
    cluster.wait_for("every node to be a ready voter",
                     lambda: all(cluster.info(m)["raft_ready"] == "1" for m in cluster.nodes),
                     timeout=60)
    assert_everything_there(cluster, acked)
    cluster.assert_digests_equal()


def _incarnation(info) -> int:
    return int(info["raft_node_id"].split(".")[1])


@pytest.mark.parametrize("when", ["joining", "learner"])
def test_restarting_the_next_node_before_the_signal_never_deadlocks_quietly(make_cluster, when):
    """A rolling restart done wrong: a memory-only node is restarted, and the
    other two are killed and restarted before it is ready (a voter), while
    it is still joining (a new incarnation with no membership, or a learner
    catching up). Every acknowledged write may be gone (no member holds the
    cluster any more: a pure cache), but the cluster must not stay stuck
    without saying so: either it starts over by itself (every member is
    there and none holds the cluster), or a node reports `raft_wedged:1`
    and `force-new-cluster` on it brings the cluster back. Either way, writes
    then succeed through every node and the replicas agree."""
    cluster = make_cluster(3)
    leader = cluster.wait_stable(timeout=30)
    first, *others = [leader] + cluster.followers(leader)
    load(cluster, leader)
    cluster.kill9(first)
    cluster.restart(first)
    cluster.wait_for("the restarted node to run as a new incarnation",
                     lambda: _incarnation(cluster.info(first)) != 0, timeout=30)
    if when == "learner":
        new_id = cluster.info(first)["raft_node_id"]
        cluster.wait_for("the leader to list it (a learner, or already a voter)",
                         lambda: new_id in cluster.info(others[0])["raft_members"], timeout=30)
    state = cluster.info(first)
    early = state["raft_ready"] == "0"
    for m in others:
        cluster.kill9(m)
    # Both at once, and without waiting for PING: a node that sees a member
    # waiting to join a cluster that no reachable member holds does not
    # start (nor answer clients) until it can start over or join.
    for m in others:
        cluster.nodes[m].spawn()

    def settled():
        infos = cluster.infos()
        if any(i.get("raft_wedged") == "1" for i in infos.values()):
            return True
        try:
            write_everywhere(cluster, "probe", timeout=2)
            return True
        except AssertionError:
            return False

    cluster.wait_for("the cluster to serve again or report the wedge", settled, timeout=60)
    wedged = [m for m, i in cluster.infos().items() if i.get("raft_wedged") == "1"]
    how = "started over by itself"
    if wedged:
        endpoint = f"127.0.0.1:{cluster.nodes[wedged[0]].admin_port}"
        done = ctl("force-new-cluster", "--yes", endpoint=endpoint)
        assert done.returncode == 0, (done.stdout, done.stderr)
        how = f"node {wedged[0]} reported the wedge; force-new-cluster: {done.stdout.strip()}"
    for m in others:
        cluster.nodes[m].wait_ping(timeout=60)
    took = write_everywhere(cluster, "after")
    cluster.wait_for("every node to be a ready voter",
                     lambda: all(cluster.info(m)["raft_ready"] == "1" for m in cluster.nodes),
                     timeout=60)
    cluster.assert_digests_equal()
    print(f"\n{when}: restarted node {first} not ready when the others died: {early}; {how}; "
          f"writes through every node {took:.1f} s later")

"""WAIT on a three-node cluster (issue 19): the number of other nodes whose
log holds every write acknowledged to the client, through the leader and a
follower, with a node stopped, and refused inside MULTI (a documented
difference: it asks the other nodes)."""

from __future__ import annotations

import time

import pytest
import redis


def roles(cluster):
    leader = cluster.wait_stable(timeout=30)
    f1, f2 = cluster.followers(leader)
    return leader, f1, f2


@pytest.mark.parametrize("via", ["leader", "follower"])
def test_wait_counts_the_other_nodes_holding_the_write(make_cluster, via):
    cluster = make_cluster(3)
    leader, f1, f2 = roles(cluster)
    c = cluster.client(leader if via == "leader" else f1, socket_timeout=20)
    for i in range(20):
        assert c.set(f"w{i}", i)
        # Both other nodes hold it within a second on a healthy cluster.
        assert c.wait(2, 1000) == 2
    assert c.wait(0, 0) >= 1, "an acknowledged write is on a majority"
    c.close()


def test_wait_with_a_node_stopped_answers_what_holds_after_the_timeout(make_cluster):
    cluster = make_cluster(3)
    leader, f1, f2 = roles(cluster)
    c = cluster.client(leader, socket_timeout=20)
    cluster.sigstop(f2)
    try:
        assert c.set("stopped", "1")
        started = time.monotonic()
        assert c.wait(2, 300) == 1, "only the running follower holds it"
        assert time.monotonic() - started >= 0.3, "WAIT returned before its timeout"
        # A count that is there already answers at once.
        assert c.wait(1, 0) == 1
    finally:
        cluster.sigcont(f2)
    assert c.wait(2, 5000) == 2, "the resumed follower catches up"
    c.close()


def test_wait_inside_multi_is_refused(make_cluster):
    cluster = make_cluster(3)
    leader, _, _ = roles(cluster)
    c = cluster.client(leader, socket_timeout=20)
    p = c.pipeline(transaction=True)
    p.set("m", "1")
    p.execute_command("WAIT", 1, 0)
    with pytest.raises(redis.exceptions.ResponseError,
                       match="not allowed inside a transaction"):
        p.execute()
    assert c.get("m") is None
    c.close()

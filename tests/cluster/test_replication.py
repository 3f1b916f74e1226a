"""Replication tests: real node processes, real faults (SIGKILL, SIGSTOP).

Each test starts its own cluster on free loopback ports (see harness.py) and
checks what clients see and what the replicas hold (admin Digest at the same
applied index). Timings are never asserted except the failover target (a new
leader serves a write < 3 s after the leader is killed, default settings);
every wait is a poll with a deadline.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from typing import Dict, List

import pytest
import redis

from harness import Cluster, WriteLoad, error_kind, members_of

FAILOVER_TARGET_S = 3.0
# PTTL read on any node right after `SET k v PX 1500` is 1500 minus the time
# elapsed since the leader stamped the write, within this many milliseconds
# (the stamp is taken between our send and our ack; this covers clock reads
# and rounding on a loaded machine).
TTL_BOUND_MS = 250


def mget_all(client: redis.Redis, keys: List[str], chunk: int = 500) -> Dict[str, object]:
    out = {}
    for i in range(0, len(keys), chunk):
        part = keys[i : i + chunk]
        out.update(zip(part, client.mget(part)))
    return out


def wait_write_ok(cluster: Cluster, m: int, key: str, timeout: float = 20.0) -> float:
    """SETs key through member m until acknowledged; returns when (monotonic)."""

    def attempt():
        c = cluster.client(m, socket_timeout=10)
        try:
            return c.set(key, "ok")
        except redis.exceptions.ResponseError as e:
            if error_kind(e) in ("clusterdown", "uncertain"):
                return False
            raise
        finally:
            c.close()

    cluster.wait_for(f"a write through node {m} to be acknowledged", attempt, timeout=timeout)
    return time.monotonic()


# --- 1. every node accepts writes; every node reads all of them ----------------


def test_writes_through_each_node_are_read_everywhere(make_cluster):
    cluster = make_cluster(3)
    leader = cluster.leader()
    clients = {m: cluster.client(m) for m in cluster.nodes}
    for m, c in clients.items():
        info = c.info("replication")
        assert info["read_consistency"] == "linearizable"
        assert info["follower_mode"] == "proxy"
        assert info["raft_role"] == ("leader" if m == leader else "follower")

    for m, c in clients.items():
        assert c.set(f"str:{m}", f"value-{m}") is True
        assert c.incr("counter") >= 1
        assert c.incrby("counter", 10) >= 11
        assert c.hset("hash", mapping={f"f{m}": m, "shared": m}) >= 1
        assert c.lpush("list", f"item-{m}") == m
        assert c.sadd("set", f"member-{m}", "common") >= 1
        assert c.zadd("zset", {f"z{m}": m * 1.5}) == 1
        assert c.append("appended", f"<{m}>") == 3 * m
        assert c.set(f"tmp:{m}", "gone") is True
        assert c.delete(f"tmp:{m}") == 1

    n = len(clients)
    for m, c in clients.items():
        for w in clients:
            assert c.get(f"str:{w}") == f"value-{w}", f"read through node {m}"
            assert c.exists(f"tmp:{w}") == 0
        assert c.get("counter") == str(11 * n)
        assert c.hgetall("hash") == {**{f"f{w}": str(w) for w in clients}, "shared": str(n)}
        assert c.lrange("list", 0, -1) == [f"item-{w}" for w in sorted(clients, reverse=True)]
        assert c.smembers("set") == {"common", *(f"member-{w}" for w in clients)}
        assert c.zrange("zset", 0, -1, withscores=True) == [(f"z{w}", w * 1.5) for w in clients]
        assert c.get("appended") == "".join(f"<{w}>" for w in clients)
        assert c.dbsize() == n + 6

    digests = cluster.assert_digests_equal()
    assert {d.keys for d in digests.values()} == {n + 6}
    print(f"digests: { {m: (d.applied_index, d.digest[:12]) for m, d in digests.items()} }")
    for c in clients.values():
        c.close()


# --- 2. kill -9 the leader under a steady write load -----------------------------


def test_kill_leader_under_write_load(make_cluster):
    cluster = make_cluster(3)
    old_leader = cluster.leader()
    load = WriteLoad(cluster, set_writers=[1, 2, 3, 1, 2, 3], incr_writers=[1, 2, 3]).start()
    try:
        cluster.wait_for("300 acknowledged writes before the kill",
                         lambda: len(load.of("set", "ack")) + len(load.of("incr", "ack")) >= 300,
                         timeout=30)
        t_kill = time.monotonic()
        cluster.kill9(old_leader)

        def served_after_kill():
            acked = [o.end for o in list(load.outcomes)
                     if o.result == "ack" and o.start >= t_kill]
            return min(acked) if acked else None

        first_ack = cluster.wait_for("a write sent after the kill to be acknowledged",
                                     served_after_kill, timeout=20)
        failover = first_ack - t_kill
        new_leader = cluster.leader(timeout=20)
        print(f"\nkilled leader {old_leader}; node {new_leader} leads; "
              f"first write acknowledged {failover:.3f}s after the kill")
        # Keep the load going a bit on the new leader.
        acked_then = len(load.of("set", "ack"))
        cluster.wait_for("300 more acknowledged SETs after the failover",
                         lambda: len(load.of("set", "ack")) >= acked_then + 300, timeout=30)
    finally:
        load.stop()

    counts = load.counts()
    print(f"outcomes: {counts}")
    errors = [o for o in load.outcomes if o.result == "error"]
    assert not errors, f"{len(errors)} unexpected replies, e.g. {errors[:5]}"

    live = [m for m in cluster.nodes if m != old_leader]
    sets = load.of("set")
    acked = {o.key: o.value for o in sets if o.result == "ack"}
    not_applied = [o.key for o in sets if o.result == "clusterdown"]
    for m in live:
        c = cluster.client(m)
        got = mget_all(c, list(acked) + not_applied)
        missing = {k: (v, got[k]) for k, v in acked.items() if got[k] != v}
        assert not missing, (f"node {m}: {len(missing)} of {len(acked)} acknowledged SETs "
                             f"lost or wrong, e.g. {list(missing.items())[:5]}")
        applied = [k for k in not_applied if got[k] is not None]
        assert not applied, f"SETs answered CLUSTERDOWN (nothing applied) were applied: {applied[:5]}"
        for ctr in load.counters:
            incrs = [o for o in load.of("incr") if o.key == ctr]
            n_ack = sum(o.result == "ack" for o in incrs)
            n_unknown = sum(o.result in ("uncertain", "lost") for o in incrs)
            value = int(c.get(ctr) or 0)
            assert n_ack <= value <= n_ack + n_unknown, (
                f"node {m}: {ctr} = {value}, but {n_ack} INCRs were acknowledged and "
                f"{n_unknown} had an unknown outcome"
            )
        c.close()

    cluster.restart(old_leader)
    cluster.wait_voter(old_leader, timeout=40)
    digests = cluster.assert_digests_equal(timeout=40)
    assert set(digests) == set(cluster.nodes)
    print(f"after restart: { {m: (d.applied_index, d.keys) for m, d in digests.items()} }")
    assert failover < FAILOVER_TARGET_S, (
        f"a new leader served a write {failover:.3f}s after the leader was killed "
        f"(target < {FAILOVER_TARGET_S}s)"
    )


# --- 3. an isolated leader acknowledges nothing -----------------------------------


def test_isolated_leader_acknowledges_nothing(make_cluster):
    cluster = make_cluster(3, args=["--request-timeout", "1500"])
    leader = cluster.leader()
    followers = [m for m in cluster.nodes if m != leader]
    c = cluster.client(leader, socket_timeout=20)
    assert c.set("before", "1") is True
    assert c.get("before") == "1"

    for f in followers:
        cluster.sigstop(f)
    try:
        t0 = time.monotonic()
        with pytest.raises(redis.exceptions.RedisError) as write_err:
            c.set("isolated", "x")
        took = time.monotonic() - t0
        print(f"\nwrite on the isolated leader: {write_err.value} after {took:.2f}s")
        assert error_kind(write_err.value) in ("clusterdown", "uncertain"), write_err.value

        t0 = time.monotonic()
        with pytest.raises(redis.exceptions.RedisError) as read_err:
            value = c.get("before")
            print(f"linearizable GET on the isolated leader returned {value!r}")
        took = time.monotonic() - t0
        print(f"linearizable GET on the isolated leader: {read_err.value} after {took:.2f}s")
        assert error_kind(read_err.value) in ("clusterdown", "uncertain"), read_err.value

        with pytest.raises(redis.exceptions.RedisError) as incr_err:
            c.incr("isolated-counter")
        assert error_kind(incr_err.value) in ("clusterdown", "uncertain"), incr_err.value
    finally:
        for f in followers:
            cluster.sigcont(f)

    new_leader = cluster.leader(timeout=20)
    wait_write_ok(cluster, new_leader, "after")
    for m in cluster.nodes:
        wait_write_ok(cluster, m, f"after:{m}")
        r = cluster.client(m)
        assert r.get("before") == "1"
        assert r.get(f"after:{m}") == "ok"
        assert r.get("isolated") in (None, "x")  # its outcome was unknown
        r.close()
    cluster.assert_digests_equal()
    c.close()


# --- 4. TTL across nodes and failover ---------------------------------------------


def _pttls_agree(cluster: Cluster, key: str, s_start: float, s_end: float, stale: bool):
    """PTTL of key on every up node is 1500 - elapsed since the stamp, ± bound."""
    readings = {}
    for m in cluster.up():
        c = cluster.client(m)
        while True:  # stale reads: the replica may not have the entry yet
            q_start = time.monotonic()
            pttl = c.pttl(key)
            q_end = time.monotonic()
            if pttl != -2 or not stale or q_end - s_end > 1.0:
                break
        c.close()
        lo = 1500 - (q_end - s_start) * 1000 - TTL_BOUND_MS
        hi = 1500 - (q_start - s_end) * 1000 + TTL_BOUND_MS
        readings[m] = (pttl, round(lo), round(hi))
        assert lo <= pttl <= hi, f"node {m}: PTTL {pttl} outside [{lo:.0f}, {hi:.0f}]"
    print(f"\nPTTL (value, low, high) per node: {readings}")
    values = [r[0] for r in readings.values()]
    return values


@pytest.mark.parametrize("consistency", ["linearizable", "stale"])
def test_ttl_expires_on_every_node(make_cluster, consistency):
    cluster = make_cluster(3, args=["--read-consistency", consistency])
    stale = consistency == "stale"
    c1 = cluster.client(1)
    s_start = time.monotonic()
    assert c1.set("ttl-key", "v", px=1500) is True
    s_end = time.monotonic()
    _pttls_agree(cluster, "ttl-key", s_start, s_end, stale)

    # Past the expiry (counted from our send, which precedes the stamp), the
    # key is invisible on every read path of every node at once.
    cluster.wait_for("the expiry time", lambda: time.monotonic() > s_end + 1.55, timeout=5)
    for m in cluster.nodes:
        c = cluster.client(m)
        assert c.get("ttl-key") is None, f"node {m} returns an expired key"
        assert c.exists("ttl-key") == 0, f"node {m}"
        assert c.pttl("ttl-key") == -2, f"node {m}"
        c.close()
    # The purge removes it physically, at the same log index everywhere.
    for m in cluster.nodes:
        c = cluster.client(m)
        cluster.wait_for(f"DBSIZE 0 on node {m}", lambda: c.dbsize() == 0, timeout=15)
        c.close()
    cluster.wait_for("digest key counts 0 on every node",
                     lambda: all(d.keys == 0 for d in cluster.digests().values()), timeout=15)
    cluster.assert_digests_equal()
    c1.close()


@pytest.mark.parametrize("consistency", ["linearizable", "stale"])
def test_ttl_expiry_survives_leader_kill(make_cluster, consistency):
    cluster = make_cluster(3, args=["--read-consistency", consistency])
    stale = consistency == "stale"
    leader = cluster.leader()
    c1 = cluster.client(1)
    s_start = time.monotonic()
    assert c1.set("ttl-key", "v", px=1500) is True
    s_end = time.monotonic()
    assert c1.set("keeper", "stays") is True
    c1.close()
    cluster.kill9(leader)
    expire_at = s_end + 1.5  # no later than this (the stamp is before s_end)

    # Watch every live node until well after the expiry and through the
    # restart of the killed node: before the expiry the key may be visible or
    # the read may fail during the failover; after it, it is never visible.
    seen_after = []
    seen_lost = []
    reads = 0

    def watch_until(deadline: float):
        nonlocal reads
        while time.monotonic() < deadline:
            for m in cluster.up():
                c = cluster.client(m, socket_timeout=10)
                try:
                    t0 = time.monotonic()
                    value = c.get("ttl-key")
                    t1 = time.monotonic()
                except redis.exceptions.RedisError as e:
                    assert error_kind(e) in ("clusterdown", "uncertain", "connection"), e
                    continue
                finally:
                    c.close()
                reads += 1
                if t0 > expire_at + 0.05 and value is not None:
                    seen_after.append((m, round(t0 - expire_at, 3), value))
                if t1 < s_start + 1.5 - TTL_BOUND_MS / 1000 and value is None and not stale:
                    seen_lost.append((m, round(t1 - s_start, 3)))
            time.sleep(0.02)

    watch_until(expire_at + 2.0)
    new_leader = cluster.leader(timeout=20)
    print(f"\nkilled leader {leader}, node {new_leader} leads; {reads} reads")
    assert not seen_lost, f"an acknowledged, unexpired key was missing: {seen_lost}"
    assert not seen_after, f"an expired key was visible: {seen_after}"

    for m in cluster.up():
        c = cluster.client(m)
        cluster.wait_for(f"DBSIZE 1 on node {m}", lambda: c.dbsize() == 1, timeout=15)
        assert c.get("keeper") == "stays"
        c.close()

    cluster.restart(leader)
    cluster.wait_voter(leader, timeout=40)
    watch_until(time.monotonic() + 1.0)
    assert not seen_after, f"an expired key reappeared: {seen_after}"
    digests = cluster.assert_digests_equal(timeout=40)
    assert all(d.keys == 1 for d in digests.values()), digests
    c = cluster.client(leader)
    assert c.get("ttl-key") is None
    assert c.exists("ttl-key") == 0
    c.close()


# --- 5. duplicate suppression of retried forwarded writes ---------------------------


def test_incr_through_follower_counts_once_across_leader_kill(make_cluster):
    cluster = make_cluster(3)
    leader = cluster.leader()
    follower = [m for m in cluster.nodes if m != leader][0]
    per_thread, threads = 60, 4  # 240 INCRs through the follower
    outcomes: List[str] = []
    lock = threading.Lock()
    started = threading.Barrier(threads + 1)

    def run():
        c = cluster.client(follower, socket_timeout=20)
        started.wait()
        for _ in range(per_thread):
            try:
                reply = c.incr("dup")
                result = "ack" if isinstance(reply, int) else f"error {reply!r}"
            except redis.exceptions.RedisError as e:
                kind = error_kind(e)
                result = kind if kind in ("clusterdown", "uncertain") else f"error {e!r}"
            with lock:
                outcomes.append(result)
        c.close()

    workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    started.wait()
    cluster.wait_for("half of the INCRs to be answered",
                     lambda: len(outcomes) >= per_thread * threads // 2, timeout=30)
    cluster.kill9(leader)
    for w in workers:
        w.join(60)
        assert not w.is_alive()

    tally = {k: outcomes.count(k) for k in set(outcomes)}
    print(f"\nINCR outcomes through follower {follower} (leader {leader} killed): {tally}")
    assert not [o for o in outcomes if o.startswith("error")], tally
    acked, uncertain = tally.get("ack", 0), tally.get("uncertain", 0)
    for m in cluster.up():
        c = cluster.client(m)
        value = int(c.get("dup") or 0)
        c.close()
        assert acked <= value <= acked + uncertain, (
            f"node {m}: counter {value}, {acked} INCRs acknowledged, {uncertain} uncertain"
        )
    if uncertain == 0:
        assert value == acked
    cluster.assert_digests_equal()


# --- 6. redirect mode ----------------------------------------------------------------


def test_redirect_mode_moved_and_cluster_client(make_cluster):
    cluster = make_cluster(3, args=["--follower-mode", "redirect"])
    leader = cluster.leader()
    follower = [m for m in cluster.nodes if m != leader][0]
    lnode, fnode = cluster.node(leader), cluster.node(follower)
    assert cluster.info(follower)["follower_mode"] == "redirect"

    fc = cluster.client(follower)
    with pytest.raises(redis.exceptions.ResponseError) as moved:
        fc.set("a", "b")
    assert error_kind(moved.value) == "moved", moved.value
    assert str(moved.value).split() == ["0", lnode.resp_addr], str(moved.value)
    # A linearizable read on a follower is redirected too.
    with pytest.raises(redis.exceptions.ResponseError) as moved_read:
        fc.get("a")
    assert str(moved_read.value).split() == ["0", lnode.resp_addr], str(moved_read.value)
    fc.close()

    redis_cli = shutil.which("redis-cli")
    assert redis_cli, "redis-cli is not on PATH (apt-get install redis-tools)"
    out = subprocess.run(
        [redis_cli, "-c", "-h", "127.0.0.1", "-p", str(fnode.resp_port), "set", "a", "b"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0 and out.stdout.strip() == "OK", (out.stdout, out.stderr)
    out = subprocess.run(
        [redis_cli, "-c", "-h", "127.0.0.1", "-p", str(fnode.resp_port), "get", "a"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.stdout.strip() == "b", (out.stdout, out.stderr)

    lc = cluster.client(leader)
    assert lc.get("a") == "b"
    lc.close()
    cluster.assert_digests_equal()


# --- 7. read consistency modes ---------------------------------------------------------


def test_stale_reads_are_local_on_followers(make_cluster):
    cluster = make_cluster(3, args=["--read-consistency", "stale"])
    leader = cluster.leader()
    followers = [m for m in cluster.nodes if m != leader]
    for m in cluster.nodes:
        assert cluster.info(m)["read_consistency"] == "stale"
    lc = cluster.client(leader)
    for i in range(50):
        assert lc.set(f"s:{i}", i) is True
    assert lc.incrby("total", 50) == 50
    # Eventually correct on every follower.
    for f in followers:
        c = cluster.client(f)
        cluster.wait_for(f"follower {f} to catch up",
                         lambda: c.get("total") == "50" and c.get("s:49") == "49", timeout=15)
        assert c.mget([f"s:{i}" for i in range(50)]) == [str(i) for i in range(50)]
        c.close()
    cluster.assert_digests_equal()

    # Served locally: with the leader paused the followers still answer reads
    # at once (a linearizable read would need the leader).
    cluster.sigstop(leader)
    try:
        for f in followers:
            c = cluster.client(f, socket_timeout=5)
            t0 = time.monotonic()
            assert c.get("total") == "50"
            assert c.dbsize() == 51
            print(f"\nstale read on follower {f} with the leader paused: "
                  f"{(time.monotonic() - t0) * 1000:.1f} ms")
            c.close()
    finally:
        cluster.sigcont(leader)
    cluster.leader(timeout=20)
    lc.close()


def test_lease_reads(make_cluster):
    cluster = make_cluster(3, args=["--read-consistency", "lease"])
    leader = cluster.leader()
    for m in cluster.nodes:
        assert cluster.info(m)["read_consistency"] == "lease"
    lc = cluster.client(leader)
    # Read-your-writes on the leader under the lease.
    for i in range(1, 101):
        assert lc.incr("n") == i
        assert lc.get("n") == str(i)
    lc.hset("h", mapping={"a": 1, "b": 2})
    assert lc.hgetall("h") == {"a": "1", "b": "2"}
    # Followers forward lease reads to the leader: they see the latest write.
    for m in cluster.nodes:
        c = cluster.client(m)
        assert c.set(f"from:{m}", m) is True
        for w in cluster.nodes:
            if w <= m:
                assert c.get(f"from:{w}") == str(w), f"node {m} reading from:{w}"
        assert c.get("n") == "100"
        c.close()
    cluster.assert_digests_equal()
    lc.close()


# --- 8. a restarted follower rejoins as a new incarnation (log or snapshot) -------------


@pytest.mark.parametrize("catch_up", ["log", "snapshot"])
def test_restarted_follower_rejoins_and_catches_up(make_cluster, catch_up):
    """kill -9 a follower, write while it is down, restart it: it comes back
    as a new incarnation that replaces the old one in the membership, and
    catches up from the leader's log ("log": 100 entries, no snapshot) or,
    with --snapshot-every 100 and 2000 entries written while it was down, from
    a snapshot (the leader keeps only 1000 entries behind its snapshot)."""
    snapshot = catch_up == "snapshot"
    cluster = make_cluster(3, args=["--snapshot-every", "100"] if snapshot else [])
    leader = cluster.leader()
    follower = [m for m in cluster.nodes if m != leader][0]
    old_id = cluster.info(follower)["raft_node_id"]
    lc = cluster.client(leader)
    for i in range(50):
        lc.set(f"early:{i}", i)
    cluster.wait_applied_equal()
    cluster.kill9(follower)

    # One SET per request, so about one log entry each; the node is restarted
    # right after (as a supervisor would).
    n = 2000 if snapshot else 100
    for i in range(n):
        assert lc.set(f"k:{i}", f"v{i}") is True
    assert lc.dbsize() == n + 50

    cluster.restart(follower)
    new_id = cluster.wait_voter(follower, timeout=45)
    assert not cluster.panics(), cluster.panics()
    assert cluster.leader() == leader, "leadership moved although the leader never failed"
    assert new_id != old_id and new_id.startswith(f"{follower}.")
    for m, info in cluster.infos().items():
        ids = members_of(info)
        assert old_id not in ids, f"node {m} still lists {old_id}: {info['raft_members']}"
        assert new_id in ids and not ids[new_id].endswith("(learner)"), info["raft_members"]
        assert len(ids) == 3, info["raft_members"]
    digests = cluster.assert_digests_equal(timeout=45)
    assert all(d.keys == n + 50 for d in digests.values()), digests
    log = cluster.node(follower).log().split("=== start #2")[-1]
    if snapshot:
        assert "received snapshot stream" in log, (
            "the restarted follower caught up without receiving a snapshot"
        )
    fc = cluster.client(follower)
    assert fc.get(f"k:{n - 1}") == f"v{n - 1}" and fc.get("early:0") == "0"
    # It serves writes again.
    assert fc.set("after-rejoin", "1") is True
    fc.close()
    cluster.assert_digests_equal()
    lc.close()


# --- 9. pipelining through a follower ----------------------------------------------------


def test_pipeline_through_follower_keeps_order(make_cluster):
    cluster = make_cluster(3)
    leader = cluster.leader()
    follower = [m for m in cluster.nodes if m != leader][0]
    c = cluster.client(follower)
    pipe = c.pipeline(transaction=False)
    model: Dict[str, str] = {}
    expected = []
    for i in range(500):
        key = f"p:{i % 17}"
        op = i % 5
        if op in (0, 3):
            pipe.set(key, f"v{i}")
            model[key] = f"v{i}"
            expected.append(True)
        elif op == 1:
            pipe.incr("pc")
            model["pc"] = str(int(model.get("pc", "0")) + 1)
            expected.append(int(model["pc"]))
        else:
            pipe.get(key)
            expected.append(model.get(key))
    results = pipe.execute(raise_on_error=False)
    assert len(results) == 500
    mismatches = [(i, e, r) for i, (e, r) in enumerate(zip(expected, results)) if e != r]
    assert not mismatches, f"{len(mismatches)} replies differ, first: {mismatches[:5]}"
    assert c.get("pc") == model["pc"]
    c.close()
    cluster.assert_digests_equal()


# --- 10. five nodes: two failures at once ------------------------------------------------


def test_five_nodes_survive_two_simultaneous_kills(make_cluster):
    """Five nodes: kill -9 the leader and a follower together; the other three
    elect a leader and keep every acknowledged write; both killed nodes
    rejoin as new incarnations and the five replicas end up identical."""
    cluster = make_cluster(5)
    leader = cluster.leader()
    victim = [m for m in cluster.nodes if m != leader][0]
    c = cluster.client([m for m in cluster.nodes if m not in (leader, victim)][0])
    for i in range(100):
        assert c.set(f"a:{i}", i) is True
    c.close()
    cluster.kill9(leader)
    cluster.kill9(victim)
    survivors = [m for m in cluster.nodes if m not in (leader, victim)]
    for m in survivors:
        wait_write_ok(cluster, m, f"after:{m}", timeout=30)
    for m in survivors:
        r = cluster.client(m)
        assert r.mget([f"a:{i}" for i in range(100)]) == [str(i) for i in range(100)]
        r.close()
    cluster.assert_digests_equal()
    cluster.restart(leader)
    cluster.restart(victim)
    cluster.wait_voter(leader, timeout=40)
    cluster.wait_voter(victim, timeout=40)
    d = cluster.assert_digests_equal(timeout=40)
    assert set(d) == set(cluster.nodes) and all(x.keys == 103 for x in d.values()), d

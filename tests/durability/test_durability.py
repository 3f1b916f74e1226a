"""Durability and crash-recovery tests: real node processes with --data-dir,
real faults (SIGKILL, SIGTERM, deleted directories, damaged files).

Every test starts its own cluster on free loopback ports (tests/cluster's
harness, extended in dharness.py with per-node data directories) and checks
what clients see (every acknowledged write), what the nodes say about
themselves (raft_node_id in INFO replication: same identity or a new
incarnation), what they logged, and what the replicas hold (admin Digest at
the same applied index). Waits are polls with deadlines; the only timing
asserted is a generous bound on the 1M-key restart (to catch hangs).

    RAFTCACHE_BIN=$PWD/target/debug/raftcache python3 -m pytest tests/durability -q -x
    ... -m 'not slow'     # without the 1M-key restart
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from typing import Dict, List

import pytest
import redis

from dharness import (
    DurableCluster,
    WriteLoad,
    error_kind,
    free_ports,
    members_of,
    mget_all,
    raftcache_bin,
    run_to_exit,
    verify_load,
)

ALWAYS = ["--appendfsync", "always"]
EVERYSEC = ["--appendfsync", "everysec"]


# --- helpers ---------------------------------------------------------------------


def wait_acks(cluster: DurableCluster, load: WriteLoad, n: int, timeout: float = 60.0) -> int:
    """Waits until `n` more writes of `load` have been acknowledged."""
    base = len(load.of("set", "ack")) + len(load.of("incr", "ack"))

    def enough():
        return len(load.of("set", "ack")) + len(load.of("incr", "ack")) - base >= n

    cluster.wait_for(f"{n} more acknowledged writes (load: {load.counts()})", enough,
                     timeout=timeout)
    return len(load.of("set", "ack")) + len(load.of("incr", "ack"))


def write_keys(cluster: DurableCluster, m: int, prefix: str, n: int, threads: int = 2) -> None:
    """SETs `prefix:i` = `v:i` for i < n, one command per round trip (so that
    the log gets many entries), from `threads` connections to member m."""
    errors: List[BaseException] = []

    def run(part: int) -> None:
        c = cluster.client(m, socket_timeout=30)
        try:
            for i in range(part, n, threads):
                assert c.set(f"{prefix}:{i}", f"v:{i}") is True
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            c.close()

    ts = [threading.Thread(target=run, args=(p,)) for p in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    assert not errors, f"writing {prefix}:* failed: {errors[:3]}"


def check_keys(client: redis.Redis, prefix: str, n: int) -> None:
    keys = [f"{prefix}:{i}" for i in range(n)]
    got = mget_all(client, keys)
    bad = [(k, v) for k, v in got.items() if v != f"v:{k.split(':')[-1]}"]
    assert not bad, f"{len(bad)} of {n} keys {prefix}:* are wrong or missing, e.g. {bad[:5]}"


def applied_index(cluster: DurableCluster, m: int) -> int:
    return cluster.node(m).digest().applied_index


def write_until_applied(cluster: DurableCluster, m: int, prefix: str, target: int,
                        timeout: float = 240.0) -> int:
    """Writes prefix:i keys (one per round trip) through member m until the
    leader's applied index reaches `target`; returns how many keys it wrote."""
    c = cluster.client(m, socket_timeout=30)
    i = 0
    deadline = time.monotonic() + timeout
    try:
        while applied_index(cluster, m) < target:
            assert time.monotonic() < deadline, (
                f"applied index did not reach {target} within {timeout}s ({i} keys written)")
            for _ in range(100):
                assert c.set(f"{prefix}:{i}", f"v:{i}") is True
                i += 1
    finally:
        c.close()
    return i


def raft_ids(cluster: DurableCluster) -> Dict[int, str]:
    return {m: cluster.node(m).raft_node_id() for m in cluster.up()}


def lines_with(text: str, *needles: str) -> List[str]:
    return [line for line in text.splitlines() if any(n in line for n in needles)]


def flip_bytes(path, offset: int, n: int = 16) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        data = f.read(n)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in data))
        f.flush()
        os.fsync(f.fileno())


def _consequence(cluster: DurableCluster, timeout: float = 15.0) -> str:
    """After a suspicious restart: writes one key through the leader and waits
    (up to `timeout`) for all nodes to apply it; describes what happened
    instead (a failed write, panics and what a panicked node still answers,
    applied indexes)."""
    out = ""
    try:
        c = cluster.client(cluster.leader(timeout=10), socket_timeout=10)
        c.set("probe:after-restart", "1")
        c.close()
    except Exception as e:  # noqa: BLE001 (described below)
        out = f"A write through the leader after the restart failed: {type(e).__name__}: {e}. "
    deadline = time.monotonic() + timeout
    indexes: Dict[int, object] = {}
    while time.monotonic() < deadline:
        panics = cluster.panics()
        if panics:
            return out + f"A node panicked: {panics[:2]}. " + _after_panic(cluster, panics)
        indexes = {}
        for m in cluster.up():
            try:
                indexes[m] = cluster.node(m).digest().applied_index
            except Exception as e:  # noqa: BLE001
                indexes[m] = repr(e)[:80]
        if len(set(indexes.values())) == 1 and not out:
            return f"Afterwards the replicas agreed (applied index {indexes})."
        time.sleep(0.2)
    return out + f"Afterwards the applied indexes stayed {indexes} for {timeout}s."


def _after_panic(cluster: DurableCluster, panics: List[str]) -> str:
    """What the panicked nodes' processes do now (alive? what do clients get?)."""
    parts = []
    for m in sorted({int(p.split(":")[0].split()[1]) for p in panics}):
        node = cluster.node(m)
        state = "running" if node.alive() else f"exited ({node.proc.returncode})"
        try:
            c = node.client(socket_timeout=10)
            reply = c.set("probe:panicked", "1")
            c.close()
        except Exception as e:  # noqa: BLE001
            reply = f"{type(e).__name__}: {e}"
        parts.append(f"node {m} process {state}; SET through it -> {reply!r}")
    return "; ".join(parts) + "."


# --- 1. appendfsync always: kill -9 of one node ---------------------------------------


def test_always_kill9_one_node_keeps_identity_and_every_ack(make_dcluster):
    """kill -9 of the leader during a write load (SETs and INCRs through every
    node), restart: it resumes as the same raft node id, catches up, no
    acknowledged write is lost, and the replicas agree."""
    cluster = make_dcluster(3, args=ALWAYS)
    leader = cluster.leader()
    before = raft_ids(cluster)
    load = WriteLoad(cluster, set_writers=[1, 2, 3], incr_writers=[1, 2]).start()
    try:
        wait_acks(cluster, load, 300)
        cluster.kill9(leader)
        cluster.leader(timeout=30)  # the survivors elect a leader
        wait_acks(cluster, load, 200)  # and keep acknowledging writes
        cluster.restart(leader)
        wait_acks(cluster, load, 200)
    finally:
        load.stop()
    cluster.wait_stable(timeout=40)
    after = raft_ids(cluster)
    assert after[leader] == before[leader], (
        f"under appendfsync always, node {leader} ({before[leader]}) came back after kill -9 as "
        f"{after[leader]}, not under its persisted identity; its log: "
        f"{lines_with(cluster.node(leader).log_since_last_start(), 'starting Raft', 'opened')}")
    assert "Resume" in "".join(lines_with(cluster.node(leader).log_since_last_start(),
                                          "starting Raft"))
    digests = cluster.assert_digests_equal(timeout=60)
    summary = verify_load(cluster.client(cluster.leader()), load)
    # And through the restarted node (its reads are forwarded to the leader;
    # its own replica was compared by digest above).
    verify_load(cluster.client(leader), load)
    print(f"\nkilled leader {leader}; load {summary['counts']}; counters "
          f"{summary['counters']}; applied index {next(iter(digests.values())).applied_index}")


# --- 2. appendfsync always: kill -9 of every node --------------------------------------


TTL_KEYS = {
    # key: how its TTL is set (after SET key value)
    "ttl:px": ("SET", "ttl:px", "a", "PX", "600000"),
    "ttl:ex": ("SET", "ttl:ex", "b", "EX", "3600"),
    "ttl:expire": ("EXPIRE", "ttl:expire", "1800"),
    "ttl:pexpireat": ("PEXPIREAT", "ttl:pexpireat", None),
    "ttl:soon": ("SET", "ttl:soon", "s", "PX", "60000"),
}


def _set_ttls(c: redis.Redis) -> Dict[str, int]:
    c.set("ttl:expire", "c")
    c.set("ttl:pexpireat", "d")
    now_ms = int(time.time() * 1000)
    for key, cmd in TTL_KEYS.items():
        if cmd[-1] is None:
            cmd = cmd[:-1] + (str(now_ms + 7_200_000),)
        assert c.execute_command(*cmd) in (True, "OK", 1), cmd
    return {k: int(c.execute_command("PEXPIRETIME", k)) for k in TTL_KEYS}


class ExpiredKeyWatch:
    """Polls GET/EXISTS of keys that must stay gone on every node, from the
    moment each node starts answering, recording any sighting."""

    def __init__(self, cluster: DurableCluster, keys: List[str]):
        self.cluster = cluster
        self.keys = keys
        self.stop_event = threading.Event()
        self.sightings: List[tuple] = []
        self.replies: Dict[int, int] = {m: 0 for m in cluster.nodes}
        self.first_answer: Dict[int, float] = {}
        self.errors: Dict[int, Dict[str, int]] = {m: {} for m in cluster.nodes}
        self.threads = [threading.Thread(target=self._run, args=(m,), daemon=True)
                        for m in cluster.nodes]

    def start(self) -> "ExpiredKeyWatch":
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(30)

    def _run(self, m: int) -> None:
        node = self.cluster.node(m)
        client = None
        while not self.stop_event.is_set():
            if client is None:
                client = node.client(socket_timeout=5, socket_connect_timeout=0.5)
            try:
                for key in self.keys:
                    value = client.get(key)
                    exists = client.exists(key)
                    self.first_answer.setdefault(m, time.monotonic())
                    self.replies[m] += 1
                    if value is not None or exists:
                        self.sightings.append((m, key, value, exists, time.monotonic()))
            except redis.exceptions.RedisError as e:
                kind = error_kind(e)
                self.errors[m][kind] = self.errors[m].get(kind, 0) + 1
                if kind == "connection":
                    client.close()
                    client = None
                time.sleep(0.02)
        if client is not None:
            client.close()


def test_always_kill9_all_nodes_loses_nothing_and_ttls_stay_absolute(make_dcluster):
    """kill -9 of all three nodes at once during a write load, then start all
    again: every acknowledged SET is there, every counter is between its
    acknowledged and attempted INCRs, PEXPIRETIME of keys with a TTL is
    unchanged, and a key whose TTL ran out while the cluster was down is never
    seen again on any node, from the first reply on (node 3 comes back with
    --read-consistency stale, so it answers from its replica the moment it
    serves, even before a leader exists)."""
    cluster = make_dcluster(3, args=ALWAYS)
    c = cluster.client(cluster.leader())
    before = raft_ids(cluster)
    expiries = _set_ttls(c)
    load = WriteLoad(cluster, set_writers=[1, 2, 3], incr_writers=[1, 2, 3]).start()
    try:
        wait_acks(cluster, load, 400)
        # A key that is live at the crash and expires while the cluster is down.
        assert c.set("ttl:gone", "x", px=1500) is True
        gone_at = int(c.execute_command("PEXPIRETIME", "ttl:gone"))
        assert c.get("ttl:gone") == "x"
        # One that is still live after the restart and expires a little later.
        assert c.set("ttl:mid", "m", px=8000) is True
        mid_at = int(c.execute_command("PEXPIRETIME", "ttl:mid"))
        c.close()
        killed_at = cluster.kill_all()
    finally:
        load.stop()
    # Stay down until the short TTL has run out (wall clock, like the nodes).
    cluster.wait_for("ttl:gone's expiry time to pass while the cluster is down",
                     lambda: time.time() * 1000 > gone_at + 300, timeout=10)
    watch = ExpiredKeyWatch(cluster, ["ttl:gone"]).start()
    cluster.node(3).extra_args = ["--read-consistency", "stale"]
    try:
        cluster.restart_all()
        leader = cluster.wait_stable(timeout=40)
        # Keep polling a little after the cluster settled (replay and catch-up).
        cluster.wait_applied_equal(timeout=30)
        end = time.monotonic() + 2.0
        cluster.wait_for("two more seconds of polling", lambda: time.monotonic() > end, timeout=5)
    finally:
        watch.stop()
    downtime = min(watch.first_answer.values(), default=float("nan")) - killed_at
    assert not watch.sightings, (
        f"ttl:gone (expired at {gone_at} ms, while the cluster was down) was seen again after "
        f"the restart: {watch.sightings[:5]}")
    assert all(watch.replies[m] > 0 for m in cluster.nodes), (
        f"some node never answered the expired-key poll: replies {watch.replies}, "
        f"errors {watch.errors}")

    ids = raft_ids(cluster)
    assert ids == before, f"raft node ids changed across the crash under always: {before} -> {ids}"
    c = cluster.client(leader)
    summary = verify_load(c, load)
    after = {k: int(c.execute_command("PEXPIRETIME", k)) for k in TTL_KEYS}
    assert after == expiries, (
        f"PEXPIRETIME changed across the crash: before {expiries}, after {after}")
    assert c.get("ttl:gone") is None and c.execute_command("PEXPIRETIME", "ttl:gone") == -2
    # ttl:mid keeps its absolute expiry and disappears at that time.
    if time.time() * 1000 < mid_at - 500:
        assert int(c.execute_command("PEXPIRETIME", "ttl:mid")) == mid_at
        assert c.get("ttl:mid") == "m"
    cluster.wait_for("ttl:mid's original expiry time to pass",
                     lambda: time.time() * 1000 > mid_at + 300, timeout=15)
    for m in cluster.nodes:  # node 3 reads its own replica (stale reads)
        assert cluster.client(m).get("ttl:mid") is None, (
            f"ttl:mid outlived its absolute expiry ({mid_at}) on node {m} after the restart")
    cluster.assert_digests_equal(timeout=60)
    print(f"\nload {summary['counts']}; counters {summary['counters']}; first reply "
          f"{downtime:.1f}s after the kill; expired-key polls per node {watch.replies}; "
          f"raft ids {ids}")


# --- 3. appendfsync everysec ----------------------------------------------------------


def test_everysec_kill9_one_node_rejoins_as_new_incarnation(make_dcluster):
    """Under everysec a node killed with -9 cannot trust its log: it comes back
    as a new incarnation (new raft_node_id) and, since a majority lived, no
    acknowledged write is lost."""
    cluster = make_dcluster(3, args=EVERYSEC)
    leader = cluster.leader()
    before = raft_ids(cluster)
    load = WriteLoad(cluster, set_writers=[1, 2, 3], incr_writers=[1, 2]).start()
    try:
        wait_acks(cluster, load, 300)
        cluster.kill9(leader)
        cluster.leader(timeout=30)
        wait_acks(cluster, load, 200)
        cluster.restart(leader, timeout=60)
        new_id = cluster.wait_voter(leader, timeout=60)
        wait_acks(cluster, load, 200)
    finally:
        load.stop()
    cluster.wait_stable(timeout=40)
    assert new_id != before[leader], (
        f"node {leader} ({before[leader]}) came back after kill -9 under everysec with the "
        f"same raft node id")
    for m, info in cluster.infos().items():
        assert before[leader] not in members_of(info), (
            f"node {m} still lists the old incarnation {before[leader]}: {info['raft_members']}")
    log = cluster.node(leader).log_since_last_start()
    assert lines_with(log, "discarding this node's persisted Raft state"), log[-3000:]
    cluster.assert_digests_equal(timeout=60)
    summary = verify_load(cluster.client(cluster.leader()), load)
    verify_load(cluster.client(leader), load)
    print(f"\nnode {leader}: {before[leader]} -> {new_id}; load {summary['counts']}")


def test_everysec_kill9_all_nodes_resumes_and_serves(make_dcluster):
    """Under everysec, kill -9 of all nodes: with no leader anywhere they resume
    with their logs after a grace period and serve again. Writes acknowledged
    more than 2 s before the crash are there; losses among the last second's
    acknowledged writes are reported, not asserted (documented)."""
    cluster = make_dcluster(3, args=EVERYSEC)
    before = raft_ids(cluster)
    load = WriteLoad(cluster, set_writers=[1, 2, 3], incr_writers=[1]).start()
    try:
        # Several seconds of load, so that "older than 2 s" covers many writes.
        start = time.monotonic()
        wait_acks(cluster, load, 400)
        cluster.wait_for("5 s of load", lambda: time.monotonic() - start > 5, timeout=10)
        killed_at = cluster.kill_all()
    finally:
        load.stop()
    t0 = time.monotonic()
    cluster.restart_all()
    leader = cluster.wait_stable(timeout=60)
    serving = time.monotonic() - t0
    c = cluster.client(leader)
    assert c.set("after:crash", "1") is True
    summary = verify_load(c, load, acked_before=killed_at - 2.0)
    last_second = [o for o in load.of("set", "ack") if o.end >= killed_at - 1.0]
    values = mget_all(c, [o.key for o in last_second])
    lost = [o.key for o in last_second if values[o.key] != o.value]
    mid = [o for o in load.of("set", "ack") if killed_at - 2.0 <= o.end < killed_at - 1.0]
    mid_values = mget_all(c, [o.key for o in mid])
    mid_lost = [o.key for o in mid if mid_values[o.key] != o.value]
    after = raft_ids(cluster)
    cluster.assert_digests_equal(timeout=60)
    print(f"\neverysec, all nodes killed: serving again {serving:.1f}s after the restart; "
          f"raft ids {before} -> {after}; load {summary['counts']}; acknowledged SETs lost: "
          f"{len(lost)} of {len(last_second)} from the last second, {len(mid_lost)} of "
          f"{len(mid)} from 2-1 s before the crash")


def test_everysec_old_leader_restarted_first_does_not_wedge_the_others(make_dcluster):
    """Under everysec, after kill -9 of all nodes, the old leader is restarted
    a second before the others. It resumes first (its grace period ends
    first) and, restored from its own committed vote, is a leader to openraft
    before anyone has acknowledged it. The others must not take that for a
    live cluster and rejoin as new incarnations: the old leader could never
    commit their addition (its quorum is their old incarnations), and the
    cluster would stay wedged (CI saw it). They resume with their logs under
    the same identities, and the cluster serves with every write that was
    flushed before the crash."""
    cluster = make_dcluster(3, args=EVERYSEC)
    leader = cluster.leader()
    c = cluster.client(leader)
    for i in range(200):
        assert c.set(f"k{i}", str(i)) is True
    c.close()
    written = time.monotonic()
    # everysec flushes every second: give it two.
    cluster.wait_for("2 s after the writes", lambda: time.monotonic() - written > 2.0, timeout=5)
    before = raft_ids(cluster)
    cluster.kill_all()
    others = [m for m in cluster.nodes if m != leader]
    cluster.node(leader).spawn()
    started = time.monotonic()
    cluster.wait_for("1 s after the old leader started",
                     lambda: time.monotonic() - started > 1.0, timeout=5)
    cluster.spawn(others)
    new_leader = cluster.wait_stable(timeout=60)
    after = raft_ids(cluster)
    assert after == before, f"raft ids {before} -> {after}: a node rejoined as a new incarnation"
    c = cluster.client(new_leader)
    assert c.set("after:crash", "1") is True
    values = mget_all(c, [f"k{i}" for i in range(200)])
    assert all(values[f"k{i}"] == str(i) for i in range(200)), values
    c.close()
    cluster.assert_digests_equal(timeout=60)


def test_everysec_clean_stop_resumes_same_identity(make_dcluster):
    """Under everysec a node stopped cleanly (SIGTERM: its log is flushed and
    the identity file says clean_shutdown=true) resumes under the same raft
    node id and catches up."""
    cluster = make_dcluster(3, args=EVERYSEC)
    leader = cluster.leader()
    write_keys(cluster, leader, "key", 200)
    follower = cluster.followers(leader)[0]
    node = cluster.node(follower)
    old_id = node.raft_node_id()
    assert node.sigterm() == 0
    assert node.identity()["clean_shutdown"] == "true"
    write_keys(cluster, leader, "more", 100)
    cluster.restart(follower)
    assert node.raft_node_id() == old_id, lines_with(node.log_since_last_start(), "starting Raft")
    cluster.wait_stable(timeout=40)
    cluster.assert_digests_equal(timeout=60)
    check_keys(cluster.client(follower), "key", 200)
    check_keys(cluster.client(follower), "more", 100)


# --- 4. a wiped follower catches up by snapshot ---------------------------------------


def test_wiped_follower_catches_up_by_snapshot(make_dcluster):
    cluster = make_dcluster(3, args=ALWAYS + ["--snapshot-every", "200"])
    leader = cluster.leader()
    n = write_until_applied(cluster, leader, "key", 2500)
    follower = cluster.followers(leader)[0]
    old_id = cluster.node(follower).raft_node_id()
    assert cluster.node(leader).snapshots(), "the leader has no snapshot file"
    cluster.node(follower).sigterm()
    shutil.rmtree(cluster.node(follower).data_dir)
    write_keys(cluster, leader, "more", 300)  # the leader moves on meanwhile
    cluster.restart(follower, timeout=60)
    new_id = cluster.wait_voter(follower, timeout=90)
    cluster.wait_stable(timeout=40)
    log = cluster.node(follower).log_since_last_start()
    assert lines_with(log, "installed snapshot"), (
        "the wiped follower did not install a snapshot: "
        + "\n".join(lines_with(log, "INFO", "WARN", "ERROR")[:40]))
    digests = cluster.assert_digests_equal(timeout=90)
    assert digests[follower].keys == n + 300, digests
    check_keys(cluster.client(follower), "key", n)
    check_keys(cluster.client(follower), "more", 300)
    assert cluster.node(follower).identity().get("member_id") == str(follower)
    print(f"\n{n + 300} keys; follower {follower}: {old_id} -> {new_id}; applied index "
          f"{digests[leader].applied_index}; leader snapshots "
          f"{[p.name for _, p in cluster.node(leader).snapshots()]}")


# --- 5. a corrupt snapshot is never loaded --------------------------------------------


@pytest.mark.parametrize("damage", ["middle", "one-value-digit"])
def test_corrupt_snapshot_is_not_loaded(make_dcluster, damage):
    """SIGTERM a follower, damage its newest snapshot file, start it. "middle":
    16 bytes flipped in the middle of the file (the decoder may trip before the
    checksum); "one-value-digit": one digit of a value changed, which decodes
    fine and only the CRC trailer catches. The node must not load it: it
    rejoins as a new incarnation, gets a good snapshot from the leader, serves
    only correct values from its first reply on, and ends with equal digests."""
    cluster = make_dcluster(3, args=ALWAYS + ["--snapshot-every", "200"])
    leader = cluster.leader()
    n = write_until_applied(cluster, leader, "key", 1200)
    follower = cluster.followers(leader)[0]
    node = cluster.node(follower)
    cluster.wait_for(f"node {follower} to have a snapshot file", node.snapshots, timeout=30)
    old_id = node.raft_node_id()
    node.sigterm()
    index, newest = node.snapshots()[-1]
    size = newest.stat().st_size
    if damage == "middle":
        at = size // 2
        flip_bytes(newest, at)
    else:
        raw = newest.read_bytes()
        at = raw.index(b"v:", size // 2) + 2  # first digit of a value like "v:123"
        assert raw[at:at + 1].isdigit(), raw[at - 8:at + 8]
        with open(newest, "r+b") as f:
            f.seek(at)
            f.write(b"0" if raw[at:at + 1] != b"0" else b"1")
    corrupted = newest.read_bytes()
    write_keys(cluster, leader, "more", 200)

    # From the moment it answers, node `follower` must serve the right data.
    sample = [f"key:{i}" for i in range(0, n, max(1, n // 50))]
    bad: List[tuple] = []
    stop = threading.Event()

    def watch():
        client = None
        while not stop.is_set():
            try:
                if client is None:
                    client = node.client(socket_timeout=10, socket_connect_timeout=0.5)
                got = dict(zip(sample, client.mget(sample)))
                bad.extend((k, v) for k, v in got.items() if v != f"v:{k.split(':')[1]}")
            except redis.exceptions.RedisError as e:
                if error_kind(e) == "connection" and client is not None:
                    client.close()
                    client = None
                time.sleep(0.05)
        if client is not None:
            client.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        cluster.restart(follower, timeout=60)
        new_id = cluster.wait_voter(follower, timeout=90)
        cluster.wait_stable(timeout=40)
        digests = cluster.assert_digests_equal(timeout=90)
    finally:
        stop.set()
        watcher.join(30)
    log = node.log_since_last_start()
    assert lines_with(log, "snapshot failed verification"), (
        f"node {follower} did not report the damaged snapshot {newest.name}:\n"
        + "\n".join(lines_with(log, "INFO", "WARN", "ERROR")[:40]))
    assert new_id != old_id, (
        f"node {follower} kept its raft node id {old_id} after its snapshot failed verification")
    assert not bad, f"node {follower} served wrong values after restarting: {bad[:10]}"
    assert digests[follower].keys == n + 200
    check_keys(cluster.client(follower), "key", n)
    check_keys(cluster.client(follower), "more", 200)
    damaged = newest.read_bytes() if newest.exists() else None
    assert damaged is None or damaged != corrupted, f"{newest} is still there, still damaged"
    print(f"\n{damage}: damaged byte {at} of {newest.name} ({size} bytes, index {index}); "
          f"node {follower}: {old_id} -> {new_id}; logged: "
          f"{lines_with(log, 'snapshot failed verification', 'discarding')}")


# --- 7. memory-only restart ----------------------------------------------------------


def test_memory_only_restart_is_a_new_incarnation(make_dcluster):
    cluster = make_dcluster(3, data=False)
    leader = cluster.leader()
    follower = cluster.followers(leader)[0]
    old_id = cluster.node(follower).raft_node_id()
    load = WriteLoad(cluster, set_writers=[1, 2, 3], incr_writers=[leader]).start()
    try:
        wait_acks(cluster, load, 300)
        cluster.kill9(follower)
        wait_acks(cluster, load, 200)
        cluster.restart(follower)
        new_id = cluster.wait_voter(follower, timeout=60)
        wait_acks(cluster, load, 200)
    finally:
        load.stop()
    cluster.wait_stable(timeout=40)
    assert new_id != old_id, f"memory-only node {follower} restarted as {new_id} again"
    for m, info in cluster.infos().items():
        members = members_of(info)
        assert new_id in members and old_id not in members, (
            f"node {m} lists members {info['raft_members']} (old incarnation {old_id}, new "
            f"{new_id})")
    cluster.assert_digests_equal(timeout=60)
    verify_load(cluster.client(cluster.leader()), load)
    verify_load(cluster.client(follower), load)
    print(f"\nnode {follower}: {old_id} -> {new_id}; load {load.counts()}")


# --- 8. foreign data directories are refused ------------------------------------------


def _solo_argv(cluster: DurableCluster, member: int, data_dir: str, extra=()) -> List[str]:
    resp, raft, admin = free_ports(3)
    return [
        raftcache_bin(), "--id", str(member), "--peers", cluster.peers_flag(),
        "--port", str(resp), "--raft-port", str(raft), "--admin-port", str(admin),
        "--metrics-port", "0",
        "--bind", "127.0.0.1", "--data-dir", data_dir, *cluster.args, *extra,
    ]  # fmt: skip


def test_data_dir_of_another_member_is_refused(make_dcluster):
    cluster = make_dcluster(3, args=ALWAYS)
    cluster.client(cluster.leader()).set("x", "1")
    cluster.stop()
    data1 = cluster.node(1).data_dir
    assert cluster.node(1).identity()["member_id"] == "1"
    rc, out = run_to_exit(_solo_argv(cluster, 2, data1), timeout=30,
                          log_path=os.path.join(cluster.workdir, "refused.log"))
    assert rc is not None, f"a node with --id 2 and member 1's data dir kept running: {out[-2000:]}"
    assert rc != 0 and "belongs to member" in out, (rc, out[-2000:])
    print(f"\nexit {rc}: {lines_with(out, 'belongs to member')}")


def _wait_cluster_id(cluster: DurableCluster, m: int) -> str:
    return cluster.wait_for(
        f"node {m} to record the cluster id",
        lambda: int(cluster.node(m).identity().get("cluster_id", "0"), 16) and
        cluster.node(m).identity()["cluster_id"], timeout=30)


def _start_other_cluster_with(make_dcluster, foreign_dir: str, args) -> DurableCluster:
    """Cluster B: nodes 1 and 2 with fresh directories started first (a
    majority: they initialize B and name it), then member 3 is to be started
    with `foreign_dir` (returned cluster; node 3 not started)."""
    b = make_dcluster(3, args=args, start=False)
    b.node(3).data_dir = foreign_dir
    b.spawn([1, 2])
    b.wait_for("cluster B (nodes 1, 2) to elect a leader",
               lambda: any(i.get("raft_role") == "leader" for i in b.infos([1, 2]).values()),
               timeout=40)
    _wait_cluster_id(b, 1)
    return b


def test_untrusted_data_dir_of_another_cluster_is_refused(make_dcluster):
    """Member 3's directory from cluster A, left by kill -9 under everysec (so
    the node must ask its peers before using it), started as member 3 of a new
    cluster B: B's nodes report another cluster id, the node refuses."""
    a = make_dcluster(3, args=EVERYSEC)
    a.client(a.leader()).set("from", "A")
    a_id = _wait_cluster_id(a, 3)
    a.kill9(3)
    foreign = os.path.join(a.workdir, "data3-of-A")
    shutil.copytree(a.node(3).data_dir, foreign)
    a.stop()
    b = _start_other_cluster_with(make_dcluster, foreign, EVERYSEC)
    b_id = _wait_cluster_id(b, 1)
    assert a_id != b_id
    rc, out = run_to_exit(b.node(3).argv(), timeout=40,
                          log_path=os.path.join(b.workdir, "node3-refused.log"))
    assert rc is not None and rc != 0 and "belongs to cluster" in out, (
        f"member 3 with cluster A's ({a_id}) untrusted data dir, started in cluster B "
        f"({b_id}): exit {rc}; output: {out[-3000:]}")
    print(f"\nA={a_id} B={b_id}: exit {rc}: {lines_with(out, 'belongs to cluster')}")


# --- 9. restart with 1M keys ---------------------------------------------------------


@pytest.mark.slow
def test_restart_with_a_million_keys(make_dcluster):
    n = 1_000_000
    cluster = make_dcluster(1, args=ALWAYS + ["--snapshot-every", "100000"])
    node = cluster.node(1)
    c = cluster.client(1, socket_timeout=120)
    t0 = time.monotonic()
    pipe = c.pipeline(transaction=False)
    chunk = 1000
    for start in range(0, n, chunk):
        flat = []
        for i in range(start, start + chunk):
            flat += [f"k:{i}", f"v{i}"]
        pipe.execute_command("MSET", *flat)
        if len(pipe) >= 50:
            assert all(r in (True, "OK") for r in pipe.execute())
    if len(pipe):
        pipe.execute()
    load_s = time.monotonic() - t0
    assert c.dbsize() == n
    t1 = time.monotonic()
    admin_pb2, _ = __import__("harness").admin_modules()
    snap = node._stub().Snapshot(admin_pb2.SnapshotRequest(), timeout=600)
    snap_s = time.monotonic() - t1
    # A log tail after the snapshot, replayed at restart.
    pipe = c.pipeline(transaction=False)
    for i in range(0, 500):
        pipe.set(f"k:{i}", f"new{i}")
    pipe.execute()
    c.close()
    digest_before = node.digest()
    snaps = node.snapshots()
    assert snaps, "no snapshot file after the Snapshot RPC"
    snap_size = snaps[-1][1].stat().st_size
    assert node.sigterm() == 0
    assert node.identity()["clean_shutdown"] == "true"

    t2 = time.monotonic()
    node.spawn()
    node.wait_ping(60)
    ping_s = time.monotonic() - t2
    c = cluster.client(1, socket_timeout=60)
    cluster.wait_for("DBSIZE to be 1M after the restart",
                     lambda: c.dbsize() == n, timeout=60)
    ready_s = time.monotonic() - t2
    assert c.get("k:0") == "new0" and c.get("k:499") == "new499" and c.get("k:500") == "v500"
    assert c.get(f"k:{n - 1}") == f"v{n - 1}"
    digest_after = node.digest()
    assert digest_after.digest == digest_before.digest
    assert digest_after.applied_index >= digest_before.applied_index
    log = node.log_since_last_start()
    print(f"\n{os.path.basename(os.path.dirname(os.path.dirname(raftcache_bin())))}/"
          f"{os.path.basename(os.path.dirname(raftcache_bin()))} binary: loaded 1M keys in "
          f"{load_s:.1f}s, snapshot at index {snap.index} ({snap_size / 1e6:.1f} MB) in "
          f"{snap_s:.1f}s; restart: PING after {ping_s:.2f}s, DBSIZE 1M after {ready_s:.2f}s; "
          f"{lines_with(log, 'opened the data directory')}")
    assert ready_s < 30, f"restart with 1M keys took {ready_s:.1f}s"

# =====================================================================================
# Known bugs: the tests below fail on the current code (see tests/durability/README.md).
# They come last so that `-x` runs every other test first.
# =====================================================================================


# --- 6. a damaged Raft log tail -------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate-200", "flip-near-end", "older-copy"])
def test_damaged_log_tail(make_dcluster, damage):
    """Under always: kill -9 a follower, damage the tail of its sled file, start
    it again. "truncate-200": the last 200 bytes of `raft/db` cut off;
    "flip-near-end": 16 bytes flipped 64 bytes before its end; "older-copy":
    the whole data directory replaced by a copy taken 100 writes earlier (a
    restore from backup: the same loss of the log's tail, without damage).

    It must start, never serve wrong data, and end with the same digest as the
    others; no node may panic. (The node's logs are reported either way: sled's
    own recovery may drop the damaged part silently, which is acceptable.)"""
    cluster = make_dcluster(3, args=ALWAYS)
    leader = cluster.leader()
    write_keys(cluster, leader, "key", 500)
    cluster.assert_digests_equal()
    follower = cluster.followers(leader)[0]
    node = cluster.node(follower)
    before_id = node.raft_node_id()
    copy = os.path.join(cluster.workdir, f"data{follower}-copy")
    if damage == "older-copy":
        node.sigterm()
        shutil.copytree(node.data_dir, copy)
        cluster.restart(follower)
        cluster.wait_stable(timeout=40)
        write_keys(cluster, leader, "later", 100)
        cluster.assert_digests_equal()
    before_index = applied_index(cluster, follower)
    cluster.kill9(follower)
    db = node.sled_dir() / "db"
    size = db.stat().st_size
    if damage == "truncate-200":
        os.truncate(db, size - 200)
    elif damage == "flip-near-end":
        flip_bytes(db, size - 64)
    else:
        shutil.rmtree(node.data_dir)
        shutil.copytree(copy, node.data_dir)
    cluster.restart(follower, timeout=60)
    log = node.log_since_last_start()
    notes = lines_with(log, "opened the data directory", "starting Raft", "damaged", "WARN",
                       "ERROR")
    after_id = node.raft_node_id()
    consequence = _consequence(cluster, timeout=20)
    report = (f"{damage} of {node.data_dir} ({size} bytes in raft/db); node {follower} was "
              f"{before_id} at applied index {before_index}, restarted as {after_id}; it "
              f"logged: {notes[:6]}. {consequence}")
    print("\n" + report)
    assert not cluster.panics(), report
    cluster.wait_stable(timeout=40)
    digests = cluster.assert_digests_equal(timeout=60)
    check_keys(cluster.client(follower), "key", 500)
    if damage == "older-copy":
        check_keys(cluster.client(follower), "later", 100)
    assert digests[follower].applied_index == digests[leader].applied_index


# --- 6b. a log written under everysec, restarted under always ---------------------------


def test_log_written_under_everysec_is_not_trusted_after_switching_to_always(make_dcluster):
    """A node killed with -9 while running under everysec, restarted with
    --appendfsync always. Its log was written under everysec, so it may lack
    entries it acknowledged: by the documented rule ("after an unclean stop
    under everysec/no ... it discards its state and joins as a new
    incarnation") it must not resume under its old identity. The policy it is
    restarted with does not make the old log any more trustworthy."""
    cluster = make_dcluster(3, args=EVERYSEC)
    leader = cluster.leader()
    write_keys(cluster, leader, "key", 200)
    follower = cluster.followers(leader)[0]
    node = cluster.node(follower)
    old_id = node.raft_node_id()
    cluster.kill9(follower)
    assert node.identity()["clean_shutdown"] == "false"
    node.args = ALWAYS
    cluster.restart(follower, timeout=60)
    new_id = node.raft_node_id()
    started = lines_with(node.log_since_last_start(), "starting Raft")
    if new_id == old_id:
        consequence = _consequence(cluster)
        pytest.fail(
            f"node {follower} was killed (-9) under everysec and restarted with --appendfsync "
            f"always: it resumed its everysec log under its old identity {old_id} ({started}), "
            f"although that log may lack acknowledged entries. {consequence}", pytrace=False)
    cluster.wait_voter(follower, timeout=60)
    cluster.assert_digests_equal(timeout=60)




# --- 8b. a trusted data directory of another cluster --------------------------------


@pytest.mark.parametrize("how", ["sigterm", "kill9-always"])
def test_trusted_data_dir_of_another_cluster_is_refused(make_dcluster, how):
    """The same with a directory the node trusts without asking anyone: member
    3 of cluster A stopped cleanly (SIGTERM) or killed under appendfsync always.
    Started as member 3 of cluster B (whose nodes report another cluster id),
    it must refuse as well ("belongs to cluster"), not resume A's log inside B."""
    a = make_dcluster(3, args=ALWAYS)
    ca = a.client(a.leader())
    for i in range(50):
        ca.set(f"from:A:{i}", "A")
    a_id = _wait_cluster_id(a, 3)
    a.assert_digests_equal()
    if how == "sigterm":
        a.node(3).sigterm()
        assert a.node(3).identity()["clean_shutdown"] == "true"
    else:
        a.kill9(3)
    foreign = os.path.join(a.workdir, "data3-of-A")
    shutil.copytree(a.node(3).data_dir, foreign)
    a.stop()
    b = _start_other_cluster_with(make_dcluster, foreign, ALWAYS)
    b_id = _wait_cluster_id(b, 1)
    cb = b.client(b.leader(timeout=30))
    for i in range(20):
        cb.set(f"from:B:{i}", "B")
    rc, out = run_to_exit(b.node(3).argv(), timeout=20,
                          log_path=os.path.join(b.workdir, "node3-foreign.log"))
    if rc is None:
        # It kept running: show what it did inside cluster B.
        node3 = b.node(3)
        node3.spawn()
        seen = {}
        try:
            node3.wait_ping(30)
            time.sleep(3)
            st = {m: b.node(m).status() for m in (1, 2, 3)}
            seen = {m: (s.raft_node_id, s.role, s.term, s.applied_index,
                        [x.raft_node_id for x in s.members]) for m, s in st.items()}
            d3 = node3.digest()
            seen["node3_digest"] = (d3.applied_index, d3.keys)
            seen["node1_digest"] = (b.node(1).digest().applied_index, b.node(1).digest().keys)
        except Exception as e:  # noqa: BLE001 (reported below)
            seen["error"] = repr(e)
        log3 = lines_with(node3.log_since_last_start(), "starting Raft", "resumed",
                          "belongs", "panic")
        pytest.fail(
            f"member 3 with cluster A's ({a_id}) data dir ({how}) started in cluster B ({b_id}) "
            f"was not refused: it was still running after 20 s. Its log: {log3[:6]}. "
            f"Status per node (raft id, role, term, applied, members): {seen}",
            pytrace=False)
    assert rc != 0 and "belongs to cluster" in out, (rc, out[-3000:])


@pytest.mark.parametrize("mode", ["always", "everysec"])
def test_two_followers_killed_together_serve_again_by_themselves(make_dcluster, mode):
    """Two of three nodes (both followers) killed with -9 together during a
    write load and restarted at once, for the durability table's "two nodes"
    row. Under `always` they resume their logs: nothing acknowledged is lost.
    Under `everysec` they cannot trust their logs: they either resume once no
    leader is left (the survivor steps down within the longest election
    timeout) or, if the survivor still leads, rejoin as new incarnations and
    the survivor re-forms the voters by itself (see `reform`); writes
    acknowledged more than 2 s before the crash are there either way, and
    losses among the last second's are reported, not asserted (documented).
    In every case the cluster serves again without a person."""
    cluster = make_dcluster(3, args=ALWAYS if mode == "always" else EVERYSEC)
    leader = cluster.leader()
    f1, f2 = [m for m in cluster.nodes if m != leader]
    load = WriteLoad(cluster, set_writers=[leader], incr_writers=[leader]).start()
    try:
        start = time.monotonic()
        wait_acks(cluster, load, 300)
        cluster.wait_for("3 s of load", lambda: time.monotonic() - start > 3, timeout=10)
        killed_at = time.monotonic()
        cluster.kill9(f1)
        cluster.kill9(f2)
        cluster.restart(f1, timeout=60)
        cluster.restart(f2, timeout=60)
        t0 = time.monotonic()
        wait_acks(cluster, load, 100, timeout=120)
        serving = time.monotonic() - t0
    finally:
        load.stop()
    leader = cluster.wait_stable(timeout=60)
    c = cluster.client(leader)
    if mode == "always":
        summary = verify_load(c, load)
    else:
        summary = verify_load(c, load, acked_before=killed_at - 2.0)
    cluster.assert_digests_equal(timeout=60)
    reformed = "re-forming from it" in cluster.node(leader).log()
    print(f"\n{mode}, two followers killed together: writes acknowledged again "
          f"{serving:.1f}s after the restarts; re-formed by the survivor: {reformed}; "
          f"load {summary['counts']}")

"""Failover without a stall (issue 21): requests in flight follow the new
leader, and a node cut off from any leader answers instead of holding its
clients for the whole request-timeout.

Timings are measured by bench/failover.py; these tests check behaviour:
writes through the followers succeed *while* the old leader is still
stopped (before, every request forwarded to it waited for it), a leader
cut off from both followers steps down and answers its clients well before a long
request-timeout, and nothing is applied twice (counters end exact, with
every -UNCERTAIN outcome accounted for).
"""

from __future__ import annotations

import threading
import time

import redis

from harness import error_kind


class Writer(threading.Thread):
    """Closed-loop INCR of its own counter through one node."""

    def __init__(self, cluster, member: int):
        super().__init__(daemon=True)
        self.client = cluster.client(member, socket_timeout=30)
        self.key = f"counter:{member}"
        self.ok: list[float] = []
        self.uncertain = 0
        self.unexpected: list[str] = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.client.incr(self.key)
                self.ok.append(time.monotonic())
            except redis.exceptions.RedisError as e:
                kind = error_kind(e)
                if kind == "uncertain":
                    self.uncertain += 1
                elif kind != "clusterdown":
                    self.unexpected.append(repr(e))
                    return


def _stop(writers):
    for w in writers.values():
        w.stop.set()
    for w in writers.values():
        w.join(timeout=60)
        assert not w.is_alive(), f"writer {w.key} did not finish"
        assert not w.unexpected, f"writer {w.key}: {w.unexpected}"


def _assert_exact(cluster, writers, through: int):
    r = cluster.client(through)
    for w in writers.values():
        value = int(r.get(w.key) or 0)
        assert len(w.ok) <= value <= len(w.ok) + w.uncertain, (
            f"{w.key} = {value}: {len(w.ok)} acknowledged, {w.uncertain} uncertain"
        )
    r.close()


def test_writes_through_followers_continue_while_the_leader_is_paused(make_cluster):
    """With the leader stopped (SIGSTOP) for 6 s, a request forwarded to it is
    retried with the new leader as soon as the followers elect one: writes
    through both followers succeed before the old leader resumes."""
    cluster = make_cluster(3, args=["--request-timeout", "20000"])
    leader = cluster.leader()
    writers = {m: Writer(cluster, m) for m in cluster.nodes}
    for w in writers.values():
        w.start()
    cluster.wait_for("every writer to succeed once", lambda: all(w.ok for w in writers.values()))
    cluster.sigstop(leader)
    paused_at = time.monotonic()
    try:
        cluster.wait_for(
            "writes through both followers to succeed while the leader is paused",
            lambda: all(
                any(t > paused_at + 0.1 for t in w.ok) for m, w in writers.items() if m != leader
            ),
            timeout=6,
        )
        resumed_at = time.monotonic()
    finally:
        cluster.sigcont(leader)
    cluster.leader(timeout=20)
    cluster.wait_for("the old leader's writer to succeed again",
                     lambda: any(t > resumed_at for t in writers[leader].ok), timeout=30)
    _stop(writers)
    new_leader = cluster.leader()
    _assert_exact(cluster, writers, new_leader)
    print(f"\nfollowers wrote again {resumed_at - paused_at:.2f} s into the pause "
          f"(uncertain outcomes {sum(w.uncertain for w in writers.values())})")
    cluster.assert_digests_equal()


def test_leader_cut_off_from_both_followers_steps_down_and_answers_promptly(make_cluster):
    """A leader whose followers are both stopped steps down (check-quorum):
    INFO stops calling it leader within the stated bound (the longest
    election timeout, 600 ms by default, plus one 50 ms check), and it
    answers a write with -UNCERTAIN or -CLUSTERDOWN long before a 20 s
    request-timeout; once the followers are back a leader is elected and
    the counter ends exact."""
    cluster = make_cluster(3, args=["--request-timeout", "20000"])
    leader = cluster.leader()
    followers = [m for m in cluster.nodes if m != leader]
    c = cluster.client(leader, socket_timeout=60)
    assert c.incr("cut") == 1
    term = int(cluster.info(leader)["raft_term"])
    outcomes = []
    for f in followers:
        cluster.sigstop(f)
    stopped = time.monotonic()
    try:
        seen = []

        def stepped_down():
            info = cluster.info(leader)
            seen.append(info)
            return info["raft_role"] != "leader"

        cluster.wait_for("the leader to step down", stepped_down, timeout=10)
        stepped = time.monotonic() - stopped
        info = seen[-1]
        assert info["raft_role"] in ("follower", "candidate"), info["raft_role"]
        assert info["raft_leader_id"] == "", info["raft_leader_id"]
        assert int(info["raft_term"]) > term, (info["raft_term"], term)
        # The bound is 0.65 s; the margin is for a loaded CI machine.
        assert stepped < 5, f"the cut-off leader stepped down only after {stepped:.1f} s"
        start = time.monotonic()
        for _ in range(3):
            try:
                c.incr("cut")
                raise AssertionError("a write on a leader without quorum was acknowledged")
            except redis.exceptions.ResponseError as e:
                outcomes.append(error_kind(e))
        took = time.monotonic() - start
        # Three answers well inside one request-timeout (20 s each before).
        assert took < 15, f"three writes took {took:.1f} s to be answered"
        assert set(outcomes) <= {"clusterdown", "uncertain"}, outcomes
    finally:
        for f in followers:
            cluster.sigcont(f)
    cluster.leader(timeout=20)
    cluster.wait_for("the quorum to be back",
                     lambda: all(cluster.info(m).get("raft_quorum_lost") == "0"
                                 for m in cluster.nodes))
    value = int(c.get("cut"))
    assert 1 <= value <= 1 + outcomes.count("uncertain"), (value, outcomes)
    assert c.incr("cut") == value + 1
    print(f"\nstepped down {stepped:.2f} s after the cut; three writes answered in {took:.2f} s: "
          f"{outcomes}; counter {value}")
    c.close()
    cluster.assert_digests_equal()


def test_follower_that_ran_alone_catches_up_once_the_others_resume(make_cluster):
    """A follower is stopped, a write commits without it, the leader and the
    other follower are stopped, and the follower resumes alone for 10 s
    (standing for election again and again, at ever higher terms, with no
    one to answer). Once the others resume, the cluster elects a leader and
    the follower catches up: a write through it and a read of the first
    write through it succeed within a few election timeouts.

    The lock test `test_uncertain_confirmation_never_gives_the_lock_to_two_clients`
    reaches this path when the grant's commit has not reached f1 before the
    leader stops."""
    for round_ in range(2):
        cluster = make_cluster(3)
        leader = cluster.wait_stable(timeout=30)
        f1, f2 = cluster.followers(leader)
        c = cluster.client(leader)
        c.set("warm", 1)
        cluster.sigstop(f1)
        assert c.set("k", f"v{round_}")
        c.close()
        cluster.sigstop(leader)
        cluster.sigstop(f2)
        cluster.sigcont(f1)
        time.sleep(10)
        cluster.sigcont(f2)
        cluster.sigcont(leader)
        r = cluster.client(f1, socket_timeout=30)
        end = time.monotonic() + 20
        last = None
        while time.monotonic() < end:
            try:
                last = r.get("k")
                if last == f"v{round_}" and r.set("after", round_):
                    break
            except redis.exceptions.RedisError as e:
                last = repr(e)
            time.sleep(0.1)
        else:
            raise AssertionError(f"round {round_}: f1 did not catch up within 20 s ({last})")
        r.close()
        cluster.stop()

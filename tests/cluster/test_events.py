"""Events across a three-node cluster: pub/sub, keyspace notifications and
blocking commands (BLPOP and friends), with real node processes, redis-py 8.1
(sync and asyncio, RESP2 and RESP3) and real faults (SIGSTOP, kill -9).

What the cluster promises, as clients see it:

Pub/sub
- PUBLISH is a write that travels through the Raft log: a message published
  through any node reaches the subscribers (channel and pattern) of every
  node, once, and all subscribers of a channel, on every node, see its
  messages in the same order (the log's), even with concurrent publishers
  on different nodes.
- PUBLISH's reply counts only the receivers on the node that took the
  PUBLISH (as Redis Cluster does): a message can reach subscribers on other
  nodes while the publisher is told 0.
- PUBSUB CHANNELS / NUMSUB / NUMPAT answer for the node asked only.
- A node delivers only fresh messages (entries less than 5 s old): a
  subscriber whose node was paused for longer does not get the old messages
  late when it resumes, but gets new ones.

Keyspace notifications
- ``notify-keyspace-events`` is cluster-wide configuration set through the
  log: CONFIG SET on one node is what CONFIG GET shows on every node, and
  every node publishes the events of writes made through any node, including
  ``expired`` events, which come from the leader's purge entries.

Blocking commands
- A client blocked on a follower is woken by a push through another node; the
  clients blocked on a key are served first come, first served across nodes
  (the order their BLPOP entries reached the log); an element goes to exactly
  one client; timeouts answer nil in time; CLIENT UNBLOCK works; a client that
  left (disconnect, crash of its node) does not swallow an element; across
  kill -9 of the leader no acknowledged element is lost or popped twice.

"Blocked" is observed through the log: with the cluster otherwise idle, a
client's BLPOP is queued in the engine once the entry it proposed is applied
on every node (the applied index moved past the index seen before it was
sent). INFO's ``blocked_clients`` and CLIENT LIST's ``flags=b``/``cmd=`` are
checked in a test of their own.

Every wait is a poll with a deadline; absence ("no message arrives") is
checked with a marker message published after the one that must not arrive:
a node delivers in log order, so once the marker arrived, anything before it
would have too.
"""

from __future__ import annotations

import collections
import socket
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

import pytest
import redis
import redis.asyncio

from harness import Cluster, HarnessError, error_kind, no_retry

FRESHNESS_S = 5.0  # events.rs FRESHNESS_MS: older entries are not delivered
PENDING_TIMEOUT_S = 10.0  # blocked.rs PENDING_TIMEOUT_MS: unconfirmed elements come back
MARKER_CHANNEL = "test:marker"


# --- helpers -------------------------------------------------------------------------


def client(cluster: Cluster, m: int, **kwargs) -> redis.Redis:
    kwargs.setdefault("socket_timeout", 30)
    return cluster.client(m, **kwargs)


def subscriber(cluster: Cluster, m: int, protocol: int = 2, channels: Sequence[str] = (),
               patterns: Sequence[str] = (), marker: bool = True) -> redis.client.PubSub:
    """A PubSub on member m, subscribed (confirmations read) to the channels,
    the patterns and the marker channel."""
    ps = client(cluster, m, protocol=protocol).pubsub()
    chans = list(channels) + ([MARKER_CHANNEL] if marker else [])
    if chans:
        ps.subscribe(*chans)
    if patterns:
        ps.psubscribe(*patterns)
    want = len(chans) + len(patterns)
    confirmations = []
    deadline = time.monotonic() + 10
    while len(confirmations) < want:
        assert time.monotonic() < deadline, f"node {m}: confirmations {confirmations}"
        msg = ps.get_message(timeout=0.5)
        if msg is not None:
            assert msg["type"] in ("subscribe", "psubscribe"), msg
            confirmations.append(msg)
    assert [c["data"] for c in confirmations] == list(range(1, want + 1)), confirmations
    return ps


def collect(ps: redis.client.PubSub, n: int, timeout: float = 20.0,
            until_marker: Optional[str] = None) -> List[Tuple]:
    """Reads messages (type, pattern, channel, data), skipping confirmations,
    until n arrived, or (until_marker) the marker message with that payload
    arrived (not included), or the deadline passed."""
    out: List[Tuple] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until_marker is None and len(out) >= n:
            break
        msg = ps.get_message(timeout=min(0.5, max(0.01, deadline - time.monotonic())))
        if msg is None or msg["type"] not in ("message", "pmessage"):
            continue
        item = (msg["type"], msg["pattern"], msg["channel"], msg["data"])
        if until_marker is not None and msg["channel"] == MARKER_CHANNEL:
            if msg["data"] == until_marker:
                return out
            continue
        out.append(item)
    if until_marker is not None:
        raise AssertionError(f"marker {until_marker!r} not received within {timeout}s; got {out}")
    return out


_marker_seq = [0]


def publish_marker(cluster: Cluster, m: int) -> str:
    _marker_seq[0] += 1
    name = f"mark-{_marker_seq[0]}"
    c = client(cluster, m)
    try:
        c.publish(MARKER_CHANNEL, name)
    finally:
        c.close()
    return name


def applied_indexes(cluster: Cluster) -> Dict[int, int]:
    return {m: cluster.nodes[m].digest().applied_index for m in cluster.up()}


def wait_applied_past(cluster: Cluster, before: int, what: str, timeout: float = 20.0) -> int:
    """Waits until every up node applied the same index, greater than `before`."""
    def ok():
        idx = applied_indexes(cluster)
        vals = set(idx.values())
        return len(vals) == 1 and vals.pop() > before and max(idx.values())
    return int(cluster.wait_for(what, ok, timeout=timeout))


def settled_index(cluster: Cluster) -> int:
    return max(d.applied_index for d in cluster.wait_applied_equal().values())


def plain(value):
    """Tuples (redis-py's BLPOP/BZPOPMIN callbacks) as lists, recursively."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class Call(threading.Thread):
    """Runs one command on its own connection in a thread; result, error and
    times are kept."""

    def __init__(self, cluster: Cluster, m: int, *args, protocol: int = 2, name: str = "",
                 db: int = 0):
        super().__init__(daemon=True, name=name or f"call-n{m}-{args[0]}")
        self.conn = client(cluster, m, protocol=protocol, socket_timeout=60, db=db)
        self.client_id = self.conn.client_id()
        self.m = m
        self.args = args
        self.result = None
        self.error: Optional[BaseException] = None
        self.started = 0.0
        self.ended = 0.0

    def run(self):
        self.started = time.monotonic()
        try:
            self.result = self.conn.execute_command(*self.args)
        except BaseException as e:  # noqa: BLE001 (kept for the test)
            self.error = e
        self.ended = time.monotonic()
        self.conn.close()

    def outcome(self, timeout: float):
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} {self.args} still blocked after {timeout}s"
        if self.error is not None:
            raise self.error
        return plain(self.result)


def block(cluster: Cluster, m: int, *args, protocol: int = 2) -> Call:
    """Starts a blocking command on member m and returns once its entry is
    applied on every node (the client is queued in the engine)."""
    before = settled_index(cluster)
    call = Call(cluster, m, *args, protocol=protocol)
    call.start()
    wait_applied_past(cluster, before, f"the {args[0]} sent through node {m} to be applied")
    assert call.is_alive(), f"{args} through node {m} did not block: {call.result!r} {call.error!r}"
    return call


def warm_up(cluster: Cluster) -> None:
    """One write through every node (each node's proposer session exists)."""
    for m in cluster.nodes:
        c = client(cluster, m)
        assert c.set(f"warm:{m}", "1") is True
        c.close()
    settled_index(cluster)


def lrange_everywhere(cluster: Cluster, key: str) -> Dict[int, List[str]]:
    settled_index(cluster)
    out = {}
    for m in cluster.up():
        c = client(cluster, m)
        out[m] = c.lrange(key, 0, -1)
        c.close()
    return out


# --- pub/sub ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3])
def test_pubsub_every_pairing_channels_patterns_unsubscribe(make_cluster, protocol):
    """Subscribers (a channel and a pattern on one connection) on every node,
    a publisher on every node: every pairing delivers, once, in order;
    unsubscribing on one node stops its messages and only its."""
    cluster = make_cluster(3)
    subs = {m: subscriber(cluster, m, protocol, channels=["news"], patterns=["ne*"])
            for m in cluster.nodes}
    pubs = {m: client(cluster, m, protocol=protocol) for m in cluster.nodes}
    for m, p in pubs.items():
        # Two receivers on the publishing node: the channel and the pattern.
        assert p.publish("news", f"from-{m}") == 2
    expected = []
    for m in pubs:
        expected += [("message", None, "news", f"from-{m}"),
                     ("pmessage", "ne*", "news", f"from-{m}")]
    for m, ps in subs.items():
        got = collect(ps, len(expected))
        assert got == expected, f"subscriber on node {m} (RESP{protocol})"

    # Unsubscribe node 2's connection from the channel and the pattern.
    subs[2].unsubscribe("news")
    subs[2].punsubscribe("ne*")
    confirmations = []
    deadline = time.monotonic() + 10
    while len(confirmations) < 2 and time.monotonic() < deadline:
        msg = subs[2].get_message(timeout=0.5)
        if msg is not None:
            confirmations.append((msg["type"], msg["channel"], msg["data"]))
    # The marker subscription remains.
    assert confirmations == [("unsubscribe", "news", 2), ("punsubscribe", "ne*", 1)]
    for m, p in pubs.items():
        assert p.publish("news", f"after-{m}") == (0 if m == 2 else 2), f"PUBLISH via node {m}"
    marker = publish_marker(cluster, 1)
    after = []
    for m in pubs:
        after += [("message", None, "news", f"after-{m}"),
                  ("pmessage", "ne*", "news", f"after-{m}")]
    for m, ps in subs.items():
        got = collect(ps, 0, until_marker=marker)
        assert got == ([] if m == 2 else after), f"subscriber on node {m} after node 2 unsubscribed"
    for ps in subs.values():
        ps.close()
    for p in pubs.values():
        p.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", [2, 3])
async def test_pubsub_asyncio_every_pairing(make_cluster, protocol):
    """The same with redis.asyncio: a subscriber on each node, publishes
    through each node (subscriber on node 3, publisher on node 1, and every
    other pairing), then PUNSUBSCRIBE/UNSUBSCRIBE stop delivery."""
    cluster = make_cluster(3)
    kw = dict(decode_responses=True, protocol=protocol, socket_timeout=30, retry=no_retry())
    conns = {m: redis.asyncio.Redis(host="127.0.0.1", port=cluster.nodes[m].resp_port, **kw)
             for m in cluster.nodes}
    subs = {m: conns[m].pubsub() for m in cluster.nodes}

    async def next_msgs(ps, n, timeout=20.0):
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            msg = await ps.get_message(timeout=0.5)
            if msg is not None:
                out.append((msg["type"], msg["pattern"], msg["channel"], msg["data"]))
        return out

    try:
        for m, ps in subs.items():
            await ps.subscribe("aio", MARKER_CHANNEL)
            await ps.psubscribe("a*")
            got = await next_msgs(ps, 3)
            assert [g[0] for g in got] == ["subscribe", "subscribe", "psubscribe"], got
        for pub in cluster.nodes:
            for sub in cluster.nodes:
                payload = f"{pub}->{sub}"
                assert await conns[pub].publish("aio", payload) == 2
        for sub, ps in subs.items():
            got = await next_msgs(ps, 18)
            want = []
            for pub in cluster.nodes:
                for s in cluster.nodes:
                    want += [("message", None, "aio", f"{pub}->{s}"),
                             ("pmessage", "a*", "aio", f"{pub}->{s}")]
            assert got == want, f"asyncio subscriber on node {sub} (RESP{protocol})"
        # Node 3 drops the pattern only, node 1 the channel only.
        await subs[3].punsubscribe("a*")
        await subs[1].unsubscribe("aio")
        assert (await next_msgs(subs[3], 1))[0][:3] == ("punsubscribe", None, "a*")
        assert (await next_msgs(subs[1], 1))[0][:3] == ("unsubscribe", None, "aio")
        assert await conns[1].publish("aio", "last") == 1  # node 1: the pattern only
        assert await conns[3].publish(MARKER_CHANNEL, "end") == 1
        want = {1: [("pmessage", "a*", "aio", "last")],
                2: [("message", None, "aio", "last"), ("pmessage", "a*", "aio", "last")],
                3: [("message", None, "aio", "last")]}
        for sub, ps in subs.items():
            got = await next_msgs(ps, len(want[sub]) + 1)
            assert got == want[sub] + [("message", None, MARKER_CHANNEL, "end")], f"node {sub}"
    finally:
        for ps in subs.values():
            await ps.aclose()
        for c in conns.values():
            await c.aclose()


def test_shard_channels_across_nodes(make_cluster):
    """SSUBSCRIBE on every node, SPUBLISH through every node: every shard
    subscriber gets every message (one group holds every slot here); a plain
    SUBSCRIBE to the same name gets none of them; SPUBLISH counts the shard
    subscribers of the publishing node."""
    cluster = make_cluster(3)
    shard = {m: client(cluster, m, protocol=3 if m == 2 else 2).pubsub() for m in cluster.nodes}
    for ps in shard.values():
        ps.ssubscribe("sh{1}")
        msg = None
        deadline = time.monotonic() + 10
        while msg is None and time.monotonic() < deadline:
            msg = ps.get_message(timeout=0.5)
        assert msg["type"] == "ssubscribe", msg
    plain_sub = subscriber(cluster, 1, channels=["sh{1}"])
    for m in cluster.nodes:
        c = client(cluster, m)
        assert c.execute_command("SPUBLISH", "sh{1}", f"s-{m}") == 1
        c.close()
    marker = publish_marker(cluster, 3)
    for m, ps in shard.items():
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 3 and time.monotonic() < deadline:
            msg = ps.get_message(timeout=0.5)
            if msg is not None:
                got.append((msg["type"], msg["channel"], msg["data"]))
        assert got == [("smessage", "sh{1}", f"s-{x}") for x in cluster.nodes], f"node {m}"
    assert collect(plain_sub, 0, until_marker=marker) == []
    for ps in list(shard.values()) + [plain_sub]:
        ps.close()


def test_blocking_served_later_reply_shapes(make_cluster):
    """Clients blocked on several keys are served from the key that gets
    data, with that key's name; BLMPOP takes up to COUNT elements."""
    cluster = make_cluster(3)
    warm_up(cluster)
    a = block(cluster, 1, "BLPOP", "sl:a", "sl:b", "sl:c", "0")
    b = block(cluster, 2, "BLMPOP", "0", "2", "sl:x", "sl:y", "RIGHT", "COUNT", "3")
    c = block(cluster, 3, "BZPOPMAX", "sl:z1", "sl:z2", "0")
    w = client(cluster, 1)
    assert w.rpush("sl:c", "c1", "c2") == 2
    assert w.rpush("sl:y", "y1", "y2", "y3", "y4") == 4
    assert w.zadd("sl:z2", {"m": 1.5, "n": 2.5}) == 2
    assert a.outcome(10) == ["sl:c", "c1"]
    assert b.outcome(10) == ["sl:y", ["y4", "y3", "y2"]]
    assert c.outcome(10) == ["sl:z2", "n", 2.5]
    assert lrange_everywhere(cluster, "sl:y") == {m: ["y1"] for m in cluster.nodes}
    assert lrange_everywhere(cluster, "sl:c") == {m: ["c2"] for m in cluster.nodes}
    cluster.assert_digests_equal()


def test_concurrent_publishers_subscribers_see_one_order(make_cluster):
    """Three publishers (one per node) publish concurrently to one channel;
    six subscribers (RESP2 and RESP3 on every node) receive every message
    once, all in the same order, each publisher's messages in its order."""
    cluster = make_cluster(3)
    per_publisher = 150
    subs = [subscriber(cluster, m, proto, channels=["ord"], marker=False)
            for m in cluster.nodes for proto in (2, 3)]
    errors: List[str] = []

    def publish(m):
        c = client(cluster, m)
        try:
            for i in range(per_publisher):
                c.publish("ord", f"p{m}:{i:04d}")
        except Exception as e:  # noqa: BLE001
            errors.append(f"publisher {m}: {e!r}")
        finally:
            c.close()

    threads = [threading.Thread(target=publish, args=(m,)) for m in cluster.nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    total = per_publisher * len(cluster.nodes)
    sequences = [[g[3] for g in collect(ps, total, timeout=60)] for ps in subs]
    for i, seq in enumerate(sequences):
        assert len(seq) == total == len(set(seq)), (
            f"subscriber {i}: {len(seq)} messages, {len(set(seq))} distinct, {total} published")
        for m in cluster.nodes:
            mine = [s for s in seq if s.startswith(f"p{m}:")]
            assert mine == sorted(mine), f"subscriber {i}: publisher {m}'s messages out of order"
    first = sequences[0]
    interleaved = sum(1 for a, b in zip(first, first[1:]) if a[:2] != b[:2])
    for i, seq in enumerate(sequences[1:], 1):
        diff = next((k for k, (a, b) in enumerate(zip(first, seq)) if a != b), None)
        assert seq == first, f"subscriber {i} differs from subscriber 0 at position {diff}"
    print(f"\n{total} messages, {len(subs)} subscribers, same order; "
          f"{interleaved} publisher switches in the order")
    for ps in subs:
        ps.close()


def test_publish_reply_counts_only_the_publishing_nodes_receivers(make_cluster):
    """PUBLISH replies with the number of receivers on the node that took it,
    as in Redis Cluster, not the cluster-wide number: node 1 has two channel
    subscribers and one matching pattern, node 2 one channel subscriber,
    node 3 none. Publishing through node 3 answers 0 while four connections on
    other nodes receive the message. PUBSUB NUMSUB / NUMPAT / CHANNELS are
    node-local too."""
    cluster = make_cluster(3)
    on1 = [subscriber(cluster, 1, channels=["cnt"]), subscriber(cluster, 1, channels=["cnt"]),
           subscriber(cluster, 1, patterns=["c?t"])]
    on2 = [subscriber(cluster, 2, protocol=3, channels=["cnt"])]
    replies = {}
    for m in cluster.nodes:
        c = client(cluster, m)
        replies[m] = c.publish("cnt", f"via-{m}")
        c.close()
    assert replies == {1: 3, 2: 1, 3: 0}
    for ps in on1 + on2:
        got = [g[3] for g in collect(ps, 3)]
        assert got == ["via-1", "via-2", "via-3"]
    numsub = {}
    for m in cluster.nodes:
        c = client(cluster, m)
        numsub[m] = (c.pubsub_numsub("cnt"), c.pubsub_numpat(), sorted(c.pubsub_channels()))
        c.close()
    assert numsub == {
        1: ([("cnt", 2)], 1, ["cnt", MARKER_CHANNEL]),
        2: ([("cnt", 1)], 0, ["cnt", MARKER_CHANNEL]),
        3: ([("cnt", 0)], 0, []),
    }
    for ps in on1 + on2:
        ps.close()


def test_paused_subscriber_node_gets_no_old_messages_but_new_ones(make_cluster):
    """The freshness rule: a subscriber on a follower paused (SIGSTOP) for
    more than 5 s does not receive, when its node resumes and applies the
    backlog, the messages published while it was paused; it receives the
    messages published after."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    paused, other = cluster.followers(leader)
    sub_paused = subscriber(cluster, paused, channels=["fresh"])
    sub_other = subscriber(cluster, other, protocol=3, channels=["fresh"])
    pub = client(cluster, leader)
    assert pub.publish("fresh", "before") == 0
    assert collect(sub_paused, 1) == [("message", None, "fresh", "before")]
    assert collect(sub_other, 1) == [("message", None, "fresh", "before")]

    cluster.sigstop(paused)
    old = [f"old-{i}" for i in range(5)]
    for payload in old:
        pub.publish("fresh", payload)  # acknowledged by the two running nodes
    t_last_old = time.monotonic()
    assert [g[3] for g in collect(sub_other, len(old))] == old
    # Stay paused until the old messages are well past the freshness limit.
    resume_at = t_last_old + FRESHNESS_S + 2.0
    while time.monotonic() < resume_at:
        time.sleep(0.1)
    cluster.sigcont(paused)
    cluster.leader(timeout=30)
    cluster.wait_applied_equal(timeout=30)

    writer = client(cluster, other)
    assert writer.publish("fresh", "new-0") == 1
    assert writer.publish("fresh", "new-1") == 1
    marker = publish_marker(cluster, other)
    got = collect(sub_paused, 0, timeout=30, until_marker=marker)
    assert [g[3] for g in got] == ["new-0", "new-1"], (
        f"after a {resume_at - t_last_old:.1f}s pause the subscriber got {got}")
    assert [g[3] for g in collect(sub_other, 2)] == ["new-0", "new-1"]
    for c in (sub_paused, sub_other, pub, writer):
        c.close()


def test_subscriber_that_does_not_read_is_disconnected(make_cluster):
    """A subscriber that stops reading must not make its node buffer without
    bound: Redis disconnects a pub/sub client past client-output-buffer-limit
    pubsub (32 MB hard by default). A raw subscriber on node 2 never reads
    while 64 MB of messages are published through node 1; it must be
    disconnected (PUBSUB NUMSUB drops to 0) and node 2 must stay well under
    the volume published."""
    cluster = make_cluster(3)
    port = cluster.nodes[2].resp_port
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nslow\r\n")
    c2 = client(cluster, 2)
    cluster.wait_for("the raw subscriber", lambda: c2.pubsub_numsub("slow") == [("slow", 1)])

    def rss_mb(pid):
        with open(f"/proc/{pid}/status") as f:
            return int(next(l for l in f if l.startswith("VmRSS")).split()[1]) // 1024

    before = rss_mb(cluster.nodes[2].pid)
    pub = client(cluster, 1)
    payload = b"x" * (1 << 20)
    for _ in range(64):
        pub.publish("slow", payload)
    settled_index(cluster)
    try:
        cluster.wait_for("node 2 to drop the subscriber that does not read",
                         lambda: c2.pubsub_numsub("slow") == [("slow", 0)], timeout=10)
        dropped = True
    except HarnessError:
        dropped = False
    grown = rss_mb(cluster.nodes[2].pid) - before
    s.close()
    print(f"\nnode 2 RSS grew by {grown} MB; subscriber dropped: {dropped}")
    assert dropped, (f"a subscriber that reads nothing is still subscribed after 64 MB of "
                     f"messages; node 2 grew by {grown} MB")


def test_subscriptions_survive_a_leader_kill(make_cluster):
    """Subscribers on both followers; kill -9 of the leader; messages
    published through the survivors after the failover reach both, in one
    order, and none is delivered twice."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    f1, f2 = cluster.followers(leader)
    subs = [subscriber(cluster, f1, channels=["fo"]), subscriber(cluster, f2, 3, channels=["fo"])]
    assert client(cluster, f1).publish("fo", "before") == 1
    cluster.kill9(leader)
    cluster.leader(timeout=30)
    sent = []
    for i in range(20):
        via = (f1, f2)[i % 2]
        c = client(cluster, via)
        try:
            c.publish("fo", f"after-{i}")
            sent.append(f"after-{i}")
        except redis.exceptions.RedisError as e:
            assert error_kind(e) == "clusterdown", repr(e)
        finally:
            c.close()
    got = [[g[3] for g in collect(ps, 1 + len(sent), timeout=30)] for ps in subs]
    assert got[0] == got[1] == ["before"] + sent, got
    for ps in subs:
        ps.close()


def _resp(*args: str) -> bytes:
    return b"".join([f"*{len(args)}\r\n".encode()]
                    + [f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args])


def test_resp3_client_blocked_in_blpop_still_receives_messages(make_cluster):
    """A RESP3 connection may subscribe and then run BLPOP; while it is
    blocked, messages of its channels are pushed to it at once (Redis writes
    them to a blocked client's output buffer), not held until BLPOP ends."""
    cluster = make_cluster(3)
    warm_up(cluster)
    s = socket.create_connection(("127.0.0.1", cluster.nodes[2].resp_port), timeout=10)
    s.sendall(_resp("HELLO", "3") + _resp("SUBSCRIBE", "bch"))
    buf = b""
    while b"subscribe" not in buf:
        buf += s.recv(65536)
    before = settled_index(cluster)
    s.sendall(_resp("BLPOP", "bkey", "5"))
    wait_applied_past(cluster, before, "the BLPOP to be queued")
    assert client(cluster, 1).publish("bch", "while-blocked") == 0
    t0 = time.monotonic()
    s.settimeout(2.0)
    got = b""
    try:
        while b"while-blocked" not in got:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        pass
    took = time.monotonic() - t0
    s.close()
    assert b"while-blocked" in got, (
        f"no message pushed to the blocked RESP3 client within {took:.1f}s (got {got!r})")


# --- keyspace notifications ---------------------------------------------------------


def _event_pairs(msgs):
    """pmessage tuples → (channel, data)."""
    return [(g[2], g[3]) for g in msgs]


def _events_for(key: str, event: str) -> List[Tuple[str, str]]:
    return [(f"__keyspace@0__:{key}", event), (f"__keyevent@0__:{event}", key)]


def test_keyspace_notifications_across_nodes(make_cluster):
    """CONFIG SET notify-keyspace-events KEA through one node; CONFIG GET
    shows it on every node; subscribers on every node (psubscribe
    '__key*__:*') see the set, expire, del and expired events of keys written
    through another node, the expired one from the leader's purge; CONFIG SET
    back to "" stops the events everywhere."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    f1, f2 = cluster.followers(leader)
    cfg = client(cluster, f1)
    assert cfg.config_set("notify-keyspace-events", "KEA") is True

    def config_everywhere(value):
        def ok():
            vals = {}
            for m in cluster.nodes:
                c = client(cluster, m)
                vals[m] = c.config_get("notify-keyspace-events")["notify-keyspace-events"]
                c.close()
            return all(v == value for v in vals.values()) and vals
        return cluster.wait_for(f"notify-keyspace-events == {value!r} on every node", ok,
                                timeout=10)

    config_everywhere("AKE")
    subs = {m: subscriber(cluster, m, protocol=2 if m != f2 else 3, patterns=["__key*__:*"])
            for m in cluster.nodes}
    w = client(cluster, f2)
    assert w.set("ks:k", "v") is True
    assert w.expire("ks:k", 100) is True
    assert w.delete("ks:k") == 1
    assert w.set("ks:e", "v", px=300) is True
    expected = (_events_for("ks:k", "set") + _events_for("ks:k", "expire")
                + _events_for("ks:k", "del") + _events_for("ks:e", "set")
                + _events_for("ks:e", "expire") + _events_for("ks:e", "expired"))
    for m, ps in subs.items():
        got = collect(ps, len(expected), timeout=20)
        assert all(g[0] == "pmessage" and g[1] == "__key*__:*" for g in got), got
        assert _event_pairs(got) == expected, f"subscriber on node {m}"
    assert w.exists("ks:e") == 0

    assert client(cluster, leader).config_set("notify-keyspace-events", "") is True
    config_everywhere("")
    assert w.set("ks:after", "v") is True
    marker = publish_marker(cluster, f2)
    for m, ps in subs.items():
        assert collect(ps, 0, until_marker=marker) == [], f"node {m}: events after disabling"
    for c in list(subs.values()) + [w, cfg]:
        c.close()


# --- blocking commands ------------------------------------------------------------


def test_blpop_on_follower_woken_by_push_through_other_node(make_cluster):
    cluster = make_cluster(3)
    leader = cluster.leader()
    f1, f2 = cluster.followers(leader)
    warm_up(cluster)
    call = block(cluster, f1, "BLPOP", "bq", "0")
    t0 = time.monotonic()
    pusher = client(cluster, f2)
    assert pusher.lpush("bq", "hello") == 1
    assert call.outcome(10) == ["bq", "hello"]
    print(f"\nBLPOP on node {f1} answered {call.ended - t0:.3f}s after LPUSH through node {f2}")
    assert lrange_everywhere(cluster, "bq") == {m: [] for m in cluster.nodes}
    # The same with the push through the leader and BRPOP in RESP3.
    call = block(cluster, f2, "BRPOP", "bq2", "bq", "0", protocol=3)
    assert client(cluster, leader).rpush("bq", "a", "b") == 2
    assert call.outcome(10) == ["bq", "b"]
    assert lrange_everywhere(cluster, "bq") == {m: ["a"] for m in cluster.nodes}
    cluster.assert_digests_equal()


def test_blocked_clients_are_served_first_come_first_served_across_nodes(make_cluster):
    """Three clients block on one key through nodes 3, 1, 2 in this order;
    one RPUSH of three elements serves them in that order (the first gets the
    head); then they block again in the order 2, 3, 1 and three single pushes
    through different nodes serve them one by one in that order."""
    cluster = make_cluster(3)
    warm_up(cluster)
    order = [3, 1, 2]
    calls = [block(cluster, m, "BLPOP", "fifo", "0") for m in order]
    assert client(cluster, 1).rpush("fifo", "e1", "e2", "e3") == 3
    got = [c.outcome(10) for c in calls]
    assert got == [["fifo", "e1"], ["fifo", "e2"], ["fifo", "e3"]], list(zip(order, got))

    order = [2, 3, 1]
    calls = [block(cluster, m, "BRPOP", "fifo", "0") for m in order]
    for i, via in enumerate([3, 2, 1]):
        assert client(cluster, via).lpush("fifo", f"s{i}") == 1
        assert calls[i].outcome(10) == ["fifo", f"s{i}"], f"push {i} through node {via}"
        for later in calls[i + 1:]:
            assert later.is_alive(), f"a later waiter got {later.result!r} before its turn"
    assert lrange_everywhere(cluster, "fifo") == {m: [] for m in cluster.nodes}


def test_many_waiters_many_pushers_every_element_once(make_cluster):
    """24 clients (8 per node) loop on BLPOP while 6 pushers (2 per node)
    push 600 distinct elements: every element is popped exactly once and the
    list ends empty."""
    cluster = make_cluster(3)
    warm_up(cluster)
    n_waiters, n_pushers, per_pusher = 24, 6, 100
    popped: List[Tuple[int, str]] = []
    lock = threading.Lock()
    stop = threading.Event()
    errors: List[str] = []

    def waiter(i):
        m = i % 3 + 1
        c = client(cluster, m, socket_timeout=30)
        try:
            while not stop.is_set():
                r = c.execute_command("BLPOP", "many", "1")
                if r is not None:
                    with lock:
                        popped.append((i, r[1]))
        except Exception as e:  # noqa: BLE001
            errors.append(f"waiter {i} on node {m}: {e!r}")
        finally:
            c.close()

    def pusher(j):
        m = j % 3 + 1
        c = client(cluster, m)
        try:
            k = 0
            while k < per_pusher:
                batch = [f"v{j}:{x}" for x in range(k, min(per_pusher, k + 1 + k % 3))]
                c.rpush("many", *batch)
                k += len(batch)
        except Exception as e:  # noqa: BLE001
            errors.append(f"pusher {j} on node {m}: {e!r}")
        finally:
            c.close()

    waiters = [threading.Thread(target=waiter, args=(i,), daemon=True) for i in range(n_waiters)]
    for t in waiters:
        t.start()
    time.sleep(0.5)  # not a correctness wait: lets most waiters block before the pushes
    pushers = [threading.Thread(target=pusher, args=(j,)) for j in range(n_pushers)]
    t0 = time.monotonic()
    for t in pushers:
        t.start()
    for t in pushers:
        t.join(120)
    total = n_pushers * per_pusher
    try:
        cluster.wait_for(f"{total} elements popped", lambda: len(popped) >= total and not errors,
                         timeout=60)
    except HarnessError:
        pass
    elapsed = time.monotonic() - t0
    stop.set()
    for t in waiters:
        t.join(30)
    assert not errors, errors[:5]
    values = collections.Counter(v for _, v in popped)
    dups = {v: n for v, n in values.items() if n > 1}
    pushed = {f"v{j}:{x}" for j in range(n_pushers) for x in range(per_pusher)}
    missing = pushed - set(values)
    by_waiter = collections.Counter(i for i, _ in popped)
    print(f"\n{len(popped)} pops of {total} pushed in {elapsed:.2f}s by {len(by_waiter)} of "
          f"{n_waiters} waiters")
    assert not dups, f"elements popped more than once: {list(dups.items())[:10]}"
    assert not (set(values) - pushed), "popped values nobody pushed"
    leftover = lrange_everywhere(cluster, "many")
    assert leftover == {m: [] for m in cluster.nodes}, "the list must end empty"
    assert not missing, f"{len(missing)} elements never popped, e.g. {sorted(missing)[:5]}"
    cluster.assert_digests_equal()


def test_blocking_timeouts_answer_nil_in_time(make_cluster):
    cluster = make_cluster(3)
    leader = cluster.leader()
    f1 = cluster.followers(leader)[0]
    cases = [
        (("BLPOP", "to:l", "1"), None, 1.0),
        (("BRPOP", "to:l", "to:l2", "0.5"), None, 0.5),
        (("BLMOVE", "to:l", "to:d", "LEFT", "RIGHT", "0.5"), None, 0.5),
        (("BRPOPLPUSH", "to:l", "to:d", "0.3"), None, 0.3),
        (("BLMPOP", "0.5", "1", "to:l", "LEFT"), None, 0.5),
        (("BZPOPMIN", "to:z", "0.5"), None, 0.5),
        (("BZMPOP", "0.5", "2", "to:z", "to:z2", "MAX", "COUNT", "3"), None, 0.5),
    ]
    tolerance = 1.0  # debug build, three nodes on two shared cores
    for m in (f1, leader):
        for args, want, secs in cases:
            call = Call(cluster, m, *args)
            call.start()
            got = call.outcome(secs + 10)
            took = call.ended - call.started
            assert got == want, f"{args} through node {m}"
            assert secs - 0.01 <= took <= secs + tolerance, (
                f"{args} through node {m} answered after {took:.3f}s")
    cluster.assert_digests_equal()


def test_blocking_tiny_timeout_is_not_infinite(make_cluster):
    """Redis rounds a timeout up to whole milliseconds (ceil): BLPOP k 0.0001
    waits 1 ms and answers nil; it does not block forever."""
    cluster = make_cluster(3)
    call = Call(cluster, 1, "BLPOP", "tiny", "0.0001")
    call.start()
    call.join(5)
    alive = call.is_alive()
    if alive:
        call.conn.connection_pool.disconnect()
    assert not alive, "BLPOP tiny 0.0001 was still blocked after 5 s (Redis answers nil after 1 ms)"
    assert call.error is None and call.result is None


def test_client_unblock(make_cluster):
    cluster = make_cluster(3)
    leader = cluster.leader()
    f1, f2 = cluster.followers(leader)
    warm_up(cluster)
    admin = client(cluster, f1)
    call = block(cluster, f1, "BLPOP", "ub", "0")
    # Client ids are per node: node f2 has no such blocked client.
    assert client(cluster, f2).client_unblock(call.client_id) in (0, False)
    assert admin.client_unblock(call.client_id) in (1, True)
    assert call.outcome(10) is None
    call = block(cluster, f1, "BZPOPMAX", "ubz", "0")
    assert admin.client_unblock(call.client_id, error=True) in (1, True)
    with pytest.raises(redis.exceptions.ResponseError, match="UNBLOCKED"):
        call.outcome(10)
    assert admin.client_unblock(call.client_id) in (0, False), "not blocked any more"
    assert admin.client_unblock(admin.client_id()) in (0, False)
    # The unblocked waiters are gone from the engine: a push stays in the list.
    assert client(cluster, leader).rpush("ub", "kept") == 1
    cluster.wait_for("the pushed element to stay in the list",
                     lambda: lrange_everywhere(cluster, "ub") == {m: ["kept"]
                                                                  for m in cluster.nodes},
                     timeout=5)


def _raw_blpop(port: int, key: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"*3\r\n$5\r\nBLPOP\r\n${len(key)}\r\n{key}\r\n$1\r\n0\r\n".encode())
    return s


def test_disconnected_waiter_does_not_swallow_an_element(make_cluster):
    """A client blocked on a follower disconnects; an element pushed after
    that (at once, racing the node's clean-up, and again later) stays in the
    list, or goes to the next waiter in line."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    f1, f2 = cluster.followers(leader)
    warm_up(cluster)
    for attempt, push_at_once in enumerate([False, True]):
        key = f"gone{attempt}"
        before = settled_index(cluster)
        s = _raw_blpop(cluster.nodes[f1].resp_port, key)
        wait_applied_past(cluster, before, "the raw BLPOP to be queued")
        before = settled_index(cluster)
        s.close()
        if not push_at_once:
            wait_applied_past(cluster, before, "the node to take its gone client out")
        t0 = time.monotonic()
        assert client(cluster, f2).rpush(key, "x") == 1
        cluster.wait_for(f"{key}: the element to be in the list on every node",
                         lambda: lrange_everywhere(cluster, key) == {m: ["x"]
                                                                     for m in cluster.nodes},
                         timeout=PENDING_TIMEOUT_S + 10)
        took = time.monotonic() - t0
        print(f"\n{key}: element in the list {took:.3f}s after the push "
              f"({'at once' if push_at_once else 'after the clean-up'})")
        assert took < 3.0, f"{key}: the element came back only after {took:.1f}s"
    # The next waiter in line gets it: A (raw, leaves) then B.
    before = settled_index(cluster)
    s = _raw_blpop(cluster.nodes[f1].resp_port, "gone-next")
    wait_applied_past(cluster, before, "A queued")
    b = block(cluster, f2, "BLPOP", "gone-next", "0")
    s.close()
    assert client(cluster, leader).rpush("gone-next", "y") == 1
    assert b.outcome(PENDING_TIMEOUT_S + 10) == ["gone-next", "y"]
    cluster.assert_digests_equal()


def test_waiters_of_a_crashed_node_do_not_hold_elements(make_cluster):
    """kill -9 of a follower with three clients blocked on it (timeout 0) and
    one live client blocked behind them on another node: the dead node's
    clients are gone (as when they disconnect), so an element pushed
    afterwards reaches the live client within the engine's 10 s confirmation
    timeout, not 10 s per dead client; on a key with only dead waiters an
    element is back in the list within that timeout."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    f1, f2 = cluster.followers(leader)
    warm_up(cluster)
    dead = [block(cluster, f1, "BLPOP", "crash", "crash2", "0") for _ in range(3)]
    alive = block(cluster, f2, "BLPOP", "crash", "0")
    cluster.kill9(f1)
    t0 = time.monotonic()
    assert client(cluster, leader).rpush("crash", "z") == 1
    alive.join(PENDING_TIMEOUT_S * len(dead) + 15)
    took = time.monotonic() - t0
    print(f"\nthe live waiter behind {len(dead)} dead ones got the element after {took:.2f}s")
    assert alive.outcome(1) == ["crash", "z"]
    assert took < PENDING_TIMEOUT_S + 3, (
        f"the element reached the live client only {took:.1f}s after the push: each of the "
        f"{len(dead)} clients of the crashed node held it for ~{PENDING_TIMEOUT_S:.0f}s")
    t0 = time.monotonic()
    assert client(cluster, leader).rpush("crash2", "w") == 1
    cluster.wait_for("crash2 to hold its element again",
                     lambda: client(cluster, leader).lrange("crash2", 0, -1) == ["w"],
                     timeout=PENDING_TIMEOUT_S * len(dead) + 15)
    took = time.monotonic() - t0
    print(f"crash2 (dead waiters only): element visible again after {took:.2f}s")
    assert took < PENDING_TIMEOUT_S + 3, f"crash2's element was hidden for {took:.1f}s"
    cluster.restart(f1)
    cluster.wait_voter(f1, timeout=40)
    cluster.assert_digests_equal(timeout=40)


def test_paused_waiter_node_element_given_back_and_popped_once(make_cluster):
    """Client A blocks through follower f1, client B behind it through f2.
    f1 is paused (SIGSTOP) and an element is pushed: it is served to A, whose
    node cannot confirm; after the engine's 10 s confirmation timeout it is
    given back and B gets it. When f1 resumes, A's late confirmation is
    refused and A waits again: the next element is A's. Nothing is delivered
    twice."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    f1, f2 = cluster.followers(leader)
    warm_up(cluster)
    a = block(cluster, f1, "BLPOP", "pz", "0")
    b = block(cluster, f2, "BLPOP", "pz", "0")
    cluster.sigstop(f1)
    t0 = time.monotonic()
    assert client(cluster, leader).rpush("pz", "e1") == 1
    assert b.outcome(PENDING_TIMEOUT_S + 15) == ["pz", "e1"]
    took = time.monotonic() - t0
    print(f"\nB got e1 {took:.2f}s after the push (A's node paused)")
    assert took >= PENDING_TIMEOUT_S - 1, f"B got A's element after only {took:.2f}s"
    assert a.is_alive()
    cluster.sigcont(f1)
    cluster.leader(timeout=30)
    cluster.wait_applied_equal(timeout=30)
    # A must still be waiting: its late confirmation was refused.
    assert a.is_alive(), f"A answered {a.result!r} {a.error!r} after its element was given back"
    assert client(cluster, f2).rpush("pz", "e2") == 1
    assert a.outcome(20) == ["pz", "e2"]
    assert lrange_everywhere(cluster, "pz") == {m: [] for m in cluster.nodes}
    cluster.assert_digests_equal()


def test_short_timeout_waiters_under_push_load_lose_nothing(make_cluster):
    """Twelve clients loop on BLPOP with 50-200 ms timeouts through every node
    while three pushers push 300 distinct elements: timeouts race serves (an
    element served to a client that just timed out goes back to the list).
    At the end every element was popped exactly once or is in the list."""
    cluster = make_cluster(3)
    warm_up(cluster)
    popped: List[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    errors: List[str] = []
    timeouts = ["0.05", "0.1", "0.2"]

    def waiter(i):
        m = i % 3 + 1
        c = client(cluster, m)
        try:
            while not stop.is_set():
                r = c.execute_command("BLPOP", "st", timeouts[i % 3])
                if r is not None:
                    with lock:
                        popped.append(r[1])
        except Exception as e:  # noqa: BLE001
            errors.append(f"waiter {i}: {e!r}")
        finally:
            c.close()

    def pusher(j):
        c = client(cluster, j + 1)
        try:
            for k in range(100):
                c.rpush("st", f"s{j}:{k}")
                time.sleep(0.01)
        except Exception as e:  # noqa: BLE001
            errors.append(f"pusher {j}: {e!r}")
        finally:
            c.close()

    waiters = [threading.Thread(target=waiter, args=(i,), daemon=True) for i in range(12)]
    pushers = [threading.Thread(target=pusher, args=(j,)) for j in range(3)]
    for t in waiters + pushers:
        t.start()
    for t in pushers:
        t.join(120)
    cluster.wait_for("all 300 popped", lambda: len(popped) >= 300, timeout=PENDING_TIMEOUT_S + 30)
    stop.set()
    for t in waiters:
        t.join(30)
    assert not errors, errors[:5]
    counts = collections.Counter(popped)
    dups = {v: n for v, n in counts.items() if n > 1}
    remaining = lrange_everywhere(cluster, "st")
    print(f"\npopped {len(popped)}, distinct {len(counts)}, left in the list {len(remaining[1])}")
    assert not dups, f"popped more than once: {list(dups.items())[:10]}"
    pushed = {f"s{j}:{k}" for j in range(3) for k in range(100)}
    assert set(counts) | set(remaining[1]) == pushed
    cluster.assert_digests_equal()


def test_blocking_across_leader_kill_no_element_lost_or_duplicated(make_cluster):
    """Clients loop on BLPOP through both followers while pushers push
    distinct elements through every node; kill -9 of the leader in the middle.
    Every acknowledged push is, at the end, popped by exactly one client or
    still in the list; nothing is popped twice; nothing answered CLUSTERDOWN
    appears; replicas agree."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    followers = cluster.followers(leader)
    warm_up(cluster)
    lock = threading.Lock()
    popped: List[Tuple[int, str]] = []
    waiter_errors: Dict[str, int] = collections.Counter()
    pushes: Dict[str, str] = {}  # value -> ack | uncertain | clusterdown | lost | error
    stop_push, stop_wait = threading.Event(), threading.Event()
    odd: List[str] = []

    def waiter(i, m):
        c = None
        while not stop_wait.is_set():
            if c is None:
                c = client(cluster, m, socket_timeout=30)
            try:
                r = c.execute_command("BLPOP", "lk", "1" if i % 2 else "0")
                if r is not None:
                    with lock:
                        popped.append((i, r[1]))
            except Exception as e:  # noqa: BLE001
                kind = error_kind(e)
                with lock:
                    waiter_errors[kind] += 1
                    if kind == "other":
                        odd.append(f"waiter {i}: {e!r}")
                c.close()
                c = None
                time.sleep(0.05)
        if c is not None:
            c.close()

    def pusher(j, m):
        c, k = None, 0
        while not stop_push.is_set():
            node = cluster.nodes[m]
            if node.killed:
                m = next(x for x in followers)
                if c is not None:
                    c.close()
                c = None
                continue
            if c is None:
                c = client(cluster, m, socket_timeout=20)
            values = [f"p{j}:{k}", f"p{j}:{k + 1}"]
            k += 2
            try:
                c.rpush("lk", *values)
                result = "ack"
            except Exception as e:  # noqa: BLE001
                kind = error_kind(e)
                if kind in ("clusterdown", "uncertain"):
                    result = kind
                elif kind == "connection":
                    result = "lost"
                else:
                    result = "error"
                    odd.append(f"pusher {j}: {e!r}")
                c.close()
                c = None
            with lock:
                for value in values:
                    pushes[value] = result
        if c is not None:
            c.close()

    waiters = [threading.Thread(target=waiter, args=(i, followers[i % 2]), daemon=True)
               for i in range(16)]
    pushers = [threading.Thread(target=pusher, args=(j, [leader, *followers][j % 3]), daemon=True)
               for j in range(6)]
    for t in waiters + pushers:
        t.start()
    try:
        cluster.wait_for("100 acknowledged pushes", lambda: sum(
            v == "ack" for v in list(pushes.values())) >= 100, timeout=30)
        cluster.kill9(leader)
        t_kill = time.monotonic()
        new_leader = cluster.leader(timeout=30)
        acked_then = sum(v == "ack" for v in list(pushes.values()))
        cluster.wait_for("100 more acknowledged pushes after the kill", lambda: sum(
            v == "ack" for v in list(pushes.values())) >= acked_then + 100, timeout=30)
    finally:
        stop_push.set()
        for t in pushers:
            t.join(30)
    print(f"\nkilled leader {leader} ({time.monotonic() - t_kill:.1f}s ago); new leader "
          f"{new_leader}; pushes {collections.Counter(pushes.values())}")

    def drained():
        c = client(cluster, new_leader)
        try:
            return c.llen("lk") == 0
        finally:
            c.close()

    cluster.wait_for("the waiters to drain the list", drained, timeout=60)
    stop_wait.set()
    # Waiters blocked with timeout 0 are woken by an element each.
    c = client(cluster, new_leader)
    deadline = time.monotonic() + 40
    n_wake = 0
    while any(t.is_alive() for t in waiters) and time.monotonic() < deadline:
        c.rpush("lk", f"wake:{n_wake}")
        n_wake += 1
        for t in waiters:
            t.join(0.05)
    c.close()
    assert not any(t.is_alive() for t in waiters), "waiters did not stop"
    # Elements served but never confirmed come back after PENDING_TIMEOUT_S.
    deadline = time.monotonic() + PENDING_TIMEOUT_S + 3
    while time.monotonic() < deadline:
        time.sleep(0.2)
    c = client(cluster, new_leader)
    remaining = [v for v in c.lrange("lk", 0, -1) if not v.startswith("wake:")]
    c.close()
    print(f"popped {len(popped)}, remaining {len(remaining)}, waiter errors "
          f"{dict(waiter_errors)}")
    assert not odd, odd[:5]
    counts = collections.Counter(v for _, v in popped if not v.startswith("wake:"))
    dups = {v: n for v, n in counts.items() if n > 1}
    assert not dups, f"popped twice: {list(dups.items())[:10]}"
    both = set(counts) & set(remaining)
    assert not both, f"popped and still in the list: {sorted(both)[:10]}"
    assert len(remaining) == len(set(remaining)), "duplicates in the list"
    seen = set(counts) | set(remaining)
    acked = {v for v, r in pushes.items() if r == "ack"}
    lost = acked - seen
    assert not lost, f"{len(lost)} acknowledged pushes lost, e.g. {sorted(lost)[:10]}"
    invented = {v for v in seen if pushes.get(v) not in ("ack", "uncertain", "lost")}
    assert not invented, (f"elements whose push was not acknowledged (or never made) appear: "
                          f"{[(v, pushes.get(v)) for v in sorted(invented)[:10]]}")
    cluster.restart(leader)
    cluster.wait_voter(leader, timeout=40)
    cluster.assert_digests_equal(timeout=40)


def test_blocked_client_in_another_database_and_wrong_type(make_cluster):
    """A client blocked in database 5 is not woken by a push to the same key
    name in database 0, nor by the key being created with another type (it
    stays blocked, as in Redis 7.0); a push in database 5 serves it."""
    cluster = make_cluster(3)
    warm_up(cluster)
    before = settled_index(cluster)
    call = Call(cluster, 2, "BLPOP", "dbk", "0", db=5)
    call.start()
    wait_applied_past(cluster, before, "the BLPOP in database 5 to be queued")
    c0 = client(cluster, 3)
    c5 = client(cluster, 1, db=5)
    assert c0.rpush("dbk", "db0") == 1
    assert c5.set("dbk", "a string") is True
    settled_index(cluster)
    assert call.is_alive(), f"woken by another database or type: {call.result!r} {call.error!r}"
    assert c5.delete("dbk") == 1
    assert c5.rpush("dbk", "db5") == 1
    assert call.outcome(10) == ["dbk", "db5"]
    assert c0.lrange("dbk", 0, -1) == ["db0"]
    assert c5.exists("dbk") == 0
    cluster.assert_digests_equal()


def test_blmove_across_nodes(make_cluster):
    cluster = make_cluster(3)
    warm_up(cluster)
    call = block(cluster, 2, "BLMOVE", "mv:src", "mv:dst", "RIGHT", "LEFT", "0")
    assert client(cluster, 3).rpush("mv:dst", "old") == 1
    assert call.is_alive(), "BLMOVE waits on its source only"
    assert client(cluster, 3).rpush("mv:src", "a", "b") == 2
    assert call.outcome(10) == "b"
    assert lrange_everywhere(cluster, "mv:dst") == {m: ["b", "old"] for m in cluster.nodes}
    assert lrange_everywhere(cluster, "mv:src") == {m: ["a"] for m in cluster.nodes}
    # BRPOPLPUSH chain: a waiter on the destination of another's move.
    chain = block(cluster, 1, "BLPOP", "mv:c2", "0")
    mover = block(cluster, 3, "BRPOPLPUSH", "mv:c1", "mv:c2", "0")
    assert client(cluster, 2).lpush("mv:c1", "x") == 1
    assert mover.outcome(10) == "x"
    assert chain.outcome(10) == ["mv:c2", "x"]
    assert lrange_everywhere(cluster, "mv:c2") == {m: [] for m in cluster.nodes}
    cluster.assert_digests_equal()


def test_bzpopmin_across_nodes(make_cluster):
    cluster = make_cluster(3)
    warm_up(cluster)
    call = block(cluster, 3, "BZPOPMIN", "zq", "0", protocol=3)
    assert client(cluster, 1).zadd("zq", {"b": 2, "a": 1, "c": 3}) == 3
    assert call.outcome(10) == ["zq", "a", 1.0]
    call = block(cluster, 2, "BZPOPMAX", "zq-none", "zq3", "0")
    assert client(cluster, 1).zadd("zq3", {"d": 4, "e": 5}) == 2
    assert call.outcome(10) == ["zq3", "e", 5.0]
    c = client(cluster, 2)
    assert c.zrange("zq", 0, -1, withscores=True) == [("b", 2.0), ("c", 3.0)]
    cluster.assert_digests_equal()


@pytest.mark.parametrize("protocol", [2, 3])
def test_bzmpop_served_later(make_cluster, protocol):
    """BZMPOP blocked on node 1, served by a ZADD through node 2: Redis 7.0's
    reply is [key, [[member, score], ...]] (RESP2 scores as bulk strings)."""
    cluster = make_cluster(3)
    warm_up(cluster)
    call = block(cluster, 1, "BZMPOP", "0", "1", "zq2", "MAX", "COUNT", "5", protocol=protocol)
    assert client(cluster, 2).zadd("zq2", {"x": 1, "y": 2}) == 2
    want = [["y", "2"], ["x", "1"]] if protocol == 2 else [["y", 2.0], ["x", 1.0]]
    assert call.outcome(10) == ["zq2", want]
    assert client(cluster, 3).exists("zq2") == 0
    cluster.assert_digests_equal()


def test_blocked_client_is_visible_in_info_and_client_list(make_cluster):
    """INFO clients' blocked_clients counts the node's blocked clients and
    CLIENT LIST shows them with flags=b and cmd=blpop, as in Redis."""
    cluster = make_cluster(3)
    warm_up(cluster)
    call = block(cluster, 2, "BLPOP", "vis", "0")
    c = client(cluster, 2)
    info = c.info("clients")
    entry = next(e for e in c.client_list() if int(e["id"]) == call.client_id)
    c.lpush("vis", "done")
    assert call.outcome(10) == ["vis", "done"]
    problems = []
    if info.get("blocked_clients") != 1:
        problems.append(f"INFO blocked_clients = {info.get('blocked_clients')!r}, want 1")
    if "b" not in entry["flags"]:
        problems.append(f"CLIENT LIST flags={entry['flags']!r}, want 'b'")
    if entry["cmd"] != "blpop":
        problems.append(f"CLIENT LIST cmd={entry['cmd']!r}, want 'blpop'")
    assert not problems, problems

"""Client-side caching (CLIENT TRACKING) on a real three-node cluster.

A client tracks keys on one node; the writes that change them go through
other nodes (the leader, the other follower), and the invalidation must
still reach the tracking client: every node applies every entry, and each
node tells its own tracking clients. Covered: default mode (keys read by the
client), BCAST with prefixes, OPTIN with CLIENT CACHING, RESP2 REDIRECT to a
client subscribed to ``__redis__:invalidate``, FLUSHALL (a null
invalidation), expiry, and a leader kill between the read and the write.

"Nothing arrives" is checked with a marker: after the write that must not
invalidate, a write that must is made through the same node; entries apply
in log order, so the first push the client sees must be the marker's.

The client here is a raw socket with a small RESP3 reader, so pushes and
replies are seen exactly as the node writes them.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path
from typing import List, Optional

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


PUSH_TIMEOUT = 10.0


class Push(list):
    """A RESP3 push frame (``>``)."""


class RespError(Exception):
    pass


class Raw:
    """One connection to a node, speaking RESP2 or RESP3 (after HELLO 3)."""

    def __init__(self, port: int, protocol: int = 3):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=PUSH_TIMEOUT)
        self.buf = b""
        self.pushes: List[list] = []
        if protocol == 3:
            hello = self.call("HELLO", "3")
            assert isinstance(hello, dict) and hello.get("proto") == 3, hello

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the node closed the connection")
        self.buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+",):
            return rest.decode()
        if kind in (b"-", b"!"):
            if kind == b"!":
                rest = self._exact(int(rest))
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"_":
            return None
        if kind == b"#":
            return rest == b"t"
        if kind in (b"$", b"="):
            n = int(rest)
            return None if n < 0 else self._exact(n).decode()
        if kind in (b"*", b">", b"~"):
            n = int(rest)
            if n < 0:
                return None
            items = [self.read() for _ in range(n)]
            return Push(items) if kind == b">" else items
        if kind == b"%":
            n = int(rest)
            out = {}
            for _ in range(n):
                k = self.read()
                out[k] = self.read()
            return out
        raise AssertionError(f"unexpected RESP frame {line!r}")

    def send(self, *args) -> None:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))

    def call(self, *args):
        """Sends a command and returns its reply; pushes read meanwhile are
        kept for :meth:`next_push`."""
        self.send(*args)
        while True:
            frame = self.read()
            if isinstance(frame, Push):
                self.pushes.append(list(frame))
                continue
            if isinstance(frame, RespError):
                raise frame
            return frame

    def next_push(self, timeout: float = PUSH_TIMEOUT) -> list:
        if self.pushes:
            return self.pushes.pop(0)
        self.sock.settimeout(timeout)
        try:
            frame = self.read()
        finally:
            self.sock.settimeout(PUSH_TIMEOUT)
        assert isinstance(frame, Push), f"a reply where a push was expected: {frame!r}"
        return list(frame)

    def next_message(self, timeout: float = PUSH_TIMEOUT) -> list:
        """RESP2: the next array frame (a pub/sub message)."""
        self.sock.settimeout(timeout)
        try:
            return self.read()
        finally:
            self.sock.settimeout(PUSH_TIMEOUT)


def port(cluster, m: int) -> int:
    return cluster.node(m).resp_port


def writer(cluster, m: int):
    return cluster.client(m, socket_timeout=20)


def roles(cluster):
    leader = cluster.wait_stable(timeout=30)
    f1, f2 = cluster.followers(leader)
    return leader, f1, f2


def test_default_mode_invalidations_for_writes_through_every_other_node(make_cluster):
    cluster = make_cluster(3)
    leader, f1, f2 = roles(cluster)
    t = Raw(port(cluster, f1))
    assert t.call("CLIENT", "TRACKING", "ON") == "OK"
    for via, cmd in [
        (leader, ("SET", "k", "1")),
        (f2, ("SET", "k", "2")),
        (leader, ("APPEND", "k", "x")),
        (f2, ("EXPIRE", "k", "100")),
        (leader, ("DEL", "k")),
    ]:
        # Each step's write leaves the key for the next; the read tracks it
        # anew (an invalidation ends tracking of the key).
        t.call("GET", "k")
        writer(cluster, via).execute_command(*cmd)
        push = t.next_push()
        assert push == ["invalidate", ["k"]], (via, cmd, push)
    # The client's own write through its node invalidates too (no NOLOOP).
    t.call("GET", "k")
    assert t.call("SET", "k", "mine") == "OK"
    assert t.next_push() == ["invalidate", ["k"]]
    t.close()


def test_a_key_not_read_is_not_invalidated_and_flushall_is_null(make_cluster):
    cluster = make_cluster(3)
    leader, f1, f2 = roles(cluster)
    w = writer(cluster, f2)
    w.set("read", "1")
    w.set("unread", "1")
    t = Raw(port(cluster, f1))
    assert t.call("CLIENT", "TRACKING", "ON") == "OK"
    assert t.call("GET", "read") == "1"
    w.set("unread", "2")  # not tracked: no push
    w.set("read", "2")  # the marker
    assert t.next_push() == ["invalidate", ["read"]]
    t.call("GET", "read")
    writer(cluster, leader).flushall()
    assert t.next_push() == ["invalidate", None]
    t.close()


def test_expiry_invalidates_a_tracked_key(make_cluster):
    cluster = make_cluster(3)
    leader, f1, f2 = roles(cluster)
    writer(cluster, leader).set("ttl", "v", px=300)
    t = Raw(port(cluster, f1))
    assert t.call("CLIENT", "TRACKING", "ON") == "OK"
    assert t.call("GET", "ttl") == "v"
    started = time.monotonic()
    assert t.next_push() == ["invalidate", ["ttl"]]
    assert time.monotonic() - started < PUSH_TIMEOUT
    assert t.call("GET", "ttl") is None
    t.close()


def test_bcast_prefixes_across_nodes(make_cluster):
    cluster = make_cluster(3)
    leader, f1, f2 = roles(cluster)
    t = Raw(port(cluster, f1))
    assert t.call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "user:", "PREFIX", "s:") == "OK"
    writer(cluster, leader).set("other:1", "x")  # no prefix: nothing
    writer(cluster, leader).set("user:1", "x")  # nobody read it: BCAST still tells
    assert t.next_push() == ["invalidate", ["user:1"]]
    writer(cluster, f2).mset({"s:a": "1", "nope": "2"})
    assert t.next_push() == ["invalidate", ["s:a"]]
    t.close()


def test_optin_tracks_only_after_caching_yes(make_cluster):
    cluster = make_cluster(3)
    leader, f1, f2 = roles(cluster)
    w = writer(cluster, leader)
    w.mset({"a": "1", "b": "1"})
    t = Raw(port(cluster, f1))
    assert t.call("CLIENT", "TRACKING", "ON", "OPTIN") == "OK"
    assert t.call("GET", "a") == "1"  # not tracked
    assert t.call("CLIENT", "CACHING", "YES") == "OK"
    assert t.call("GET", "b") == "1"  # tracked
    w.set("a", "2")
    w.set("b", "2")
    assert t.next_push() == ["invalidate", ["b"]]
    t.close()


def test_resp2_redirect_to_a_subscribed_client(make_cluster):
    cluster = make_cluster(3)
    leader, f1, f2 = roles(cluster)
    sub = Raw(port(cluster, f1), protocol=2)
    sub_id = sub.call("CLIENT", "ID")
    assert sub.call("SUBSCRIBE", "__redis__:invalidate") == ["subscribe", "__redis__:invalidate", 1]
    t = Raw(port(cluster, f1), protocol=2)
    assert t.call("CLIENT", "TRACKING", "ON", "REDIRECT", sub_id) == "OK"
    assert t.call("CLIENT", "GETREDIR") == sub_id
    writer(cluster, f2).set("r", "1")
    assert t.call("GET", "r") == "1"
    writer(cluster, f2).set("r", "2")
    assert sub.next_message() == ["message", "__redis__:invalidate", ["r"]]
    t.close()
    sub.close()


def test_invalidation_after_a_leader_kill(make_cluster):
    cluster = make_cluster(3)
    leader, f1, f2 = roles(cluster)
    writer(cluster, leader).set("lk", "1")
    t = Raw(port(cluster, f1))
    assert t.call("CLIENT", "TRACKING", "ON") == "OK"
    assert t.call("GET", "lk") == "1"
    cluster.kill9(leader)
    new_leader = cluster.leader(timeout=30)
    assert new_leader in (f1, f2)
    w = writer(cluster, f2)
    deadline = time.monotonic() + 30
    last: Optional[Exception] = None
    while time.monotonic() < deadline:
        try:
            w.set("lk", "2")
            break
        except Exception as e:  # the new leader may still be settling
            last = e
            time.sleep(0.2)
    else:
        raise AssertionError(f"no write after the leader kill: {last}")
    # The leader changed, so the node told its tracking client to drop its
    # whole cache (writes of the new leader may not have waited for it; once
    # more if its registration ran out while the leader was gone). A flush
    # also ends the tracking of lk, so the write's own invalidation of lk
    # comes only if lk was still tracked when it was applied.
    assert t.next_push() == ["invalidate", None]
    while True:
        try:
            push = t.next_push(timeout=0.5)
        except (socket.timeout, TimeoutError):
            break
        assert push in (["invalidate", None], ["invalidate", ["lk"]]), push
    assert t.call("GET", "lk") == "2"
    t.close()



def _get_calls(cluster, m: int) -> int:
    stats = writer(cluster, m).info("commandstats").get("cmdstat_get", {})
    return int(stats.get("calls", 0))


def _caching_client(cluster, m: int):
    from redis.cache import CacheConfig

    c = cluster.client(m, protocol=3, cache_config=CacheConfig())
    assert c.get_cache() is not None, "redis-py did not enable its cache (HELLO < 7.4?)"
    return c


def test_redis_py_client_side_cache_is_used_and_invalidated(make_cluster):
    """redis-py 8's own cache (``cache_config``; it turns it on only when
    HELLO reports 7.4 or later) on a follower: reads are served from the
    cache, and a write through another node invalidates the entry (the
    next reads, once the follower applied it, see the new value)."""
    cluster = make_cluster(3)
    leader, f1, f2 = roles(cluster)
    writer(cluster, leader).set("cached", "v1")
    c = _caching_client(cluster, f1)
    cache = c.get_cache()
    assert c.get("cached") == "v1"
    assert cache.size == 1, "the first read is cached"
    before = _get_calls(cluster, f1)
    assert c.get("cached") == "v1"
    assert _get_calls(cluster, f1) == before, "the second read did not reach the server"
    for via, value in [(leader, "v2"), (f2, "v3"), (leader, "v4")]:
        assert writer(cluster, via).set("cached", value)
        deadline = time.monotonic() + PUSH_TIMEOUT
        while c.get("cached") != value:
            assert time.monotonic() < deadline, (via, value)
            time.sleep(0.005)
        # Cached again: the next read does not reach the server.
        before = _get_calls(cluster, f1)
        assert c.get("cached") == value
        assert _get_calls(cluster, f1) == before
    c.close()


@pytest.mark.parametrize("cache_on", ["follower", "leader"])
def test_redis_py_client_side_cache_never_stale_after_the_write_reply(make_cluster, cache_on):
    """After the writer has its reply, the caching client's next GET
    returns the new value (no stale read from its cache): the leader answers
    a write only once every node with tracking clients has told them (see
    crates/cluster/src/tracking.rs). Many rounds, through the two other
    nodes: before that wait existed, a cache on a follower was stale in
    dozens of 200 rounds (and in two runs of three with only three)."""
    cluster = make_cluster(3)
    leader, f1, f2 = roles(cluster)
    writer(cluster, leader).set("cached", "v0")
    node, others = (f1, (leader, f2)) if cache_on == "follower" else (leader, (f1, f2))
    c = _caching_client(cluster, node)
    assert c.get("cached") == "v0"
    writers = {m: writer(cluster, m) for m in others}
    stale = []
    for i in range(1, 201):
        via = others[i % 2]
        value = f"v{i}"
        assert writers[via].set("cached", value)
        got = c.get("cached")
        if got != value:
            stale.append((i, via, got, value))
    assert not stale, stale[:5]
    # Served from the cache between writes too: one GET per write reached
    # the server, not more (the cache was in use, not bypassed).
    before = _get_calls(cluster, node)
    assert c.get("cached") == "v200"
    assert _get_calls(cluster, node) == before
    assert int(cluster.info(leader)["tracking_write_waits_timed_out"]) == 0
    c.close()


def test_a_tracking_client_that_writes_is_not_held_up_by_itself(make_cluster):
    """A tracking client on a follower that writes keys it caches: its own
    write's invalidation goes out after its reply (as Redis orders it), so
    the leader must not wait for that connection to write it while the
    connection waits for the write. No write of the leader gave up waiting
    for a node (which a deadlock would end in, after 500 ms)."""
    cluster = make_cluster(3)
    leader, f1, _ = roles(cluster)
    t = Raw(port(cluster, f1))
    assert t.call("CLIENT", "TRACKING", "ON") == "OK"
    for i in range(30):
        assert t.call("SET", "own", i) == "OK"
        assert t.call("GET", "own") == str(i)
    info = cluster.info(leader)
    assert int(info["tracking_registered_nodes"]) == 1
    assert int(info["tracking_write_waits_timed_out"]) == 0
    # Its own writes invalidated what it had read, after each reply.
    assert t.pushes, "no invalidation arrived"
    assert all(p == ["invalidate", ["own"]] for p in t.pushes), t.pushes
    # Tracking off: the node unregisters.
    assert t.call("CLIENT", "TRACKING", "OFF") == "OK"
    deadline = time.monotonic() + 5
    while int(cluster.info(leader)["tracking_registered_nodes"]) != 0:
        assert time.monotonic() < deadline, "the node stayed registered"
        time.sleep(0.05)
    t.close()


def test_a_paused_tracking_node_holds_writes_up_only_for_its_registration(make_cluster):
    """A follower with a tracking client is paused: the leader's writes wait
    for it only until its registration runs out (500 ms after its last
    report), then go on without it. Resumed, it tells its client to drop
    its whole cache (writes went on without it), and the client reads the
    new value."""
    cluster = make_cluster(3)
    leader, f1, f2 = roles(cluster)
    w = writer(cluster, leader)
    w.set("paused", "before")
    t = Raw(port(cluster, f1))
    assert t.call("CLIENT", "TRACKING", "ON") == "OK"
    assert t.call("GET", "paused") == "before"
    assert int(cluster.info(leader)["tracking_registered_nodes"]) == 1
    cluster.sigstop(f1)
    try:
        for i in range(10):
            assert w.set("paused", f"during{i}")
        assert int(cluster.info(leader)["tracking_registered_nodes"]) == 0
        assert writer(cluster, f2).get("paused") == "during9"
    finally:
        cluster.sigcont(f1)
    # The writes it missed may invalidate "paused" first; the flush comes.
    push = t.next_push()
    while push == ["invalidate", ["paused"]]:
        push = t.next_push()
    assert push == ["invalidate", None]
    deadline = time.monotonic() + 10
    while t.call("GET", "paused") != "during9":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    t.close()

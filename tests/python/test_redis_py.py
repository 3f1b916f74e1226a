"""raftcache through redis-py, sync and asyncio, used the way our users use it.

Every test gets a fresh server (see conftest.py). Multi-process tests use the
``fork`` start method; each worker process opens its own redis-py client.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import queue as queue_mod
import socket
import time
import uuid

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.commands.core import HashDataPersistOptions
from redis.exceptions import AuthenticationError, ResponseError
from redis.retry import Retry

MP = multiprocessing.get_context("fork")


def _run_processes(target, n, args, timeout=60.0):
    """Run n processes target(idx, barrier, out, *args); return their results.

    Each worker puts exactly one result tuple on ``out``. Workers still alive
    after the timeout are killed (they are our own children, by pid).
    """
    barrier = MP.Barrier(n)
    out = MP.Queue()
    procs = [MP.Process(target=target, args=(i, barrier, out, *args), daemon=True) for i in range(n)]
    for p in procs:
        p.start()
    results = []
    deadline = time.monotonic() + timeout
    try:
        while len(results) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                results.append(out.get(timeout=left))
            except queue_mod.Empty:
                break
    finally:
        for p in procs:
            p.join(timeout=max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
    errors = [r for r in results if r[1] == "error"]
    assert not errors, f"worker errors: {errors}"
    assert len(results) == n, f"only {len(results)} of {n} workers reported: {results}"
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return results


# --------------------------------------------------------------------------- lock

LOCK_KEY = "lock:report:2024-06"
UNLOCK_KEY = "lock:report:2024-06:done"


def _lock_worker(idx, barrier, out, port):
    try:
        r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=15)
        r.ping()  # connect before the race starts
        barrier.wait(timeout=30)
        won = r.set(LOCK_KEY, str(idx), nx=True, ex=120)
        if won:
            if won is not True:
                raise AssertionError(f"SET NX EX winner got {won!r}, expected True")
            shortened = r.expire(LOCK_KEY, 60)
            r.set(UNLOCK_KEY, f"released-by-{idx}")
            out.put((idx, "won", shortened, f"released-by-{idx}"))
            return
        if won is not None:
            raise AssertionError(f"SET NX EX loser got {won!r}, expected None")
        deadline = time.monotonic() + 30
        while True:
            v = r.get(UNLOCK_KEY)
            if v is not None:
                out.put((idx, "lost", None, v))
                return
            if time.monotonic() > deadline:
                out.put((idx, "error", "unlock key never appeared", None))
                return
            time.sleep(0.005)
    except BaseException as e:  # report everything to the parent
        out.put((idx, "error", repr(e), None))


def test_lock_set_nx_ex_exactly_one_winner_across_processes(server, r):
    n = 16
    results = _run_processes(_lock_worker, n, (server.port,))
    winners = [res for res in results if res[1] == "won"]
    assert len(winners) == 1, f"exactly one process must win the lock: {results}"
    winner_idx, _, shortened, token = winners[0]
    assert shortened is True, f"EXPIRE on the held lock returned {shortened!r}"
    losers = [res for res in results if res[1] == "lost"]
    assert len(losers) == n - 1
    assert all(res[3] == token for res in losers), "every loser observes the unlock key"
    assert r.get(LOCK_KEY) == str(winner_idx), "the lock holds the winner's value"
    ttl = r.ttl(LOCK_KEY)
    assert 0 < ttl <= 60, f"TTL after EXPIRE 60 is {ttl}"
    pttl = r.pttl(LOCK_KEY)
    assert 0 < pttl <= 60_000


def test_lock_release_and_reacquire(r):
    assert r.set("lk", "owner-a", nx=True, ex=30) is True
    assert r.set("lk", "owner-b", nx=True, ex=30) is None
    assert r.get("lk") == "owner-a"
    # Release only if we still own it (what redis-py's Lock does without Lua: GET then DEL).
    if r.get("lk") == "owner-a":
        assert r.delete("lk") == 1
    assert r.set("lk", "owner-b", nx=True, px=1500) is True
    assert 0 < r.pttl("lk") <= 1500
    # An expired lock can be taken again.
    assert r.set("short", "x", nx=True, px=100) is True
    time.sleep(0.25)
    assert r.set("short", "y", nx=True, ex=5) is True
    assert r.get("short") == "y"


# ------------------------------------------------------------ fixed-window limiter

def _limiter_worker(idx, barrier, out, port, key, per_worker, window, limit):
    try:
        r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=15)
        r.ping()
        barrier.wait(timeout=30)
        counts, expires, allowed = [], 0, 0
        for _ in range(per_worker):
            n = r.incr(key)
            if n == 1:
                if r.expire(key, window) is not True:
                    raise AssertionError("EXPIRE on the fresh counter did not return True")
                expires += 1
            if n <= limit:
                allowed += 1
            counts.append(n)
        out.put((idx, "ok", counts, expires, allowed))
    except BaseException as e:
        out.put((idx, "error", repr(e), 0, 0))


def test_fixed_window_rate_limiter_concurrent_processes(server, r):
    workers, per_worker, window, limit = 6, 40, 30, 100
    key = "rl:api:client-42"
    results = _run_processes(
        _limiter_worker, workers, (server.port, key, per_worker, window, limit)
    )
    total = workers * per_worker
    all_counts = sorted(c for res in results for c in res[2])
    assert all_counts == list(range(1, total + 1)), "every INCR returns a distinct count"
    assert sum(res[3] for res in results) == 1, "EXPIRE must be set exactly once"
    assert sum(res[4] for res in results) == limit, "exactly `limit` requests allowed"
    assert int(r.get(key)) == total
    ttl = r.ttl(key)
    assert 0 < ttl <= window, f"ttl {ttl}"


def test_fixed_window_rate_limiter_window_restarts(r):
    key, window = "rl:short", 1
    for expected in (1, 2, 3):
        n = r.incr(key)
        assert n == expected
        if n == 1:
            assert r.expire(key, window) is True
    # PTTL rather than TTL for a 1 s window: TTL rounds to the nearest second.
    assert 0 < r.pttl(key) <= window * 1000
    time.sleep(window + 0.15)
    assert r.get(key) is None, "the window key must be gone after the window"
    assert r.exists(key) == 0
    assert r.incr(key) == 1, "a new window restarts the count at 1"
    assert r.ttl(key) == -1, "the new counter has no TTL until the limiter sets it"


def test_fixed_window_rate_limiter_pipeline_expire_nx(r):
    """Common variant: INCR + EXPIRE NX (Redis 7) in one non-transactional pipeline."""
    key, window = "rl:pipe", 10
    seen = []
    for _ in range(5):
        pipe = r.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, window, nx=True)
        n, expire_set = pipe.execute()
        seen.append((n, expire_set))
    assert seen == [(1, True), (2, False), (3, False), (4, False), (5, False)]
    assert 0 < r.ttl(key) <= window


# ------------------------------------------------------------ sliding-window limiter

def _sliding_hit(r, key, window_s, limit):
    # MULTI/EXEC is not implemented in raftcache yet, so the pipeline is not
    # transactional (transaction=False); the commands still run in order.
    now = time.time()
    pipe = r.pipeline(transaction=False)
    pipe.zremrangebyscore(key, 0, now - window_s)
    pipe.zadd(key, {f"{now:.6f}-{uuid.uuid4().hex[:8]}": now})
    pipe.zcard(key)
    pipe.expire(key, int(window_s) + 1)
    removed, added, count, expire_ok = pipe.execute()
    assert added == 1 and expire_ok is True
    return count <= limit, count, removed


def test_sliding_window_limiter_pipeline(r):
    key, window, limit = "sw:user:7", 1.0, 5
    decisions = [_sliding_hit(r, key, window, limit) for _ in range(8)]
    assert [d[0] for d in decisions] == [True] * 5 + [False] * 3
    assert [d[1] for d in decisions] == list(range(1, 9))
    assert r.zcard(key) == 8
    assert 0 < r.pttl(key) <= 2000
    time.sleep(window + 0.1)
    allowed, count, removed = _sliding_hit(r, key, window, limit)
    assert removed == 8, "entries older than the window are trimmed"
    assert (allowed, count) == (True, 1)


# ---------------------------------------------------------------- endpoint cache

def test_endpoint_cache_json_with_expiry(server, r):
    backend_calls = []

    def fetch_users(page: int) -> dict:
        key = f"endpoint:/api/users?page={page}&sort=name"
        cached = r.get(key)
        if cached is not None:
            return json.loads(cached)
        backend_calls.append(page)
        payload = {
            "page": page,
            "users": [{"id": i, "name": f"user {i}", "tags": ["ä", "☃", "\u0000"]} for i in range(3)],
            "total": 3,
            "score": 1.25,
            "next": None,
        }
        assert r.set(key, json.dumps(payload), ex=1) is True
        return payload

    first = fetch_users(2)
    second = fetch_users(2)
    assert second == first
    assert backend_calls == [2], "the second call is a cache hit"
    key = "endpoint:/api/users?page=2&sort=name"
    assert 0 < r.pttl(key) <= 1000
    assert json.loads(r.get(key))["users"][1]["tags"] == ["ä", "☃", "\u0000"]
    time.sleep(1.15)
    assert r.get(key) is None, "cached entry must expire"
    assert fetch_users(2) == first
    assert backend_calls == [2, 2], "after expiry the backend is called again"
    # setex / psetex and overwrite semantics (a plain SET clears the TTL).
    assert r.set("endpoint:a", "x", ex=100) is True
    assert 90 < r.ttl("endpoint:a") <= 100
    assert r.set("endpoint:a", "y") is True
    assert r.ttl("endpoint:a") == -1
    assert r.set("endpoint:a", "z", ex=50) is True
    assert r.set("endpoint:a", "w", keepttl=True) is True
    assert 40 < r.ttl("endpoint:a") <= 50
    assert r.get("endpoint:a") == "w"
    # Bytes round-trip through a bytes client.
    rb = server.client(decode_responses=False)
    blob = bytes(range(256)) * 4
    assert rb.set("endpoint:blob", blob, px=5000) is True
    assert rb.get("endpoint:blob") == blob
    rb.close()


# ---------------------------------------------------------------- data types

@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def rp(request, server):
    """A client per protocol version, to check redis-py's parsing of both."""
    c = server.client(protocol=request.param)
    yield c
    c.close()


def test_hashes(rp):
    r = rp
    assert r.hgetall("user:1") == {}
    assert r.hset("user:1", mapping={"name": "ada", "lang": "python", "visits": 10}) == 3
    assert r.hgetall("user:1") == {"name": "ada", "lang": "python", "visits": "10"}
    assert r.hset("user:1", "lang", "rust") == 0
    assert r.hset("user:1", "email", "ada@example.com") == 1
    assert r.hincrby("user:1", "visits", 5) == 15
    assert r.hincrby("user:1", "visits", -20) == -5
    assert r.hincrby("user:1", "new-counter") == 1
    assert r.hincrbyfloat("user:1", "balance", 10.5) == 10.5
    assert r.hincrbyfloat("user:1", "balance", -0.25) == 10.25
    assert r.hget("user:1", "lang") == "rust"
    assert r.hget("user:1", "nope") is None
    assert r.hmget("user:1", ["name", "nope", "visits"]) == ["ada", None, "-5"]
    assert bool(r.hexists("user:1", "email")) is True
    assert bool(r.hexists("user:1", "nope")) is False
    assert r.hlen("user:1") == 6
    assert sorted(r.hkeys("user:1")) == ["balance", "email", "lang", "name", "new-counter", "visits"]
    assert sorted(r.hvals("user:1")) == sorted(["ada", "rust", "-5", "ada@example.com", "1", "10.25"])
    assert bool(r.hsetnx("user:1", "name", "bob")) is False
    assert bool(r.hsetnx("user:1", "nick", "a")) is True
    assert r.hdel("user:1", "nick", "nope") == 1
    with pytest.raises(ResponseError, match="hash value is not an integer"):
        r.hincrby("user:1", "name", 1)
    assert r.type("user:1") == "hash"
    r.set("plain", "x")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        r.hget("plain", "f")
    assert r.hdel("user:1", "name", "lang", "visits", "email", "new-counter", "balance") == 6
    assert r.exists("user:1") == 0, "an emptied hash is deleted"


def test_lists(rp):
    r = rp
    assert r.lpush("tasks", "c", "b", "a") == 3
    assert r.rpush("tasks", "d", "e") == 5
    assert r.lrange("tasks", 0, -1) == ["a", "b", "c", "d", "e"]
    assert r.lrange("tasks", 1, 2) == ["b", "c"]
    assert r.lrange("tasks", -2, 100) == ["d", "e"]
    assert r.llen("tasks") == 5
    assert r.lindex("tasks", -1) == "e"
    assert r.lindex("tasks", 99) is None
    assert r.rpop("tasks") == "e"
    assert r.lpop("tasks") == "a"
    assert r.lpop("tasks", 2) == ["b", "c"]
    assert r.lset("tasks", 0, "D") is True
    assert r.lrange("tasks", 0, -1) == ["D"]
    assert r.rpush("tasks", "x", "D", "x", "y") == 5
    assert r.lrem("tasks", 0, "x") == 2
    assert r.lrange("tasks", 0, -1) == ["D", "D", "y"]
    assert r.ltrim("tasks", 1, -1) is True
    assert r.lrange("tasks", 0, -1) == ["D", "y"]
    assert r.rpop("tasks", 5) == ["y", "D"]
    assert r.exists("tasks") == 0, "an emptied list is deleted"
    assert r.rpop("tasks") is None
    assert r.lrange("tasks", 0, -1) == []
    # Work queue: producers LPUSH, a consumer RPOPs in FIFO order (no BLPOP).
    for i in range(50):
        r.lpush("queue", json.dumps({"job": i}))
    got = []
    while (item := r.rpop("queue")) is not None:
        got.append(json.loads(item)["job"])
    assert got == list(range(50))
    r.set("plain", "x")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        r.lpush("plain", "a")


def test_sets(rp):
    r = rp
    assert r.sadd("tags:1", "redis", "rust", "cache", "rust") == 3
    assert r.sadd("tags:2", "rust", "python") == 2
    assert r.smembers("tags:1") == {"redis", "rust", "cache"}
    assert r.smembers("nope") == set()
    assert bool(r.sismember("tags:1", "rust")) is True
    assert bool(r.sismember("tags:1", "go")) is False
    assert [bool(x) for x in r.smismember("tags:1", ["cache", "go", "redis"])] == [True, False, True]
    assert r.scard("tags:1") == 3
    assert r.sinter("tags:1", "tags:2") == {"rust"}
    assert r.sunion("tags:1", "tags:2") == {"redis", "rust", "cache", "python"}
    assert r.sdiff("tags:1", "tags:2") == {"redis", "cache"}
    assert r.sinterstore("tags:both", ["tags:1", "tags:2"]) == 1
    assert r.smembers("tags:both") == {"rust"}
    assert r.srandmember("tags:1") in {"redis", "rust", "cache"}
    assert set(r.srandmember("tags:1", 10)) == {"redis", "rust", "cache"}
    assert bool(r.smove("tags:1", "tags:2", "cache")) is True
    assert r.smembers("tags:2") == {"rust", "python", "cache"}
    assert r.srem("tags:1", "redis", "nope") == 1
    popped = r.spop("tags:1")
    assert popped == "rust"
    assert r.exists("tags:1") == 0, "an emptied set is deleted"
    assert r.spop("tags:1") is None


def _pairs(v):
    return [(m, float(s)) for m, s in v]


def test_sorted_sets(rp):
    r = rp
    assert r.zadd("lb", {"alice": 10, "bob": 20, "carol": 5.5}) == 3
    assert _pairs(r.zrange("lb", 0, -1, withscores=True)) == [("carol", 5.5), ("alice", 10.0), ("bob", 20.0)]
    assert r.zrange("lb", 0, -1) == ["carol", "alice", "bob"]
    assert r.zrevrange("lb", 0, 0) == ["bob"]
    assert r.zrange("lb", 0, 1, desc=True) == ["bob", "alice"]
    assert r.zincrby("lb", 15, "alice") == 25.0
    assert r.zadd("lb", {"alice": 1}, nx=True) == 0
    assert r.zscore("lb", "alice") == 25.0
    assert r.zadd("lb", {"alice": 30, "dave": 1}, xx=True, ch=True) == 1
    assert r.zscore("lb", "dave") is None
    assert r.zadd("lb", {"bob": 21}, gt=True, ch=True) == 1
    assert r.zadd("lb", {"bob": 3}, gt=True, ch=True) == 0
    assert r.zadd("lb", {"carol": 0.5}, incr=True) == 6.0
    assert r.zrank("lb", "carol") == 0
    assert r.zrevrank("lb", "carol") == 2
    assert r.zrank("lb", "nobody") is None
    assert r.zscore("lb", "nobody") is None
    assert r.zmscore("lb", ["bob", "nobody"]) == [21.0, None]
    assert r.zcard("lb") == 3
    assert r.zcount("lb", 6, 30) == 3
    assert r.zcount("lb", "(6", "+inf") == 2
    assert r.zrangebyscore("lb", 10, "+inf") == ["bob", "alice"]
    assert _pairs(r.zrangebyscore("lb", "-inf", "+inf", start=1, num=1, withscores=True)) == [("bob", 21.0)]
    assert r.zrevrangebyscore("lb", "+inf", 22) == ["alice"]
    assert _pairs(r.zpopmin("lb", 1)) == [("carol", 6.0)]
    assert r.zrem("lb", "bob", "nobody") == 1
    assert r.zremrangebyscore("lb", "-inf", "+inf") == 1
    assert r.exists("lb") == 0, "an emptied sorted set is deleted"
    # Leaderboard with ties: equal scores order by member.
    r.zadd("ties", {"c": 1, "a": 1, "b": 1, "z": 0})
    assert r.zrange("ties", 0, -1) == ["z", "a", "b", "c"]
    assert r.zremrangebyrank("ties", 0, 1) == 2
    assert r.zrange("ties", 0, -1) == ["b", "c"]
    r.set("plain", "x")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        r.zadd("plain", {"a": 1})
    with pytest.raises(ResponseError, match="not a valid float"):
        r.execute_command("ZADD", "lb2", "abc", "m")


def test_strings_and_keys(rp):
    r = rp
    assert r.set("s", "hello") is True
    assert r.get("s") == "hello"
    assert r.append("s", " world") == 11
    assert r.strlen("s") == 11
    assert r.getrange("s", 0, 4) == "hello"
    assert r.mset({"m1": "1", "m2": "2"}) is True
    assert r.mget("m1", "nope", "m2") == ["1", None, "2"]
    assert r.incrby("m1", 10) == 11
    assert r.decr("m2") == 1
    assert r.incrbyfloat("f", 2.5) == 2.5
    assert r.getdel("m2") == "1"
    assert r.getset("s", "new") == "hello world"
    assert r.exists("s", "m1", "nope") == 2
    assert sorted(r.keys("m*")) == ["m1"]
    assert sorted(r.scan_iter(match="*")) == sorted(["s", "m1", "f"])
    assert r.rename("m1", "m3") is True
    assert r.delete("m3", "nope") == 1
    assert r.dbsize() == 2
    assert r.type("s") == "string"
    assert r.type("nope") == "none"
    with pytest.raises(ResponseError, match="not an integer"):
        r.incr("s")
    assert r.flushdb() is True
    assert r.dbsize() == 0


def test_info_scan_and_connection_helpers(rp):
    r = rp
    info = r.info()
    assert isinstance(info, dict) and "redis_version" in info
    assert r.info("keyspace") == {}
    r.set("k1", "v")
    r.set("k2", "v", ex=100)
    ks = r.info("keyspace")
    assert ks["db0"]["keys"] == 2 and ks["db0"]["expires"] == 1, ks
    assert r.echo("héllo") == "héllo"
    assert r.ping() is True
    assert r.client_setname("worker-1") is True
    assert r.client_getname() == "worker-1"
    assert isinstance(r.client_id(), int)
    assert r.config_get("maxmemory") == {"maxmemory": "0"}
    # SCAN-family iterators visit everything exactly once.
    r.hset("big:h", mapping={f"f{i}": i for i in range(300)})
    r.sadd("big:s", *[f"m{i}" for i in range(300)])
    r.zadd("big:z", {f"z{i}": i for i in range(300)})
    for i in range(300):
        r.set(f"scan:{i}", i)
    keys = list(r.scan_iter(match="scan:*", count=50))
    assert len(keys) == 300 and set(keys) == {f"scan:{i}" for i in range(300)}
    fields = dict(r.hscan_iter("big:h", count=50))
    assert fields == {f"f{i}": str(i) for i in range(300)}
    members = list(r.sscan_iter("big:s", count=50))
    assert len(members) == 300 and set(members) == {f"m{i}" for i in range(300)}
    zs = dict(r.zscan_iter("big:z", count=50))
    assert zs == {f"z{i}": float(i) for i in range(300)}


def test_many_connections(server):
    clients = [server.client(single_connection_client=True) for _ in range(200)]
    try:
        for i, c in enumerate(clients):
            assert c.set(f"conn:{i}", i) is True
        for i, c in enumerate(reversed(clients)):
            assert c.get(f"conn:{199 - i}") == str(199 - i)
        assert clients[0].dbsize() == 200
    finally:
        for c in clients:
            c.close()


def test_inline_commands_raw_socket(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        f = s.makefile("rb")
        s.sendall(b"SET greeting \"hello world\"\r\nGET greeting\r\nPING\r\n")
        assert f.readline() == b"+OK\r\n"
        assert f.readline() == b"$11\r\n"
        assert f.readline() == b"hello world\r\n"
        assert f.readline() == b"+PONG\r\n"
        # Pipelined RESP split at arbitrary byte boundaries.
        frame = b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$5\r\nabcde\r\n*2\r\n$3\r\nGET\r\n$1\r\nx\r\n"
        for i in range(len(frame)):
            s.sendall(frame[i:i + 1])
        assert f.readline() == b"+OK\r\n"
        assert f.readline() == b"$5\r\n"
        assert f.readline() == b"abcde\r\n"


# ---------------------------------------------------------------- RESP3

def test_resp3_get_set_hgetall_zrange(server):
    r3 = server.client(protocol=3)
    # The connection really speaks RESP3 (redis-py sent HELLO 3 on connect).
    info = r3.execute_command("CLIENT", "INFO")
    info = info.decode() if isinstance(info, bytes) else info
    assert " resp=3" in info, info
    hello = r3.execute_command("HELLO", "3")
    hello = {(k.decode() if isinstance(k, bytes) else k): v for k, v in hello.items()}
    assert hello["proto"] == 3 and hello["version"].startswith("7."), hello
    assert r3.set("k", "v") is True
    assert r3.get("k") == "v"
    assert r3.get("missing") is None
    assert r3.hset("h", mapping={"a": "1", "b": "2"}) == 2
    assert r3.hgetall("h") == {"a": "1", "b": "2"}
    assert r3.zadd("z", {"x": 1.5, "y": -2}) == 2
    got = r3.zrange("z", 0, -1, withscores=True)
    assert _pairs(got) == [("y", -2.0), ("x", 1.5)]
    assert all(isinstance(s, float) for _, s in got)
    assert r3.zscore("z", "x") == 1.5
    r3.close()


def test_resp3_raw_reply_types(server):
    """Check the RESP3 wire types directly over a socket."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        f = s.makefile("rb")

        def cmd(*args):
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)

        cmd("HELLO", "3")
        first = f.readline()
        assert first.startswith(b"%"), f"HELLO 3 must reply with a map, got {first!r}"
        n = int(first[1:])
        for _ in range(2 * n):  # skip the map's items (scalars and one empty array)
            line = f.readline()
            if line[:1] == b"$":
                f.readline()
        cmd("GET", "missing")
        assert f.readline() == b"_\r\n"
        cmd("HSET", "h", "f", "v")
        assert f.readline() == b":1\r\n"
        cmd("HGETALL", "h")
        assert f.read(len(b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n")) == b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
        cmd("ZADD", "z", "2.5", "m")
        assert f.readline() == b":1\r\n"
        cmd("ZSCORE", "z", "m")
        assert f.readline() == b",2.5\r\n"
        cmd("SADD", "s", "a")
        assert f.readline() == b":1\r\n"
        cmd("SMEMBERS", "s")
        assert f.read(len(b"~1\r\n$1\r\na\r\n")) == b"~1\r\n$1\r\na\r\n"


# ---------------------------------------------------------------- AUTH

def _raw_reply(port, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


@pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
def test_auth_requirepass(auth_server, protocol):
    assert _raw_reply(auth_server.port, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n") == b"-NOAUTH Authentication required.\r\n"
    assert _raw_reply(auth_server.port, b"PING\r\n") == b"-NOAUTH Authentication required.\r\n"

    # No retries: redis-py 8 retries connection errors (AuthenticationError is one) with backoff.
    no_retry = Retry(NoBackoff(), 0)
    anon = redis.Redis(
        host="127.0.0.1", port=auth_server.port, protocol=protocol, decode_responses=True, retry=no_retry
    )
    with pytest.raises(AuthenticationError) as exc:
        anon.set("k", "v")
    if protocol == 2:
        # The command itself is refused: -NOAUTH Authentication required.
        assert str(exc.value) == "Authentication required."
    else:
        # redis-py's connect handshake (HELLO 3 without AUTH) is refused with NOAUTH.
        assert str(exc.value) == (
            "HELLO must be called with the client already authenticated, otherwise the "
            "HELLO AUTH <user> <pass> option can be used to authenticate the client and "
            "select the RESP protocol version at the same time"
        )
    anon.close()

    good = redis.Redis(
        host="127.0.0.1", port=auth_server.port, password=auth_server.password,
        protocol=protocol, decode_responses=True,
    )
    assert good.set("k", "v") is True
    assert good.get("k") == "v"
    assert good.ping() is True
    good.close()

    bad = redis.Redis(
        host="127.0.0.1", port=auth_server.port, password="wrong", protocol=protocol, retry=no_retry
    )
    with pytest.raises(AuthenticationError) as exc:
        bad.get("k")
    # -WRONGPASS, whether sent as AUTH (RESP2) or HELLO 3 AUTH default ... (RESP3).
    assert str(exc.value) == "invalid username-password pair or user is disabled."
    bad.close()

    # AUTH on an open connection.
    assert _raw_reply(
        auth_server.port,
        b"*2\r\n$4\r\nAUTH\r\n$5\r\nwrong\r\n",
    ) == b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"


# ---------------------------------------------------------------- pipelining

def test_pipeline_1000_commands_in_order(r):
    pipe = r.pipeline(transaction=False)
    expected = []
    counter = 0
    for i in range(1000):
        kind = i % 5
        if kind == 0:
            pipe.set(f"k{i}", f"v{i}")
            expected.append(True)
        elif kind == 1:
            pipe.get(f"k{i - 1}")
            expected.append(f"v{i - 1}")
        elif kind == 2:
            pipe.incr("counter")
            counter += 1
            expected.append(counter)
        elif kind == 3:
            pipe.append(f"k{i - 3}", "+")
            expected.append(len(f"v{i - 3}") + 1)
        else:
            pipe.exists(f"k{i - 4}", f"missing{i}")
            expected.append(1)
    results = pipe.execute()
    assert len(results) == 1000
    for i, (got, want) in enumerate(zip(results, expected)):
        assert got == want, f"reply {i}: {got!r} != {want!r}"
    assert r.get("counter") == "200"
    assert r.dbsize() == 201

    # An error in the middle is returned in place; later commands still run.
    pipe = r.pipeline(transaction=False)
    pipe.set("a", "x").incr("a").get("a").set("b", "1")
    res = pipe.execute(raise_on_error=False)
    assert res[0] is True and res[2] == "x" and res[3] is True
    assert isinstance(res[1], ResponseError) and "not an integer" in str(res[1])


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize(
    "garbage, reply",
    [
        (b"*abc\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n$x\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\nfoo\r\n", b"-ERR Protocol error: expected '$', got 'f'\r\n"),
        (b'SET "a\r\n', b"-ERR Protocol error: unbalanced quotes in request\r\n"),
        (b"*1\r\n$536870913\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*-5x\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
    ],
    ids=["multibulk-len", "bulk-len", "expected-dollar", "unbalanced-quotes", "bulk-too-big", "multibulk-junk"],
)
def test_garbage_closes_only_that_connection(server, r, garbage, reply):
    assert r.set("survivor", "alive") is True  # connected before the garbage
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(garbage)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break  # the server closed the connection
            data += chunk
        assert data == reply
    assert r.get("survivor") == "alive"
    assert r.incr("after") == 1
    assert server.client().ping() is True
    assert server.alive(), "the server process must survive malformed input"


def test_client_vanishing_mid_frame(server, r):
    """Half a request, then the client disconnects (or resets): the server carries on."""
    r.set("k", "v")
    for payload in (b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$100\r\nabc", b"*2\r\n$3\r\nGE", b"GET k"):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(payload)
        s.close()
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.sendall(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n" * 1000)
    s.close()  # RST with replies pending
    time.sleep(0.2)
    assert r.get("k") == "v"
    assert r.exists("a") == 0, "a half-sent SET must not be applied"
    assert server.alive()


# ---------------------------------------------------------------- asyncio

@pytest.mark.asyncio
async def test_asyncio_lock_many_tasks(server):
    pool = redis.asyncio.BlockingConnectionPool(
        host="127.0.0.1", port=server.port, max_connections=20, decode_responses=True, timeout=30
    )
    r = redis.asyncio.Redis(connection_pool=pool)
    n = 100
    start = asyncio.Event()

    async def worker(i):
        await start.wait()
        won = await r.set("alock", str(i), nx=True, ex=120)
        if won:
            assert won is True
            assert await r.expire("alock", 60) is True
            await r.set("alock:unlock", f"by-{i}")
            return i, True, f"by-{i}"
        assert won is None
        deadline = time.monotonic() + 30
        while (v := await r.get("alock:unlock")) is None:
            assert time.monotonic() < deadline, f"task {i}: unlock key never appeared"
            await asyncio.sleep(0.005)
        return i, False, v

    tasks = [asyncio.create_task(worker(i)) for i in range(n)]
    await asyncio.sleep(0.05)
    start.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    winners = [res for res in results if res[1]]
    assert len(winners) == 1, f"exactly one winner, got {len(winners)}"
    token = winners[0][2]
    assert all(res[2] == token for res in results)
    assert await r.get("alock") == str(winners[0][0])
    ttl = await r.ttl("alock")
    assert 0 < ttl <= 60
    await r.aclose()
    await pool.disconnect()


@pytest.mark.asyncio
async def test_asyncio_fixed_window_limiter_many_tasks(server):
    pool = redis.asyncio.BlockingConnectionPool(
        host="127.0.0.1", port=server.port, max_connections=25, decode_responses=True, timeout=30
    )
    r = redis.asyncio.Redis(connection_pool=pool)
    key, window, limit, n = "arl:client", 30, 120, 200
    expires = 0

    async def hit():
        nonlocal expires
        count = await r.incr(key)
        if count == 1:
            assert await r.expire(key, window) is True
            expires += 1
        return count

    counts = await asyncio.wait_for(asyncio.gather(*(hit() for _ in range(n))), timeout=60)
    assert sorted(counts) == list(range(1, n + 1))
    assert sum(1 for c in counts if c <= limit) == limit
    assert expires == 1
    assert int(await r.get(key)) == n
    assert 0 < await r.ttl(key) <= window

    # Short window: after it passes the count restarts.
    assert await r.incr("arl:short") == 1
    assert await r.expire("arl:short", 1) is True
    await asyncio.sleep(1.15)
    assert await r.get("arl:short") is None
    assert await r.incr("arl:short") == 1
    await r.aclose()
    await pool.disconnect()


@pytest.mark.asyncio
async def test_asyncio_pipeline_and_types(server):
    r = server.async_client(protocol=3)
    async with r.pipeline(transaction=False) as pipe:
        for i in range(200):
            pipe.set(f"a{i}", i)
            pipe.get(f"a{i}")
        res = await pipe.execute()
    assert res == [x for i in range(200) for x in (True, str(i))]
    assert await r.hset("ah", mapping={"x": "1"}) == 1
    assert await r.hgetall("ah") == {"x": "1"}
    assert await r.rpush("al", "a", "b") == 2
    assert await r.lrange("al", 0, -1) == ["a", "b"]
    assert await r.sadd("as", "m") == 1
    assert await r.smembers("as") == {"m"}
    assert await r.zadd("az", {"m": 2}) == 1
    assert _pairs(await r.zrange("az", 0, -1, withscores=True)) == [("m", 2.0)]
    await r.aclose()


def test_hash_field_commands_of_redis_8_through_redis_py(r):
    """redis-py 8's hsetex/hgetex/hgetdel (Redis 8.0's HSETEX, HGETEX and
    HGETDEL) on a cache of per-user fields with their own TTLs."""
    assert r.hsetex("session:1", mapping={"token": "abc", "theme": "dark"}, ex=60) == 1
    assert 55 <= r.httl("session:1", "token")[0] <= 60
    assert r.hsetex("session:1", "token", "zzz", data_persist_option=HashDataPersistOptions.FNX) == 0
    assert r.hsetex("session:1", "token", "xyz", data_persist_option=HashDataPersistOptions.FXX, keepttl=True) == 1
    assert r.hgetex("session:1", "token", "theme", px=5000) == ["xyz", "dark"]
    assert 0 < r.hpttl("session:1", "theme")[0] <= 5000
    assert r.hgetex("session:1", "theme", persist=True) == ["dark"]
    assert r.httl("session:1", "theme") == [-1]
    assert r.hgetdel("session:1", "token", "missing") == ["xyz", None]
    assert r.hgetdel("session:1", "theme") == ["dark"]
    assert r.exists("session:1") == 0

"""Client libraries that depend on MULTI/EXEC and Lua, used through their own
APIs (no hand-written commands), through the leader and through followers:

- ``limits`` (RedisStorage; FixedWindow, MovingWindow and SlidingWindowCounter
  strategies, sync and asyncio): EVALSHA of its Lua scripts for every hit,
  window statistics, clear, and ``reset()`` (a script that calls KEYS and DEL);
- ``aiocache`` (RedisCache): SET/SETEX/SET NX, MGET, MULTI MSET EXPIRE... EXEC
  for ``multi_set`` with a TTL, KEYS + DEL for ``clear(namespace)``, EVAL for
  its OptimisticLock (compare-and-set) and RedLock release;
- ``fastapi-cache2`` (RedisBackend): ``MULTI; TTL k; GET k; EXEC`` for every
  cache lookup, ``SET k v EX n`` on a miss, EVAL of a script calling KEYS and
  DEL for ``FastAPICache.clear(namespace)``; driven through a real FastAPI app
  (called as ASGI, in process) with the ``@cache`` decorator.

The libraries swallow some backend errors (fastapi-cache2 logs a failed
lookup and treats it as a miss), so every test checks the effect: a second
request is a HIT and the endpoint ran once, counts are exact, keys are gone.

With RAFTCACHE_TEST_AGAINST_REDIS=1 these run against one real redis-server
(see targets.py).
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis.asyncio
from aiocache import RedisCache
from aiocache.lock import OptimisticLock, OptimisticLockError, RedLock
from fastapi import FastAPI
from fastapi_cache import FastAPICache
from fastapi_cache.backends.redis import RedisBackend
from fastapi_cache.decorator import cache
from limits import RateLimitItemPerHour, strategies
from limits.aio import strategies as aio_strategies
from limits.storage import storage_from_string

from targets import _require_binary, limits_worker, nodes, run_processes  # noqa: F401 (fixtures)

VIAS = ["leader", "follower"]
STRATEGIES = {
    "fixed": strategies.FixedWindowRateLimiter,
    "moving": strategies.MovingWindowRateLimiter,
    "sliding": strategies.SlidingWindowCounterRateLimiter,
}
AIO_STRATEGIES = {
    "fixed": aio_strategies.FixedWindowRateLimiter,
    "moving": aio_strategies.MovingWindowRateLimiter,
    "sliding": aio_strategies.SlidingWindowCounterRateLimiter,
}


# --- limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_limits_allows_exactly_n_then_refuses(nodes, strategy):
    """Through each node in turn, one identifier each: N hits allowed, then
    refused; the window statistics (read through another node) agree; clear()
    gives the full allowance back. A one-hour window: nothing slides or
    expires during the test."""
    limit = 5
    item = RateLimitItemPerHour(limit)
    for m in nodes.members:
        storage = storage_from_string(nodes.url(m))
        assert storage.check() is True
        limiter = STRATEGIES[strategy](storage)
        reader = STRATEGIES[strategy](storage_from_string(nodes.url(nodes.other(m))))
        ident = f"user-{m}"
        assert [limiter.hit(item, "api", ident) for _ in range(limit)] == [True] * limit
        assert limiter.hit(item, "api", ident) is False
        assert limiter.test(item, "api", ident) is False
        now = time.time()
        stats = reader.get_window_stats(item, "api", ident)
        assert stats.remaining == 0, stats
        if strategy != "sliding":  # the sliding counter reports no future reset time
            assert now < stats.reset_time <= now + 3600 + 5, (stats, now)
        # Another identifier is counted apart.
        assert reader.test(item, "api", f"other-{m}") is True
        assert reader.get_window_stats(item, "api", f"other-{m}").remaining == limit

        limiter.clear(item, "api", ident)
        assert reader.get_window_stats(item, "api", ident).remaining == limit
        assert limiter.hit(item, "api", ident, cost=3) is True
        assert reader.get_window_stats(item, "api", ident).remaining == limit - 3
        assert limiter.hit(item, "api", ident, cost=3) is False
        assert limiter.hit(item, "api", ident, cost=2) is (strategy != "fixed"), (
            "fixed window counts refused hits too (INCRBY before the comparison)")
    nodes.check_replicas()


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_limits_exact_across_processes_on_every_node(nodes, strategy):
    """9 processes, three per node, 30 hits each on one limit of 100: exactly
    100 hits are allowed in all."""
    limit, n, hits = 100, 9, 30
    results = run_processes(limits_worker, nodes.ports(), n, (strategy, limit, hits))
    allowed = [r[2] for r in results]
    assert sum(allowed) == limit, f"allowed per process: {allowed}"
    item = RateLimitItemPerHour(limit)
    for m in nodes.members:
        limiter = STRATEGIES[strategy](storage_from_string(nodes.url(m)))
        assert limiter.get_window_stats(item, "shared", "key").remaining == 0
        assert limiter.test(item, "shared", "key") is False
    nodes.check_replicas()


def test_limits_storage_reset_deletes_only_its_keys(nodes):
    """RedisStorage.reset(): one script that KEYS its prefix and DELs them."""
    m = nodes.leader
    storage = storage_from_string(nodes.url(m), key_prefix="rl")
    raw = nodes.client(nodes.followers[0])
    assert raw.set("unrelated", "kept") is True
    item = RateLimitItemPerHour(2)
    for name, cls in STRATEGIES.items():
        cls(storage).hit(item, "reset", name)
    # fixed: one key, moving: one list, sliding: the current window key.
    assert len(raw.keys("rl:*")) == 3, raw.keys("*")
    assert storage.reset() == 3
    assert raw.keys("rl:*") == [] and raw.get("unrelated") == "kept"
    for name, cls in STRATEGIES.items():
        assert cls(storage_from_string(nodes.url(nodes.followers[1]), key_prefix="rl")) \
            .get_window_stats(item, "reset", name).remaining == 2
    nodes.check_replicas()


@pytest.mark.asyncio
@pytest.mark.parametrize("via", VIAS)
async def test_limits_asyncio_redispy(nodes, via):
    """limits.aio with redis.asyncio (implementation="redispy")."""
    m = nodes.via(via)
    storage = storage_from_string(nodes.url(m, "async+redis"), implementation="redispy")
    other = storage_from_string(nodes.url(nodes.other(m), "async+redis"), implementation="redispy")
    assert await storage.check() is True
    item = RateLimitItemPerHour(4)
    for name, cls in AIO_STRATEGIES.items():
        limiter, reader = cls(storage), cls(other)
        assert [await limiter.hit(item, "aio", name) for _ in range(5)] == [True] * 4 + [False]
        assert (await reader.get_window_stats(item, "aio", name)).remaining == 0
        # 50 concurrent hits on a fresh key: exactly 4 allowed.
        results = await asyncio.gather(*(limiter.hit(item, "aio-burst", name) for _ in range(50)))
        assert sum(results) == 4, f"{name}: {sum(results)} of 50 concurrent hits allowed"
        await limiter.clear(item, "aio", name)
        assert (await reader.get_window_stats(item, "aio", name)).remaining == 4
    # What is left: the three "aio-burst" keys (clear() deleted the others).
    assert await storage.reset() == 3
    nodes.check_replicas()


# --- aiocache -------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("via", VIAS)
async def test_aiocache_redis_cache(nodes, via):
    m = nodes.via(via)
    cache = RedisCache(endpoint="127.0.0.1", port=nodes.port(m), namespace="ac", timeout=20)
    reader = RedisCache(endpoint="127.0.0.1", port=nodes.port(nodes.other(m)), namespace="ac",
                        timeout=20)
    raw = nodes.client(nodes.other(m))
    try:
        assert raw.set("outside", "kept") is True
        assert await cache.set("user:1", {"name": "ada"}, ttl=30) is True  # SETEX
        assert await reader.get("user:1") == {"name": "ada"}
        assert json.loads(raw.get("ac:user:1")) == {"name": "ada"}
        assert 0 < raw.ttl("ac:user:1") <= 30
        assert await cache.set("forever", [1, 2]) is True  # SET
        assert raw.ttl("ac:forever") == -1
        assert await cache.set("short", "x", ttl=2.5) is True  # PSETEX
        assert 0 < raw.pttl("ac:short") <= 2500
        assert await reader.exists("user:1") is True and await reader.exists("nope") is False

        assert await cache.add("new", 1, ttl=30) is True  # SET NX EX
        with pytest.raises(ValueError):
            await cache.add("new", 2)
        assert await reader.get("new") == 1

        assert await cache.increment("hits", 5) == 5
        assert await cache.increment("hits", -2) == 3
        assert await cache.expire("hits", 20) is True
        assert 0 < raw.ttl("ac:hits") <= 20

        # multi_set with a TTL: MULTI, MSET, EXPIRE per key, EXEC.
        assert await cache.multi_set([("a", 1), ("b", {"x": [2]})], ttl=30) is True
        assert await reader.multi_get(["a", "b", "missing"]) == [1, {"x": [2]}, None]
        assert 0 < raw.ttl("ac:a") <= 30 and 0 < raw.ttl("ac:b") <= 30
        assert await cache.delete("a") == 1 and await reader.get("a") is None

        # OptimisticLock: GET, then an EVAL compare-and-set on the value read.
        assert await cache.set("doc", {"v": 1}) is True
        async with OptimisticLock(cache, "doc") as lock:
            assert await lock.cas({"v": 2}, ttl=60) is True
        assert await reader.get("doc") == {"v": 2} and 0 < raw.ttl("ac:doc") <= 60
        async with OptimisticLock(cache, "doc") as lock:
            await reader.set("doc", {"v": "other writer"})
            with pytest.raises(OptimisticLockError):
                await lock.cas({"v": 3})
        assert await reader.get("doc") == {"v": "other writer"}

        # RedLock: SET key-lock NX PX, EVAL of the release script at exit.
        async with RedLock(cache, "job", lease=5):
            assert raw.exists("ac:job-lock") == 1
            assert 0 < raw.pttl("ac:job-lock") <= 5000
        assert raw.exists("ac:job-lock") == 0

        # clear(namespace): KEYS ac:* then DEL of what it found; nothing else.
        assert await cache.clear(namespace="ac") is True
        assert raw.keys("ac:*") == [] and raw.get("outside") == "kept"
    finally:
        await cache.close()
        await reader.close()
    nodes.check_replicas()


# --- fastapi-cache2 -----------------------------------------------------------------------


async def asgi_get(app, path: str, headers=()):
    """One GET through the ASGI app, in process: (status, headers, body)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 40000), "server": ("testserver", 80),
    }  # fmt: skip
    sent = []
    request_done = False

    async def receive():
        nonlocal request_done
        if not request_done:
            request_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)  # no disconnect while the app is answering
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 30)
    start = next(x for x in sent if x["type"] == "http.response.start")
    body = b"".join(x.get("body", b"") for x in sent if x["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


def _app(calls):
    app = FastAPI()

    @app.get("/items/{item_id}")
    @cache(expire=60, namespace="items")
    async def get_item(item_id: int):
        calls.append(item_id)
        return {"id": item_id, "computed": len(calls)}

    return app


@pytest.mark.asyncio
@pytest.mark.parametrize("via", VIAS)
async def test_fastapi_cache_redis_backend(nodes, via):
    m = nodes.via(via)
    client = redis.asyncio.Redis(host="127.0.0.1", port=nodes.port(m), socket_timeout=20)
    other_client = redis.asyncio.Redis(host="127.0.0.1", port=nodes.port(nodes.other(m)),
                                       socket_timeout=20)
    raw = nodes.client(nodes.other(m))
    calls = []
    app = _app(calls)
    try:
        FastAPICache.reset()
        FastAPICache.init(RedisBackend(client), prefix="fc")

        status, headers, body = await asgi_get(app, "/items/7")
        assert status == 200 and json.loads(body) == {"id": 7, "computed": 1}
        assert headers["x-fastapi-cache"] == "MISS" and headers["cache-control"] == "max-age=60"
        keys = raw.keys("fc:items:*")
        assert len(keys) == 1 and 0 < raw.ttl(keys[0]) <= 60
        assert json.loads(raw.get(keys[0])) == {"id": 7, "computed": 1}

        # A hit: MULTI TTL GET EXEC; the endpoint does not run again, and the
        # response carries the remaining TTL.
        status, headers, body = await asgi_get(app, "/items/7")
        assert status == 200 and json.loads(body) == {"id": 7, "computed": 1}
        assert headers["x-fastapi-cache"] == "HIT", headers
        max_age = int(headers["cache-control"].removeprefix("max-age="))
        assert 50 <= max_age <= 60, headers
        assert calls == [7]
        status, _, _ = await asgi_get(app, "/items/7", headers=[("If-None-Match", headers["etag"])])
        assert status == 304

        # A second app instance through another node sees the same cache.
        FastAPICache.reset()
        FastAPICache.init(RedisBackend(other_client), prefix="fc")
        status, headers, _ = await asgi_get(app, "/items/7")
        assert headers["x-fastapi-cache"] == "HIT" and calls == [7]
        status, headers, _ = await asgi_get(app, "/items/8")
        assert headers["x-fastapi-cache"] == "MISS" and calls == [7, 8]

        # The backend directly.
        backend = RedisBackend(client)
        assert list(await backend.get_with_ttl("fc:nothing")) == [-2, None]
        await backend.set("fc:items:manual", b"payload", expire=30)
        ttl, value = await backend.get_with_ttl("fc:items:manual")
        assert value == b"payload" and 0 < ttl <= 30
        assert await backend.get("fc:items:manual") == b"payload"
        assert await backend.clear(key="fc:items:manual") == 1
        assert raw.exists("fc:items:manual") == 0

        # clear(namespace): one EVAL whose script KEYS the namespace and DELs.
        assert len(raw.keys("fc:items:*")) == 2
        assert raw.set("fc:other:x", "kept") is True
        await FastAPICache.clear(namespace="items")
        assert raw.keys("fc:items:*") == [] and raw.get("fc:other:x") == "kept"
        status, headers, _ = await asgi_get(app, "/items/7")
        assert headers["x-fastapi-cache"] == "MISS" and calls == [7, 8, 7]
    finally:
        FastAPICache.reset()
        await client.aclose()
        await other_client.aclose()
    nodes.check_replicas()

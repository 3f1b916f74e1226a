"""Lua scripting (EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, SCRIPT LOAD/EXISTS/FLUSH)
and redis-py's Lock (which releases, extends and reacquires through EVALSHA),
through the leader and through followers of a three-node cluster.

What "done" means for scripting in raftcache, as real clients see it:
- Lua values convert to replies as in Redis 7.0 (integers, bulk strings,
  nested tables cut at the first nil, false/nil -> nil, true -> 1, numbers
  truncated to integers, status and error replies), with RESP2 and RESP3
  clients; errors raised by ``redis.call`` reach the client, ``redis.pcall``
  returns them as a table, and a script that fails half-way keeps the writes
  it made before the error (no rollback), on every replica;
- the script cache is replicated: a script loaded (SCRIPT LOAD, or run with
  EVAL) through one node runs by its SHA1 through any other, SCRIPT FLUSH
  through one node makes EVALSHA answer NOSCRIPT through all, and the cache
  outlives a follower's kill -9 and restart (caught up from the log or from
  a snapshot);
- a script runs atomically: processes on all three nodes doing
  read-modify-write under redis-py's Lock never overlap.

With RAFTCACHE_TEST_AGAINST_REDIS=1 the tests run against one real
redis-server (see targets.py); the restart test is then skipped as not
applicable.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

import pytest
import redis
import redis.asyncio.lock
from redis.exceptions import LockError, LockNotOwnedError, NoScriptError, ResponseError

from targets import (  # noqa: F401 (fixtures)
    _require_binary,
    make_fault_cluster,
    nodes,
    run_processes,
    wait_until,
    worker_client,
)

VIAS = ["leader", "follower"]


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


# --- 1. EVAL: reply conversions and errors --------------------------------------------

CONVERSIONS = [
    ("return 1", 1),
    ("return 'abc'", "abc"),
    ("return {1, 2, {3, 'x'}}", [1, 2, [3, "x"]]),
    ("return nil", None),
    ("return false", None),
    ("return true", 1),
    ("return 3.99", 3),
    ("return -2.5", -2),
    ("return {1, nil, 3}", [1]),
    ("return {}", []),
    ("return redis.status_reply('FINE')", "FINE"),
    ("return {KEYS[1], ARGV[1], #KEYS, #ARGV}", ["conv:k", "arg1", 1, 2]),
    ("return redis.call('get', 'conv:missing')", None),
    ("return tostring(redis.call('get', 'conv:missing'))", "false"),
    ("local r = redis.pcall('incr', KEYS[1]); return r['err']",
     "ERR value is not an integer or out of range"),
]


@pytest.mark.parametrize("via", VIAS)
def test_eval_replies_and_errors(nodes, via):
    m = nodes.via(via)
    other = nodes.client(nodes.other(m))
    assert other.set("conv:k", "not-a-number") is True
    for protocol in (2, 3):
        c = nodes.client(m, protocol=protocol)
        for script, expected in CONVERSIONS:
            got = c.eval(script, 1, "conv:k", "arg1", "arg2")
            assert got == expected, f"RESP{protocol} {script!r}: {got!r}"

        with pytest.raises(ResponseError) as ei:
            c.eval("return redis.error_reply('MYERR custom')", 0)
        assert str(ei.value) == "MYERR custom"
        with pytest.raises(ResponseError) as ei:
            c.eval("return redis.call('incr', KEYS[1])", 1, "conv:k")
        assert str(ei.value).startswith("value is not an integer or out of range"), str(ei.value)
        with pytest.raises(ResponseError) as ei:
            c.eval("return (", 0)
        assert str(ei.value).startswith("Error compiling script"), str(ei.value)
        with pytest.raises(ResponseError) as ei:
            c.eval("return 1", -1)
        assert str(ei.value) == "Number of keys can't be negative"
        with pytest.raises(ResponseError) as ei:
            c.eval("return 1", 3, "only-one-key")
        assert str(ei.value) == "Number of keys can't be greater than number of args"

    # A script that fails half-way keeps what it wrote before the error.
    c = nodes.client(m)
    with pytest.raises(ResponseError):
        c.eval("redis.call('set', KEYS[1], 'first'); redis.call('incr', KEYS[2]); "
               "redis.call('set', KEYS[1], 'never')", 2, "conv:partial", "conv:k")
    # Writes and reads in one script, keys and args as given.
    assert c.eval("redis.call('rpush', KEYS[1], ARGV[1], ARGV[2]); "
                  "redis.call('hset', KEYS[2], 'f', ARGV[1]); "
                  "return {redis.call('llen', KEYS[1]), redis.call('hget', KEYS[2], 'f')}",
                  2, "conv:list", "conv:hash", "a", "b") == [2, "a"]
    for n in nodes.members:
        r = nodes.client(n)
        assert r.get("conv:partial") == "first", f"through node {n}"
        assert r.lrange("conv:list", 0, -1) == ["a", "b"] and r.hget("conv:hash", "f") == "a"
    nodes.check_replicas()


# --- 2. the script cache across nodes -------------------------------------------------

INCRBY_SCRIPT = "return redis.call('incrby', KEYS[1], ARGV[1])"
GET_SCRIPT = "return redis.call('get', KEYS[1])"


def test_script_load_through_one_node_evalsha_through_others(nodes):
    leader, f1, f2 = nodes.members
    cl, c1, c2 = (nodes.client(m) for m in (leader, f1, f2))
    sha = sha1(INCRBY_SCRIPT)
    unknown = "0" * 40
    assert cl.script_exists(sha) == [False]
    assert cl.script_load(INCRBY_SCRIPT) == sha
    for c in (cl, c1, c2):
        assert c.script_exists(sha, unknown) == [True, False]
    assert [c.evalsha(sha, 1, "sl:ctr", 5) for c in (c1, c2, cl)] == [5, 10, 15]

    # Loaded through a follower, run through the leader and the other follower.
    sha_get = c1.script_load(GET_SCRIPT)
    assert sha_get == sha1(GET_SCRIPT)
    assert cl.evalsha(sha_get, 1, "sl:ctr") == "15" and c2.evalsha(sha_get, 1, "sl:ctr") == "15"
    # Loading the same script again returns the same SHA1.
    assert c2.script_load(GET_SCRIPT) == sha_get

    # EVAL caches the script too (Redis 7.0): EVALSHA of its SHA1 through
    # another node finds it.
    body = "return redis.call('incrby', KEYS[1], 100)"
    assert c2.eval(body, 1, "sl:ctr") == 115
    assert c1.evalsha(sha1(body), 1, "sl:ctr") == 215
    assert cl.script_exists(sha1(body)) == [True]

    # An unknown SHA1 is NOSCRIPT everywhere (redis-py: NoScriptError).
    for c in (cl, c1, c2):
        with pytest.raises(NoScriptError) as ei:
            c.evalsha("f" * 40, 0)
        assert str(ei.value) == "No matching script. Please use EVAL."
    nodes.check_replicas()


@pytest.mark.parametrize("via", VIAS)
def test_script_flush_through_one_node_is_noscript_everywhere(nodes, via):
    m = nodes.via(via)
    clients = {n: nodes.client(n) for n in nodes.members}
    for mode in (None, "SYNC", "ASYNC"):
        shas = [clients[nodes.leader].script_load(INCRBY_SCRIPT),
                clients[nodes.followers[-1]].script_load(GET_SCRIPT)]
        for n, c in clients.items():
            assert c.script_exists(*shas) == [True, True], f"node {n}"
            assert isinstance(c.evalsha(shas[0], 1, "fl:ctr", 1), int)
        assert clients[m].script_flush(mode) is True
        for n, c in clients.items():
            assert c.script_exists(*shas) == [False, False], f"node {n} after SCRIPT FLUSH {mode}"
            for sha in shas:
                with pytest.raises(NoScriptError):
                    c.evalsha(sha, 1, "fl:ctr", 1)
    # The data the scripts wrote is untouched by the flush.
    assert clients[m].get("fl:ctr") == str(3 * len(clients))
    nodes.check_replicas()


@pytest.mark.parametrize("via", VIAS)
def test_register_script_objects(nodes, via):
    """redis-py Script objects: EVALSHA, on NOSCRIPT a SCRIPT LOAD and
    EVALSHA again; in a transaction pipeline SCRIPT EXISTS / SCRIPT LOAD
    first, then MULTI ... EVALSHA ... EXEC."""
    m = nodes.via(via)
    c = nodes.client(m)
    others = [nodes.client(n) for n in nodes.members if n != m]
    lua = ("local v = redis.call('incrby', KEYS[1], ARGV[1])\n"
           "redis.call('expire', KEYS[1], ARGV[2])\n"
           "return v\n")
    incr = c.register_script(lua)
    assert incr.sha == sha1(lua)
    assert c.script_exists(incr.sha) == [False]
    assert incr(keys=["rs:k"], args=[2, 100]) == 2  # NOSCRIPT, SCRIPT LOAD, EVALSHA
    for o in others:
        assert o.script_exists(incr.sha) == [True]
    assert [incr(keys=["rs:k"], args=[2, 100], client=o) for o in others] == [4, 6]

    pipe = c.pipeline()
    incr(keys=["rs:k"], args=[1, 100], client=pipe)
    pipe.get("rs:k")
    incr(keys=["rs:k"], args=[1, 100], client=pipe)
    assert pipe.execute() == [7, "7", 8]

    # After a flush through another node, the pipeline loads it again.
    assert others[0].script_flush() is True
    pipe = c.pipeline()
    incr(keys=["rs:k"], args=[1, 100], client=pipe)
    assert pipe.execute() == [9]
    for o in others:
        assert o.get("rs:k") == "9" and 0 < o.ttl("rs:k") <= 100
    nodes.check_replicas()


def test_eval_ro_through_followers(nodes):
    leader = nodes.client(nodes.leader)
    assert leader.set("ro:k", "v") is True
    sha = leader.script_load(GET_SCRIPT)
    write = "return redis.call('set', KEYS[1], 'changed')"
    for f in nodes.followers:
        c = nodes.client(f)
        assert c.eval_ro(GET_SCRIPT, 1, "ro:k") == "v"
        assert c.evalsha_ro(sha, 1, "ro:k") == "v"
        assert c.eval_ro("return redis.call('exists', KEYS[1])", 1, "ro:missing") == 0
        with pytest.raises(ResponseError) as ei:
            c.eval_ro(write, 1, "ro:k")
        assert str(ei.value).startswith(
            "Write commands are not allowed from read-only scripts"), str(ei.value)
        with pytest.raises(NoScriptError):
            c.evalsha_ro("e" * 40, 1, "ro:k")
    assert leader.get("ro:k") == "v"
    nodes.check_replicas()


# --- 3. redis-py Lock (SET NX PX to acquire; EVALSHA to release/extend/reacquire) ---------


@pytest.mark.parametrize("via", VIAS)
def test_lock_acquire_extend_reacquire_release(nodes, via):
    m = nodes.via(via)
    c, other = nodes.client(m), nodes.client(nodes.other(m))
    lock = c.lock("lk:a", timeout=10)
    assert lock.acquire(blocking=False) is True
    token = lock.local.token.decode()
    assert other.get("lk:a") == token
    assert lock.owned() and lock.locked()
    assert 8000 < other.pttl("lk:a") <= 10_000

    assert lock.extend(20) is True  # adds to the remaining time
    assert 27_000 < other.pttl("lk:a") <= 30_000
    assert lock.extend(3, replace_ttl=True) is True
    assert 2000 < other.pttl("lk:a") <= 3000
    assert lock.reacquire() is True  # back to the lock's timeout
    assert 8000 < other.pttl("lk:a") <= 10_000

    rival = other.lock("lk:a", timeout=10)
    assert rival.acquire(blocking=False) is False
    assert rival.locked() and not rival.owned()
    lock.release()
    assert other.exists("lk:a") == 0 and not lock.locked()
    with pytest.raises(LockError):
        lock.release()  # no token any more (checked by redis-py itself)
    assert rival.acquire(blocking=False) is True
    assert c.get("lk:a") == rival.local.token.decode()
    rival.release()

    with c.lock("lk:b", timeout=5) as held:
        assert other.get("lk:b") == held.local.token.decode()
    assert other.exists("lk:b") == 0
    nodes.check_replicas()


@pytest.mark.parametrize("via", VIAS)
def test_lock_blocking_acquire_with_timeout(nodes, via):
    m = nodes.via(via)
    c, other = nodes.client(m), nodes.client(nodes.other(m))
    holder = c.lock("lk:block", timeout=60)
    assert holder.acquire() is True

    waiter = other.lock("lk:block", timeout=60, sleep=0.02)
    t0 = time.monotonic()
    assert waiter.acquire(blocking_timeout=0.5) is False
    assert 0.45 <= time.monotonic() - t0 < 10
    with pytest.raises(LockError):
        with other.lock("lk:block", blocking_timeout=0.2, sleep=0.02):
            pass
    holder.release()
    assert waiter.acquire(blocking_timeout=5) is True
    waiter.release()

    # A holder that never releases: its timeout ends the lock, and a blocking
    # waiter through another node gets it then (not before).
    short = c.lock("lk:short", timeout=1.0)
    assert short.acquire() is True
    t0 = time.monotonic()
    late = other.lock("lk:short", timeout=30, sleep=0.02)
    assert late.acquire(blocking_timeout=20) is True
    waited = time.monotonic() - t0
    assert 0.5 <= waited < 20, f"acquired after {waited:.2f}s; the holder's lock lasts 1 s"
    assert c.get("lk:short") == late.local.token.decode()
    with pytest.raises(LockNotOwnedError):
        short.release()
    late.release()
    nodes.check_replicas()


@pytest.mark.parametrize("via", VIAS)
def test_lock_not_owned_errors(nodes, via):
    m = nodes.via(via)
    c, other = nodes.client(m), nodes.client(nodes.other(m))
    lock = c.lock("lk:n", timeout=30)
    assert lock.acquire() is True
    assert other.set("lk:n", "someone-else") is True  # the token changed behind its back
    assert not lock.owned()
    with pytest.raises(LockNotOwnedError):
        lock.extend(5)
    with pytest.raises(LockNotOwnedError):
        lock.reacquire()
    with pytest.raises(LockNotOwnedError):
        lock.release()
    assert other.get("lk:n") == "someone-else", "the release script deleted another owner's lock"

    gone = c.lock("lk:gone", timeout=0.3)
    assert gone.acquire() is True
    wait_until("the lock to expire", lambda: other.exists("lk:gone") == 0, timeout=10)
    with pytest.raises(LockNotOwnedError):
        gone.release()
    nodes.check_replicas()


COUNTER = "locked:counter"
INSIDE = "locked:inside"


def _locked_rmw_worker(idx, port, barrier, out, per_worker):
    try:
        r = worker_client(port)
        r.ping()
        barrier.wait(timeout=60)
        seen, max_inside = [], 0
        for _ in range(per_worker):
            with r.lock("locked:lock", timeout=30, sleep=0.01, blocking_timeout=120):
                max_inside = max(max_inside, r.incr(INSIDE))
                v = int(r.get(COUNTER) or 0)
                r.set(COUNTER, v + 1)
                seen.append(v)
                r.decr(INSIDE)
        r.close()
        out.put((idx, "ok", seen, max_inside))
    except BaseException as e:
        out.put((idx, "error", f"{type(e).__name__}: {e}", None))


def test_lock_read_modify_write_across_processes(nodes):
    """9 processes, three per node, each 50 times: under redis-py's Lock, GET
    the counter and SET it to value + 1. One holder at a time: the counter
    ends at 450 and every holder read a different value."""
    n, per = 9, 50
    results = run_processes(_locked_rmw_worker, nodes.ports(), n, (per,), timeout=240)
    seen = sorted(v for r in results for v in r[2])
    assert max(r[3] for r in results) == 1, "two processes held the lock at once"
    assert seen == list(range(n * per)), "two holders read the same counter value"
    for m in nodes.members:
        assert nodes.client(m).get(COUNTER) == str(n * per)
    assert nodes.client(nodes.leader).exists("locked:lock") == 0
    nodes.check_replicas()


@pytest.mark.asyncio
@pytest.mark.parametrize("via", VIAS)
async def test_asyncio_lock(nodes, via):
    m = nodes.via(via)
    c, other = nodes.async_client(m), nodes.async_client(nodes.other(m))
    clients = [nodes.async_client(n) for n in nodes.members]
    try:
        lock = c.lock("alk", timeout=10)
        assert await lock.acquire(blocking=False) is True
        assert await other.get("alk") == lock.local.token.decode()
        assert await lock.extend(10) is True and 17_000 < await other.pttl("alk") <= 20_000
        assert await lock.reacquire() is True and 8000 < await other.pttl("alk") <= 10_000
        assert await other.lock("alk").acquire(blocking=False) is False
        await lock.release()
        assert await other.exists("alk") == 0

        stolen = c.lock("alk:stolen", timeout=10)
        assert await stolen.acquire() is True
        await other.set("alk:stolen", "other")
        with pytest.raises(LockNotOwnedError):
            await stolen.release()
        assert await other.get("alk:stolen") == "other"

        async def task(i, rounds=5):
            r = clients[i % len(clients)]
            for _ in range(rounds):
                async with redis.asyncio.lock.Lock(r, "alk:ctr-lock", timeout=30, sleep=0.005,
                                                   blocking_timeout=60):
                    v = int(await r.get("alk:ctr") or 0)
                    await asyncio.sleep(0)  # let other tasks run inside the critical section
                    await r.set("alk:ctr", v + 1)

        await asyncio.wait_for(asyncio.gather(*(task(i) for i in range(30))), 180)
        assert await other.get("alk:ctr") == "150"
    finally:
        for r in (c, other, *clients):
            await r.aclose()
    nodes.check_replicas()


# --- 4. faults (raftcache only): the script cache across a follower restart ------------------


@pytest.mark.parametrize("catch_up", ["log", "snapshot"])
def test_script_cache_survives_follower_restart(make_fault_cluster, catch_up):
    """SCRIPT LOAD through the leader; kill -9 a follower; load another script
    and write while it is down; restart it: it has both scripts (from the
    leader's log, or with --snapshot-every 100 and 2000 writes from a
    snapshot), runs them by SHA1, and sees a later SCRIPT FLUSH."""
    snapshot = catch_up == "snapshot"
    cluster = make_fault_cluster(3, args=["--snapshot-every", "100"] if snapshot else [])
    leader = cluster.leader()
    follower = cluster.followers(leader)[0]
    lc = cluster.client(leader)
    sha_before = lc.script_load(INCRBY_SCRIPT)
    fc = cluster.client(follower)
    assert fc.evalsha(sha_before, 1, "rs:ctr", 1) == 1
    fc.close()
    cluster.wait_applied_equal()
    cluster.kill9(follower)

    sha_during = lc.script_load(GET_SCRIPT)
    n = 2000 if snapshot else 100
    for i in range(n):
        assert lc.set(f"k:{i}", i) is True
    assert lc.evalsha(sha_before, 1, "rs:ctr", 1) == 2

    cluster.restart(follower)
    cluster.wait_voter(follower, timeout=45)
    cluster.wait_applied_equal(timeout=45)
    if snapshot:
        log = cluster.node(follower).log().split("=== start #2")[-1]
        assert "received snapshot stream" in log, (
            "the restarted follower caught up without receiving a snapshot"
        )
    fc = cluster.client(follower)
    assert fc.script_exists(sha_before, sha_during) == [True, True]
    assert fc.evalsha(sha_during, 1, "rs:ctr") == "2"
    assert fc.evalsha(sha_before, 1, "rs:ctr", 1) == 3
    assert fc.evalsha_ro(sha_during, 1, f"k:{n - 1}") == str(n - 1)
    assert lc.script_flush() is True
    with pytest.raises(NoScriptError):
        fc.evalsha(sha_before, 1, "rs:ctr", 1)
    fc.close()
    lc.close()
    cluster.assert_digests_equal()

"""Transactions (MULTI/EXEC/DISCARD/WATCH) through redis-py, sync and asyncio,
through the leader and through followers of a three-node cluster.

What "done" means for MULTI/EXEC in raftcache, as real clients see it:
- redis-py's ``pipeline()`` (transaction=True, the default) sends
  ``MULTI``, the queued commands and ``EXEC`` in one write and reads
  ``+OK``, one ``+QUEUED`` per command and the EXEC array; the replies come
  back in order, a runtime error inside EXEC is returned in place (the other
  commands still apply: no rollback), and an error at queue time (unknown
  command, wrong arity) aborts the whole transaction with ``EXECABORT``;
- ``WATCH`` aborts EXEC (nil reply, redis-py's ``WatchError``) when the key
  was written by anyone, through any node, between WATCH and EXEC (even with
  the same value, even by the watching connection itself), and not otherwise;
- concurrent optimistic increments from processes spread over all three
  nodes lose nothing, and the commands of one EXEC are never interleaved
  with another client's (both counters of ``MULTI; INCR a; INCR b; EXEC``
  always move together);
- across kill -9 of the leader, a transaction is applied once or not at all
  (never twice, never half), and replicas end up identical.

Every test runs against a fresh cluster (see targets.py: with
RAFTCACHE_TEST_AGAINST_REDIS=1 against one real redis-server instead, where
the fault test is reported as skipped: not applicable).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Tuple

import pytest
import redis
from redis.exceptions import ExecAbortError, ResponseError, WatchError

from harness import Cluster, error_kind, no_retry
from targets import (  # noqa: F401 (fixtures)
    _require_binary,
    make_fault_cluster,
    nodes,
    run_processes,
    worker_client,
)

VIAS = ["leader", "follower"]


# --- 1. pipeline(transaction=True): replies in order, errors in place ------------------


@pytest.mark.parametrize("via", VIAS)
def test_pipeline_transaction_replies_in_order(nodes, via):
    m = nodes.via(via)
    c, other = nodes.client(m), nodes.client(nodes.other(m))
    assert other.set("tx:a", "1") is True
    assert other.rpush("tx:l", "x") == 1

    pipe = c.pipeline()
    assert pipe.transaction is True  # the default: MULTI ... EXEC
    pipe.set("tx:s", "v1").get("tx:s").incr("tx:a").incrby("tx:a", 10).get("tx:a")
    pipe.rpush("tx:l", "y", "z").lrange("tx:l", 0, -1)
    pipe.hset("tx:h", mapping={"f": "1", "g": "2"}).hgetall("tx:h")
    pipe.set("tx:e", "x", ex=100).ttl("tx:e")
    pipe.delete("tx:s").exists("tx:s").get("tx:missing")
    results = pipe.execute()

    expected = [True, "v1", 2, 12, "12", 3, ["x", "y", "z"], 2, {"f": "1", "g": "2"},
                True, "<ttl>", 1, 0, None]
    assert len(results) == len(expected), results
    ttl = results[10]
    assert isinstance(ttl, int) and 99 <= ttl <= 100, f"TTL right after SET EX 100: {ttl!r}"
    results[10] = "<ttl>"
    assert results == expected

    # An empty transaction is allowed (redis-py sends nothing for it).
    assert c.pipeline().execute() == []
    for n in nodes.members:
        r = nodes.client(n)
        assert r.get("tx:a") == "12", f"through node {n}"
        assert r.lrange("tx:l", 0, -1) == ["x", "y", "z"]
        assert r.hgetall("tx:h") == {"f": "1", "g": "2"}
        assert r.exists("tx:s") == 0 and r.get("tx:e") == "x"
    nodes.check_replicas()


@pytest.mark.parametrize("via", VIAS)
def test_pipeline_runtime_error_inside_exec(nodes, via):
    """A runtime error inside EXEC is returned in place; the other commands
    of the transaction are applied anyway (Redis has no rollback)."""
    m = nodes.via(via)
    c, other = nodes.client(m), nodes.client(nodes.other(m))
    assert c.set("err:s", "text") is True

    pipe = c.pipeline()
    pipe.set("err:before", "1").incr("err:s").lpush("err:s", "x").set("err:after", "2").get("err:s")
    res = pipe.execute(raise_on_error=False)
    assert len(res) == 5, res
    assert res[0] is True and res[3] is True and res[4] == "text", res
    assert isinstance(res[1], ResponseError), res
    assert str(res[1]) == "value is not an integer or out of range"
    assert isinstance(res[2], ResponseError), res
    assert str(res[2]) == "WRONGTYPE Operation against a key holding the wrong kind of value"
    assert other.mget("err:before", "err:after", "err:s") == ["1", "2", "text"]

    # raise_on_error=True (the default): the first error is raised, annotated
    # with its position, and every other command was still applied.
    pipe = c.pipeline()
    pipe.set("err:x", "1").incr("err:s").set("err:y", "2")
    with pytest.raises(ResponseError) as ei:
        pipe.execute()
    # redis-py sends INCR as INCRBY key 1.
    assert str(ei.value) == (
        "Command # 2 (INCRBY err:s 1) of pipeline caused error: "
        "value is not an integer or out of range"
    )
    assert other.mget("err:x", "err:y") == ["1", "2"]
    nodes.check_replicas()


@pytest.mark.parametrize("via", VIAS)
def test_pipeline_queue_time_error_aborts_everything(nodes, via):
    """An error when a command is queued (wrong arity, unknown command)
    discards the whole transaction: EXECABORT, nothing applied."""
    m = nodes.via(via)
    c, other = nodes.client(m), nodes.client(nodes.other(m))
    cases = [
        (("SET", "abort:b"), "wrong number of arguments for 'set' command"),
        (("NOSUCHCMD", "x"), "unknown command 'NOSUCHCMD', with args beginning with: 'x' "),
    ]
    for bad, message in cases:
        pipe = c.pipeline()
        pipe.set("abort:a", "1").execute_command(*bad).incr("abort:c")
        with pytest.raises(ResponseError) as ei:
            pipe.execute()
        assert str(ei.value) == f"Command # 2 ({' '.join(bad)}) of pipeline caused error: {message}"
        assert other.exists("abort:a", "abort:c") == 0, f"{bad}: a discarded transaction applied"
    # The connection is usable afterwards, in and out of transactions.
    assert c.pipeline().set("abort:a", "2").get("abort:a").execute() == [True, "2"]
    assert c.get("abort:a") == "2"
    nodes.check_replicas()


class RawConnection:
    """One redis-py Connection, replies as parsed (no command callbacks)."""

    def __init__(self, port: int):
        self.conn = redis.Connection(host="127.0.0.1", port=port, decode_responses=True,
                                     socket_timeout=20, retry=no_retry())

    def __call__(self, *args):
        self.conn.send_command(*args)
        return self.conn.read_response()

    def close(self):
        self.conn.disconnect()


@pytest.mark.parametrize("via", VIAS)
def test_raw_multi_exec_discard_and_errors(nodes, via):
    """The commands themselves on one connection: replies and error texts."""
    m = nodes.via(via)
    c = RawConnection(nodes.port(m))
    other = nodes.client(nodes.other(m))

    assert c("MULTI") == "OK"
    assert c("SET", "raw:k", "v") == "QUEUED"
    assert c("INCR", "raw:n") == "QUEUED"
    assert c("GET", "raw:k") == "QUEUED"
    assert other.exists("raw:k", "raw:n") == 0, "a queued command ran before EXEC"
    assert c("EXEC") == ["OK", 1, "v"]

    assert c("MULTI") == "OK"
    assert c("SET", "raw:k", "discarded") == "QUEUED"
    assert c("DISCARD") == "OK"
    assert other.get("raw:k") == "v"

    for cmd, message in [
        (("EXEC",), "EXEC without MULTI"),
        (("DISCARD",), "DISCARD without MULTI"),
    ]:
        with pytest.raises(ResponseError) as ei:
            c(*cmd)
        assert str(ei.value) == message
    assert c("MULTI") == "OK"
    with pytest.raises(ResponseError) as ei:
        c("MULTI")
    assert str(ei.value) == "MULTI calls can not be nested"
    with pytest.raises(ResponseError) as ei:
        c("WATCH", "raw:k")
    assert str(ei.value) == "WATCH inside MULTI is not allowed"
    # Neither error discarded the transaction: it still runs.
    assert c("INCR", "raw:n") == "QUEUED"
    assert c("EXEC") == [2]

    # A queue-time error: EXEC answers EXECABORT and nothing runs.
    assert c("MULTI") == "OK"
    assert c("SET", "raw:k", "never") == "QUEUED"
    with pytest.raises(ResponseError) as ei:
        c("SET", "raw:k")
    assert str(ei.value) == "wrong number of arguments for 'set' command"
    with pytest.raises(ExecAbortError) as ei:
        c("EXEC")
    assert str(ei.value) == "Transaction discarded because of previous errors."
    assert other.get("raw:k") == "v"
    # Outside MULTI a command runs at once again.
    assert c("SET", "raw:k", "after") == "OK"
    assert other.get("raw:k") == "after"

    # WATCH/UNWATCH on the wire; EXEC after a conflicting write answers nil.
    assert c("WATCH", "raw:k", "raw:n") == "OK"
    assert other.set("raw:n", "100") is True
    assert c("MULTI") == "OK"
    assert c("SET", "raw:k", "lost") == "QUEUED"
    assert c("EXEC") is None
    assert other.get("raw:k") == "after"
    assert c("WATCH", "raw:k") == "OK"
    assert c("UNWATCH") == "OK"
    assert other.set("raw:k", "changed") is True
    assert c("MULTI") == "OK"
    assert c("SET", "raw:k", "won") == "QUEUED"
    assert c("EXEC") == ["OK"]
    # DISCARD forgets the watched keys too.
    assert c("WATCH", "raw:k") == "OK"
    assert c("MULTI") == "OK"
    assert c("DISCARD") == "OK"
    assert other.set("raw:k", "again") is True
    assert c("MULTI") == "OK"
    assert c("GET", "raw:k") == "QUEUED"
    assert c("EXEC") == ["again"]
    c.close()
    nodes.check_replicas()


# --- 2. WATCH -------------------------------------------------------------------------


def _optimistic_incr(client: redis.Redis, key: str, interfere=None, limit: int = 10):
    """redis-py's documented WATCH retry loop; returns (new value, attempts).
    ``interfere(attempt)`` runs between the GET and MULTI."""
    attempts = 0
    with client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                attempts += 1
                current = int(pipe.get(key) or 0)
                if interfere is not None:
                    interfere(attempts)
                pipe.multi()
                pipe.set(key, current + 1)
                assert pipe.execute() == [True]
                return current + 1, attempts
            except WatchError:
                if attempts >= limit:
                    raise
                continue


@pytest.mark.parametrize("via", VIAS)
def test_watch_retry_loop_aborts_on_any_write(nodes, via):
    m = nodes.via(via)
    c = nodes.client(m)
    other = nodes.client(nodes.other(m))
    # Writes through another node during the first attempt: each must abort
    # that attempt, even when it leaves the same value behind.
    interferences = {
        "set-same-value": lambda k: other.set(k, other.get(k)),
        "incr": lambda k: other.incr(k),
        "expire": lambda k: other.expire(k, 1000),
        "delete": lambda k: other.delete(k),
        "getset-same": lambda k: other.getset(k, other.get(k)),
    }
    for name, write in interferences.items():
        key = f"w:{name}"
        assert other.set(key, "10") is True

        def interfere(attempt, key=key, write=write):
            if attempt == 1:
                write(key)

        value, attempts = _optimistic_incr(c, key, interfere)
        assert attempts == 2, f"{name}: the first EXEC was not aborted ({attempts} attempts)"
        expected = int(other.get(key))
        assert value == expected, name
        for n in nodes.members:
            assert nodes.client(n).get(key) == str(expected)

    # A watched key that did not exist and is created by someone else.
    value, attempts = _optimistic_incr(
        c, "w:created", lambda a: a == 1 and other.set("w:created", "5"))
    assert (value, attempts) == (6, 2)

    # Writes to OTHER keys, and reads of the watched one, do not abort.
    value, attempts = _optimistic_incr(
        c, "w:quiet", lambda a: (other.set("w:unrelated", "1"), other.get("w:quiet")))
    assert (value, attempts) == (1, 1)

    # The watching connection's own write before MULTI aborts its EXEC too.
    with c.pipeline() as pipe:
        pipe.watch("w:own")
        assert pipe.set("w:own", "1") is True  # immediate: the pipeline is watching
        pipe.multi()
        pipe.set("w:own", "2")
        with pytest.raises(WatchError):
            pipe.execute()
    assert other.get("w:own") == "1"

    # UNWATCH forgets the watch: a later write does not abort.
    with c.pipeline() as pipe:
        pipe.watch("w:unwatched")
        pipe.unwatch()
        other.set("w:unwatched", "x")
        pipe.multi()
        pipe.set("w:unwatched", "y")
        assert pipe.execute() == [True]
    assert other.get("w:unwatched") == "y"

    # WATCH of several keys: a write to any of them aborts.
    with c.pipeline() as pipe:
        pipe.watch("w:m1", "w:m2", "w:m3")
        other.set("w:m3", "x")
        pipe.multi()
        pipe.set("w:m1", "y")
        with pytest.raises(WatchError):
            pipe.execute()
    assert other.exists("w:m1") == 0
    nodes.check_replicas()


@pytest.mark.parametrize("via", VIAS)
def test_transaction_helper(nodes, via):
    """Redis.transaction(func, *watches): func is called again after an abort."""
    m = nodes.via(via)
    c, other = nodes.client(m), nodes.client(nodes.other(m))
    calls = []

    def add_two(pipe):
        calls.append(1)
        v = int(pipe.get("th") or 0)
        if len(calls) == 1:
            other.incr("th")  # someone else moves the key: this attempt must abort
        pipe.multi()
        pipe.set("th", v + 2)
        pipe.get("th")
        return v + 2

    assert c.transaction(add_two, "th") == [True, "3"]
    assert len(calls) == 2
    calls.clear()
    assert c.transaction(add_two, "th", value_from_callable=True) == 6  # 3, +1 by the other, +2
    assert len(calls) == 2
    assert other.get("th") == "6"
    nodes.check_replicas()


# --- 3. asyncio ---------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("via", VIAS)
async def test_asyncio_pipeline_watch_and_transaction(nodes, via):
    m = nodes.via(via)
    c = nodes.async_client(m)
    other = nodes.async_client(nodes.other(m))
    try:
        async with c.pipeline() as pipe:  # transaction=True
            pipe.set("at:s", "v").get("at:s").incr("at:n").incr("at:n").rpush("at:l", "a", "b")
            pipe.lrange("at:l", 0, -1).delete("at:s").get("at:s")
            assert await pipe.execute() == [True, "v", 1, 2, 2, ["a", "b"], 1, None]

        async with c.pipeline() as pipe:
            pipe.set("at:str", "x").incr("at:str").set("at:after", "1")
            res = await pipe.execute(raise_on_error=False)
        assert res[0] is True and res[2] is True and isinstance(res[1], ResponseError), res
        assert await other.get("at:after") == "1"

        # The documented WATCH loop, with a conflicting write through another
        # node during the first attempt.
        await other.set("at:seq", "41")
        attempts = 0
        async with c.pipeline() as pipe:
            while True:
                try:
                    await pipe.watch("at:seq")
                    attempts += 1
                    current = int(await pipe.get("at:seq"))
                    if attempts == 1:
                        await other.set("at:seq", current)
                    pipe.multi()
                    pipe.set("at:seq", current + 1)
                    assert await pipe.execute() == [True]
                    break
                except WatchError:
                    assert attempts < 10
        assert attempts == 2 and await other.get("at:seq") == "42"

        calls = []

        async def double(pipe):
            calls.append(1)
            v = int(await pipe.get("at:d") or 1)
            if len(calls) == 1:
                await other.set("at:d", "3")
            pipe.multi()
            pipe.set("at:d", v * 2)
            return v * 2

        assert await c.transaction(double, "at:d", value_from_callable=True) == 6
        assert len(calls) == 2 and await other.get("at:d") == "6"

        # Many tasks over one client per node, each with its own pipeline:
        # optimistic increments lose nothing.
        clients = [nodes.async_client(n) for n in nodes.members]
        try:
            async def incr_task(i, per_task=10):
                r = clients[i % len(clients)]
                aborts = 0
                for _ in range(per_task):
                    async with r.pipeline() as pipe:
                        while True:
                            try:
                                await pipe.watch("at:ctr")
                                v = int(await pipe.get("at:ctr") or 0)
                                pipe.multi()
                                pipe.set("at:ctr", v + 1)
                                await pipe.execute()
                                break
                            except WatchError:
                                aborts += 1
                return aborts

            aborts = await asyncio.wait_for(asyncio.gather(*(incr_task(i) for i in range(30))), 120)
        finally:
            for r in clients:
                await r.aclose()
        assert await other.get("at:ctr") == "300", f"aborts per task: {aborts}"
        print(f"\nasyncio WATCH increments through {nodes.kind}: {sum(aborts)} aborted attempts")
    finally:
        await c.aclose()
        await other.aclose()
    nodes.check_replicas()


# --- 4. contention from processes on every node -------------------------------------------

WATCH_KEY = "contended"


def _watch_incr_worker(idx, port, barrier, out, per_worker, deadline_s):
    try:
        r = worker_client(port)
        r.ping()
        barrier.wait(timeout=60)
        deadline = time.monotonic() + deadline_s
        aborts, values = 0, []
        with r.pipeline() as pipe:
            for _ in range(per_worker):
                while True:
                    try:
                        pipe.watch(WATCH_KEY)
                        v = int(pipe.get(WATCH_KEY) or 0)
                        pipe.multi()
                        pipe.set(WATCH_KEY, v + 1)
                        if pipe.execute() != [True]:
                            raise AssertionError("EXEC did not answer [OK]")
                        values.append(v + 1)
                        break
                    except WatchError:
                        aborts += 1
                        if time.monotonic() > deadline:
                            raise AssertionError(f"no progress within {deadline_s}s") from None
        r.close()
        out.put((idx, "ok", values, aborts))
    except BaseException as e:  # everything is reported to the parent
        out.put((idx, "error", f"{type(e).__name__}: {e}", None))


def test_watch_contention_across_processes_on_every_node(nodes):
    """9 processes, three per node, each doing 100 optimistic increments
    (WATCH/GET/MULTI/SET/EXEC, retried on abort): the final value is exactly
    900 and every successful EXEC wrote a different value."""
    n, per = 9, 100
    results = run_processes(_watch_incr_worker, nodes.ports(), n, (per, 150.0), timeout=200)
    values = [v for r in results for v in r[2]]
    aborts = sum(r[3] for r in results)
    print(f"\n{n} processes x {per} WATCH increments through {nodes.kind}: {aborts} aborted EXECs")
    assert sorted(values) == list(range(1, n * per + 1)), (
        "two successful transactions wrote the same value (a lost update)"
    )
    for m in nodes.members:
        assert nodes.client(m).get(WATCH_KEY) == str(n * per), f"through node {m}"
    assert aborts > 0, "no EXEC was ever aborted: the processes did not contend"
    nodes.check_replicas()


def _multi_incr_worker(idx, port, barrier, out, per_worker):
    try:
        r = worker_client(port)
        r.ping()
        barrier.wait(timeout=60)
        seen = []
        for _ in range(per_worker):
            a, b = r.pipeline().incr("pair:a").incr("pair:b").execute()
            seen.append((a, b))
        r.close()
        out.put((idx, "ok", seen))
    except BaseException as e:
        out.put((idx, "error", f"{type(e).__name__}: {e}"))


def test_multi_incr_from_many_clients_is_exact_and_isolated(nodes):
    """9 processes (three per node) x 100 ``MULTI; INCR a; INCR b; EXEC``:
    every EXEC sees a == b (no other command ran between its two INCRs),
    the values are 1..900 once each, and the counters end at 900."""
    n, per = 9, 100
    results = run_processes(_multi_incr_worker, nodes.ports(), n, (per,), timeout=200)
    pairs = [p for r in results for p in r[2]]
    torn = [p for p in pairs if p[0] != p[1]]
    assert not torn, f"{len(torn)} transactions interleaved with others, e.g. {torn[:5]}"
    assert sorted(a for a, _ in pairs) == list(range(1, n * per + 1))
    for m in nodes.members:
        assert nodes.client(m).mget("pair:a", "pair:b") == [str(n * per)] * 2
    nodes.check_replicas()


# --- 5. faults (raftcache only): transactions and scripts across a leader kill ---------------

INCR_PAIR_SCRIPT = (
    "local a = redis.call('incr', KEYS[1])\n"
    "local b = redis.call('incr', KEYS[2])\n"
    "return {a, b}\n"
)


@dataclass
class Call:
    kind: str  # "tx" | "script"
    node: int
    start: float
    result: str  # ack | clusterdown | uncertain | lost | error
    reply: object


def call_error_kind(e: BaseException) -> str:
    """error_kind() for a transaction error too (redis-py prefixes the error of
    a queued command with 'Command # n (...) of pipeline caused error: ')."""
    msg = re.sub(r"^Command # \d+ \(.*?\) of pipeline caused error: ", "", str(e))
    if msg.startswith("CLUSTERDOWN"):
        return "clusterdown"
    if msg.startswith("UNCERTAIN"):
        return "uncertain"
    return error_kind(e)


class TxScriptLoad:
    """Threads doing ``MULTI; INCR ftx:a; INCR ftx:b; EXEC`` (kind "tx") or
    ``EVALSHA <incr pair> 2 fsc:a fsc:b`` (kind "script"), each on its home
    node, or the next ready node while its home is down; every call recorded.

    Results: ack (the reply [v, v]), clusterdown (no leader: nothing applied),
    uncertain (UNCERTAIN: outcome unknown), lost (connection error on a node
    the test killed or restarted during the call: outcome unknown), error
    (anything else, including NOSCRIPT: a failure)."""

    KEYS = {"tx": ("ftx:a", "ftx:b"), "script": ("fsc:a", "fsc:b")}

    def __init__(self, cluster: Cluster, sha: str, homes: Dict[str, List[int]]):
        self.cluster = cluster
        self.sha = sha
        self.ready = {m: True for m in cluster.nodes}
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.calls: List[Call] = []
        self.threads = [
            threading.Thread(target=self._run, args=(kind, m), daemon=True, name=f"{kind}-n{m}")
            for kind, ms in homes.items() for m in ms
        ]

    def start(self) -> "TxScriptLoad":
        for t in self.threads:
            t.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout)
            assert not t.is_alive(), f"{t.name} did not stop within {timeout}s"

    def _pick(self, home: int):
        ms = sorted(self.cluster.nodes)
        for k in range(len(ms)):
            cand = ms[(ms.index(home) + k) % len(ms)]
            if self.ready[cand] and self.cluster.nodes[cand].alive():
                return cand
        return None

    def _run(self, kind: str, home: int) -> None:
        # member -> (client, the incarnation it was made for): a client made
        # before a restart is replaced, never reused.
        clients: Dict[int, Tuple[redis.Redis, int]] = {}
        a, b = self.KEYS[kind]
        while not self.stop_event.is_set():
            m = self._pick(home)
            if m is None:
                time.sleep(0.01)
                continue
            node = self.cluster.nodes[m]
            starts = node.starts
            if m in clients and clients[m][1] != starts:
                clients.pop(m)[0].close()
            if m not in clients:
                clients[m] = (node.client(socket_timeout=20), starts)
            c = clients[m][0]
            start = time.monotonic()
            try:
                if kind == "tx":
                    reply = c.pipeline().incr(a).incr(b).execute()
                else:
                    reply = c.evalsha(self.sha, 2, a, b)
                ok = (isinstance(reply, list) and len(reply) == 2
                      and all(isinstance(x, int) for x in reply))
                result = "ack" if ok else "error"
            except Exception as e:  # noqa: BLE001 (every outcome is recorded)
                reply = repr(e)
                k = call_error_kind(e)
                if k in ("clusterdown", "uncertain"):
                    result = k
                elif k == "connection" and (node.killed or node.starts != starts
                                            or not self.ready[m]):
                    result = "lost"
                else:
                    result = "error"
                clients.pop(m)[0].close()
            with self.lock:
                self.calls.append(Call(kind, m, start, result, reply))
        for c, _ in clients.values():
            c.close()

    def of(self, kind: str, result: str, since: float = 0.0, node=None) -> List[Call]:
        with self.lock:
            return [c for c in self.calls if c.kind == kind and c.result == result
                    and c.start >= since and (node is None or c.node == node)]

    def tally(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        with self.lock:
            for c in self.calls:
                out[f"{c.kind}:{c.result}"] = out.get(f"{c.kind}:{c.result}", 0) + 1
        return out


def test_transactions_and_scripts_across_leader_kill(make_fault_cluster):
    """MULTI/INCR/INCR/EXEC and an EVALSHA that increments two keys, from
    threads on all three nodes, while the leader is killed (kill -9) and then
    restarted. Each counter ends between the acknowledged calls and those plus
    the calls with an unknown outcome (nothing applied twice); both keys of a
    pair are always equal (never half a transaction or half a script); the
    script cache outlives the leader (no NOSCRIPT on the new leader); the
    restarted node serves both again; the replicas end up identical."""
    cluster = make_fault_cluster(3)
    leader = cluster.leader()
    lc = cluster.client(leader)
    sha = lc.script_load(INCR_PAIR_SCRIPT)
    cluster.wait_applied_equal()
    load = TxScriptLoad(cluster, sha, {"tx": [1, 2, 3, 1, 2, 3], "script": [1, 2, 3]}).start()
    try:
        cluster.wait_for("100 acknowledged transactions and scripts before the kill",
                         lambda: len(load.of("tx", "ack")) >= 100
                         and len(load.of("script", "ack")) >= 100, timeout=60)
        load.ready[leader] = False
        killed_at = time.monotonic()
        cluster.kill9(leader)
        new_leader = cluster.leader(timeout=30)
        assert new_leader != leader
        cluster.wait_for("50 transactions and 50 scripts acknowledged after the kill",
                         lambda: len(load.of("tx", "ack", since=killed_at)) >= 50
                         and len(load.of("script", "ack", since=killed_at)) >= 50, timeout=30)
        cluster.restart(leader)
        cluster.wait_voter(leader, timeout=45)
        back_at = time.monotonic()
        load.ready[leader] = True
        cluster.wait_for("transactions and scripts acknowledged through the restarted node",
                         lambda: len(load.of("tx", "ack", since=back_at, node=leader)) >= 20
                         and len(load.of("script", "ack", since=back_at, node=leader)) >= 20,
                         timeout=30)
    finally:
        load.stop()
    tally = load.tally()
    print(f"\noutcomes (leader {leader} killed, then restarted; new leader {new_leader}): {tally}")
    errors = [c for c in load.calls if c.result == "error"]
    assert not errors, (
        f"{len(errors)} calls failed, e.g. {[(c.kind, c.node, c.reply) for c in errors[:5]]}")

    cluster.wait_applied_equal(timeout=45)
    for kind, (ka, kb) in TxScriptLoad.KEYS.items():
        acks = load.of(kind, "ack")
        torn = [c.reply for c in acks if c.reply[0] != c.reply[1]]
        assert not torn, f"{kind}: replies with the two counters apart: {torn[:5]}"
        values = [c.reply[0] for c in acks]
        assert len(set(values)) == len(values), f"{kind}: two acknowledged calls got the same value"
        unknown = len(load.of(kind, "uncertain")) + len(load.of(kind, "lost"))
        for m in cluster.nodes:
            a, b = (int(x or 0) for x in cluster.client(m).mget(ka, kb))
            assert a == b, f"node {m}: {ka}={a} {kb}={b}: half a {kind} was applied"
            assert len(acks) <= a <= len(acks) + unknown, (
                f"node {m}: {ka}={a}, {len(acks)} acknowledged, {unknown} with unknown outcome"
            )
            assert max(values) <= a
    # The script is still cached everywhere, the restarted node included.
    for m in cluster.nodes:
        assert cluster.client(m).script_exists(sha) == [True], f"node {m} lost the script"
    cluster.assert_digests_equal()

"""Locks on a real cluster: the users' SET NX idiom, LOCK.ACQUIRE/RELEASE/
RENEW/INFO/FENCE with fencing tokens, fair waiting, and the examples.

Clients are real processes (this file run as a script: ``worker`` modes at
the bottom) or redis-py clients in threads; nodes are real processes started
by ``harness.Cluster`` (``make_cluster``) or, for the full-cluster restart
with a data directory, by ``tests/durability/dharness.DurableCluster``.
Faults are real: ``kill -9`` of nodes, ``SIGSTOP``/``SIGCONT`` of nodes and
of client processes, ``kill -9`` of waiting clients. Every wait is a poll or a
blocking read with a deadline; every process is signalled by its pid.

    RAFTCACHE_BIN=$PWD/target/debug/raftcache python3 -m pytest tests/cluster/test_locks.py -q

What is checked (each test's docstring says more):

1. ``SET key v NX EX 120`` from 20 processes over three nodes: exactly one
   winner per key; with the leader killed mid-race, at most one winner among
   acknowledged replies and the key holds a value of a process that did not
   lose.
2. Fencing tokens strictly increase across a leader kill (real-time order of
   grants) and across a kill -9 of the whole cluster with ``--data-dir``
   (appendfsync always, snapshots taken); a holder paused (its process, its
   follower node, its leader node) past its lease loses the lock to a waiter
   with a larger token, and its late guarded write is refused (FENCED).
3. Waiters on different nodes are granted in log order; a waiter that
   disconnects is skipped; WAIT timeouts answer nil in time; a lease expiry
   grants the next waiter; a waiter whose node dies is skipped after the
   pending timeout.
4. Replies and errors of every LOCK.* command through the leader and a
   follower, RESP2 and RESP3, in MULTI and in scripts; the conditional writes
   (DELIFEQ, DELEX, DIGEST, SET … IFEQ, INCREX) as the users' own lock idiom
   uses them.
5. Ten processes incrementing one counter under LOCK.ACQUIRE … WAIT with
   GET/SET: the count is exact and the tokens increase in grant order; the
   same with SET NX PX and DELIFEQ.
6. ``examples/migrations_once.py`` (both modes) runs its migrations exactly
   once across workers on three nodes, including a stalled holder.

Four tests reproduce bugs found here (fixed since):
``test_owner_reacquiring_after_its_node_died_keeps_the_lock`` (two holders),
``test_uncertain_confirmation_never_gives_the_lock_to_two_clients`` (two
holders), ``test_waiter_disconnected_without_quorum_is_skipped`` (a 10 s
stall) and ``test_grant_confirmed_after_its_lease_ended_is_not_handed_over``
(a token for a lock another client holds).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import redis  # noqa: E402
from harness import error_kind, no_retry  # noqa: E402

THIS = str(Path(__file__).resolve())

GUARDED_SET = ("redis.call('LOCK.FENCE', KEYS[1], ARGV[1]) "
               "return redis.call('SET', KEYS[2], ARGV[2])")


# =====================================================================================
# Worker processes (this file run as a script)
# =====================================================================================


def _emit(**msg) -> None:
    msg.setdefault("t", time.monotonic())
    sys.stdout.write(json.dumps(msg, default=str) + "\n")
    sys.stdout.flush()


def _jsonable(reply):
    if isinstance(reply, dict):
        return {str(k): _jsonable(v) for k, v in reply.items()}
    if isinstance(reply, (list, tuple)):
        return [_jsonable(v) for v in reply]
    if isinstance(reply, bytes):
        return reply.decode(errors="replace")
    return reply


def _client(port: int, protocol: int = 2, timeout: Optional[float] = None) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, protocol=protocol,
                       socket_timeout=timeout, socket_connect_timeout=5, retry=no_retry())


def worker_session(port: int, protocol: int = 2) -> None:
    """Interactive: one connection; JSON lines on stdin, one reply line each.

    {"op": "call", "tag": x, "args": [...]}  -> {"tag", "reply" | "error"+"kind", "t0", "t"}
    {"op": "port", "port": p}                -> reconnect to another node
    """
    r = _client(port, protocol)
    r.ping()
    _emit(ready=True, pid=os.getpid())
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["op"] == "port":
            r.close()
            r = _client(msg["port"], protocol)
            _emit(tag=msg.get("tag"), reply="reconnected")
            continue
        t0 = time.monotonic()
        try:
            reply = r.execute_command(*msg["args"])
            _emit(tag=msg.get("tag"), reply=_jsonable(reply), t0=t0)
        except Exception as e:  # noqa: BLE001 (reported to the test)
            _emit(tag=msg.get("tag"), error=str(e), kind=error_kind(e), t0=t0)
            if error_kind(e) == "connection":
                r.close()
                r = _client(port, protocol)


def worker_race(ports: List[int], start: int, me: int, prefix: str, nkeys: int) -> None:
    """SET <prefix><i> p<me> NX EX 120 for i < nkeys, once each (never retried),
    after "go" on stdin. A connection error moves to the next node."""
    at = start
    r = _client(ports[at], timeout=15)
    r.ping()
    _emit(ready=True, pid=os.getpid())
    sys.stdin.readline()
    for i in range(nkeys):
        key = f"{prefix}{i}"
        try:
            won = r.set(key, f"p{me}", nx=True, ex=120)
            _emit(i=i, res="win" if won else "lose", node=at)
        except Exception as e:  # noqa: BLE001
            kind = error_kind(e)
            _emit(i=i, res="unknown", kind=kind, err=str(e)[:200], node=at)
            if kind in ("connection", "other"):
                r.close()
                at = (at + 1) % len(ports)
                r = _client(ports[at], timeout=15)
    _emit(done=True)


def worker_counter(port: int, me: int, lock: str, key: str, n: int) -> None:
    """n times: LOCK.ACQUIRE lock c<me> 30000 WAIT 0, GET key, SET key v+1,
    LOCK.RELEASE; one line per round with the token and the value written."""
    r = _client(port, timeout=120)
    r.ping()
    _emit(ready=True, pid=os.getpid())
    sys.stdin.readline()
    owner = f"c{me}"
    for i in range(n):
        token = r.execute_command("LOCK.ACQUIRE", lock, owner, 30000, "WAIT", 0)
        value = int(r.get(key) or 0)
        r.set(key, value + 1)
        released = r.execute_command("LOCK.RELEASE", lock, owner)
        _emit(i=i, token=token, wrote=value + 1, released=released)
    _emit(done=True)


def worker_setnx_counter(port: int, me: int, lock: str, key: str, n: int) -> None:
    """The users' idiom with the safe release: n times SET lock <token> NX PX
    30000 (polled), GET key, SET key v+1, DELIFEQ lock <token>."""
    r = _client(port, timeout=120)
    r.ping()
    _emit(ready=True, pid=os.getpid())
    sys.stdin.readline()
    tries = 0
    for i in range(n):
        token = f"c{me}-{i}-{os.urandom(6).hex()}"
        while not r.set(lock, token, nx=True, px=30000):
            tries += 1
            time.sleep(0.002)
        value = int(r.get(key) or 0)
        r.set(key, value + 1)
        released = r.execute_command("DELIFEQ", lock, token)
        _emit(i=i, wrote=value + 1, released=released)
    _emit(done=True, tries=tries)


def worker_main(argv: List[str]) -> None:
    mode = argv[0]
    if mode == "session":
        worker_session(int(argv[1]), int(argv[2]) if len(argv) > 2 else 2)
    elif mode == "race":
        worker_race([int(p) for p in argv[1].split(",")], int(argv[2]), int(argv[3]), argv[4],
                    int(argv[5]))
    elif mode == "counter":
        worker_counter(int(argv[1]), int(argv[2]), argv[3], argv[4], int(argv[5]))
    elif mode == "setnx-counter":
        worker_setnx_counter(int(argv[1]), int(argv[2]), argv[3], argv[4], int(argv[5]))
    else:
        raise SystemExit(f"unknown worker mode {mode!r}")


if __name__ == "__main__":
    worker_main(sys.argv[1:])
    raise SystemExit(0)


# =====================================================================================
# The test side
# =====================================================================================

import pytest  # noqa: E402

from harness import Cluster, managed_clusters  # noqa: E402

DURABILITY = HERE.parent / "durability"
if str(DURABILITY) not in sys.path:
    sys.path.insert(0, str(DURABILITY))
from dharness import DurableCluster  # noqa: E402

ALWAYS = ["--appendfsync", "always"]


class Proc:
    """A client process running one of the worker modes above; its JSON
    lines are read by a thread into a queue. Signalled by pid only."""

    def __init__(self, registry: List["Proc"], *argv: str, name: str = ""):
        self.name = name or " ".join(argv[:2])
        self.p = subprocess.Popen(
            [sys.executable, THIS, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, bufsize=1, start_new_session=True,
            cwd=str(HERE))
        registry.append(self)
        self.lines: "queue.Queue[Optional[dict]]" = queue.Queue()
        self.eof = False
        self.stopped = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.p.pid

    def _read(self) -> None:
        for line in self.p.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.lines.put({"garbage": line})
        self.lines.put(None)

    def send(self, **msg) -> None:
        self.p.stdin.write(json.dumps(msg) + "\n")
        self.p.stdin.flush()

    def go(self) -> None:
        self.p.stdin.write("go\n")
        self.p.stdin.flush()

    def call(self, tag, *args) -> None:
        self.send(op="call", tag=tag, args=[str(a) for a in args])

    def next(self, timeout: float, what: str = "a reply") -> dict:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.name} (pid {self.pid}): no {what} within {timeout}s")
        if line is None:
            self.eof = True
            err = self.p.stderr.read() if self.p.poll() is not None else ""
            raise AssertionError(f"{self.name} (pid {self.pid}) ended while waiting for {what}: "
                                 f"{err[-2000:]}")
        return line

    def pending(self) -> Optional[dict]:
        """A line already received, if any (does not wait)."""
        try:
            return self.lines.get_nowait()
        except queue.Empty:
            return None

    def ready(self, timeout: float = 30.0) -> None:
        line = self.next(timeout, "ready line")
        assert line.get("ready"), f"{self.name}: expected ready, got {line}"

    def do(self, timeout: float, *args) -> dict:
        """Sends one command and waits for its reply line."""
        self.call("do", *args)
        return self.next(timeout, f"reply to {args}")

    def kill9(self) -> None:
        if self.p.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
            os.kill(self.pid, signal.SIGKILL)
        self.p.wait(timeout=10)

    def sigstop(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.stopped = True

    def sigcont(self) -> None:
        os.kill(self.pid, signal.SIGCONT)
        self.stopped = False


@pytest.fixture
def procs():
    """Client processes of a test; every one still running is killed (by pid)
    at teardown."""
    registry: List[Proc] = []
    yield registry
    for pr in registry:
        if pr.p.poll() is None:
            try:
                os.kill(pr.pid, signal.SIGCONT)
                os.kill(pr.pid, signal.SIGKILL)
            except OSError:
                pass
            pr.p.wait(timeout=10)
        for f in (pr.p.stdin, pr.p.stdout, pr.p.stderr):
            try:
                f.close()
            except OSError:
                pass


@pytest.fixture
def make_dcluster(request):
    """Factory: a DurableCluster (tests/durability/dharness.py): each node with
    its own --data-dir; stopped at teardown like make_cluster's."""
    yield from managed_clusters(
        request, lambda n=3, args=(): DurableCluster(n, args, data=True))


def session(procs: List[Proc], cluster: Cluster, m: int, protocol: int = 2,
            name: str = "") -> Proc:
    pr = Proc(procs, "session", str(cluster.node(m).resp_port), str(protocol),
              name=name or f"session@node{m}")
    pr.ready()
    return pr


def deadline_wait(what: str, predicate, timeout: float, poll: float = 0.05):
    """Polls predicate() (exceptions from redis count as false) until true."""
    end = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (redis.exceptions.RedisError, OSError) as e:
            last = e
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f" (last error {last!r})" if last else ""))
        time.sleep(poll)


def info_map(reply) -> Optional[Dict[str, object]]:
    """LOCK.INFO's reply (RESP2 flat list or RESP3 map) as a dict, None for nil."""
    if reply is None:
        return None
    if isinstance(reply, dict):
        return {str(k): v for k, v in reply.items()}
    assert isinstance(reply, list) and len(reply) % 2 == 0, reply
    return {str(reply[i]): reply[i + 1] for i in range(0, len(reply), 2)}


def lock_info(client: redis.Redis, name: str) -> Optional[Dict[str, object]]:
    return info_map(client.execute_command("LOCK.INFO", name))


def waiters(client: redis.Redis, name: str) -> int:
    info = lock_info(client, name)
    return int(info["waiters"]) if info else 0


def wait_waiters(cluster: Cluster, name: str, n: int, m: Optional[int] = None,
                 timeout: float = 15.0) -> None:
    c = cluster.client(m if m is not None else cluster.leader())
    try:
        deadline_wait(f"LOCK.INFO {name} to show {n} waiters",
                      lambda: waiters(c, name) == n, timeout)
    finally:
        c.close()


def definite(fn, what: str, timeout: float = 30.0):
    """Calls fn() until it gives a reply that is not a transient cluster error
    (no leader, unknown outcome, connection): for commands that are safe to
    repeat. Returns the reply, or the ResponseError it raised."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            return fn()
        except redis.exceptions.RedisError as e:
            if error_kind(e) == "other":
                return e
            last = e
        time.sleep(0.1)
    raise AssertionError(f"no definite reply to {what} within {timeout}s (last: {last!r})")


# =====================================================================================
# 1. The users' idiom: SET key v NX EX 120
# =====================================================================================


def _race(procs: List[Proc], cluster: Cluster, prefix: str, nkeys: int, nprocs: int = 20):
    ports = [cluster.node(m).resp_port for m in sorted(cluster.nodes)]
    racers = [Proc(procs, "race", ",".join(map(str, ports)), str(i % len(ports)), str(i), prefix,
                   str(nkeys), name=f"racer{i}")
              for i in range(nprocs)]
    for pr in racers:
        pr.ready()
    for pr in racers:
        pr.go()
    return racers


def _collect_race(racers: List[Proc], nkeys: int, timeout: float = 180.0,
                  on_line=None) -> Dict[int, Dict[int, dict]]:
    """results[key index][racer] = line; waits for every racer's done line."""
    results: Dict[int, Dict[int, dict]] = {i: {} for i in range(nkeys)}
    end = time.monotonic() + timeout
    done = set()
    while len(done) < len(racers):
        progressed = False
        for me, pr in enumerate(racers):
            if me in done:
                continue
            line = pr.pending()
            while line is not None:
                progressed = True
                if line.get("done"):
                    done.add(me)
                    break
                results[line["i"]][me] = line
                if on_line:
                    on_line(results)
                line = pr.pending()
            if pr.lines.empty() and pr.p.poll() is not None and me not in done:
                raise AssertionError(f"racer {me} exited early: {pr.p.stderr.read()[-2000:]}")
        if time.monotonic() > end:
            raise AssertionError(f"racers not done within {timeout}s (done: {sorted(done)})")
        if not progressed:
            time.sleep(0.02)
    return results


def test_set_nx_idiom_exactly_one_winner(make_cluster, procs):
    """20 processes spread over the three nodes race `SET race:a<i> p<me> NX
    EX 120` on 30 keys (no faults): for every key exactly one SET answers OK,
    19 answer nil, and the key holds the winner's value with a TTL near 120 s."""
    cluster = make_cluster(3)
    nkeys = 30
    racers = _race(procs, cluster, "race:a", nkeys)
    results = _collect_race(racers, nkeys)
    c = cluster.client(cluster.leader())
    for i, by in results.items():
        assert len(by) == 20, f"key {i}: {len(by)} replies"
        unknown = {me: line for me, line in by.items() if line["res"] == "unknown"}
        assert not unknown, f"key {i}: errors without a fault: {unknown}"
        wins = [me for me, line in by.items() if line["res"] == "win"]
        assert len(wins) == 1, f"key race:a{i}: winners {wins}"
        assert c.get(f"race:a{i}") == f"p{wins[0]}"
        assert 110 <= c.ttl(f"race:a{i}") <= 120
    nodes_of_winners = {results[i][next(me for me, l in results[i].items() if l['res'] == 'win')]
                        ["node"] for i in results}
    print(f"\n{nkeys} races of 20 processes: one winner each; winners' nodes {nodes_of_winners}")


def test_set_nx_idiom_leader_killed_mid_race(make_cluster, procs):
    """The same race on 300 keys, and kill -9 of the leader once the racers are
    about a fifth of the way through. For every key: at most one acknowledged
    winner; once the cluster settles the key holds the acknowledged winner's
    value if there is one, else nothing or the value of a process whose
    outcome is unknown (UNCERTAIN, connection error, CLUSTERDOWN) — never that
    of a process that was told nil."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    nkeys = 300
    racers = _race(procs, cluster, "race:b", nkeys)
    killed = {}

    def maybe_kill(results):
        if killed:
            return
        answered = sum(len(by) for by in results.values())
        if answered >= 20 * nkeys // 5:
            killed["at"] = answered
            cluster.kill9(leader)

    results = _collect_race(racers, nkeys, on_line=maybe_kill)
    assert killed, "the leader was never killed (the race ended first)"
    new_leader = cluster.leader(timeout=30)
    assert new_leader != leader
    c = cluster.client(new_leader)
    counts = {"win": 0, "lose": 0, "unknown": 0}
    problems = []
    for i, by in results.items():
        assert len(by) == 20, f"key {i}: {len(by)} replies"
        for line in by.values():
            counts[line["res"]] += 1
        wins = [me for me, line in by.items() if line["res"] == "win"]
        maybe = {f"p{me}" for me, line in by.items() if line["res"] == "unknown"}
        value = c.get(f"race:b{i}")
        if len(wins) > 1:
            problems.append(f"race:b{i}: {len(wins)} acknowledged winners {wins}")
        elif wins:
            if value != f"p{wins[0]}":
                problems.append(f"race:b{i}: winner p{wins[0]} acknowledged, key holds {value!r}")
        elif value is not None and value not in maybe:
            problems.append(f"race:b{i}: no acknowledged winner, key holds {value!r} "
                            f"(unknown outcomes: {sorted(maybe)})")
    assert not problems, "; ".join(problems[:10])
    no_winner = sum(1 for by in results.values() if not any(l["res"] == "win" for l in by.values()))
    print(f"\nleader {leader} killed after {killed['at']} replies; replies {counts}; "
          f"keys without an acknowledged winner: {no_winner}")


# =====================================================================================
# 2. Fencing tokens
# =====================================================================================


def _grant_loop(cluster: Cluster, start: int, me: int, stop: threading.Event,
                grants: List[tuple], errors: List[str]) -> None:
    """Acquire/release on lock fence:<me> until stop; each grant recorded as
    (first send time, ack time, token, me). An uncertain acquire is repeated
    with the same owner (which returns the same token if it was granted); a
    connection error moves to the next node that runs."""
    members = sorted(cluster.nodes)
    at = members.index(start)
    client = None
    i = 0
    name = f"fence:{me}"

    def reconnect():
        nonlocal at, client
        if client is not None:
            client.close()
        for k in range(1, len(members) + 1):
            cand = members[(at + k) % len(members)]
            if cluster.node(cand).alive() and not cluster.node(cand).killed:
                at = (at + k) % len(members)
                break
        client = cluster.client(members[at], socket_timeout=15)

    client = cluster.client(members[at], socket_timeout=15)
    while not stop.is_set():
        owner = f"t{me}-{i}"
        i += 1
        first = time.monotonic()
        token = None
        while token is None and not stop.is_set():
            try:
                token = client.execute_command("LOCK.ACQUIRE", name, owner, 10000)
                if token is None:
                    errors.append(f"{name} {owner}: nil for a free lock")
                    return
            except redis.exceptions.RedisError as e:
                kind = error_kind(e)
                if kind == "other":
                    errors.append(f"{name} {owner}: {e!r}")
                    return
                if kind == "connection":
                    reconnect()
                time.sleep(0.05)
        if token is None:
            return
        grants.append((first, time.monotonic(), int(token), me))
        while not stop.is_set():
            try:
                client.execute_command("LOCK.RELEASE", name, owner)
                break
            except redis.exceptions.RedisError as e:
                if error_kind(e) == "connection":
                    reconnect()
                time.sleep(0.05)
    client.close()


def _check_real_time_order(grants: List[tuple]) -> None:
    tokens = [g[2] for g in grants]
    assert len(set(tokens)) == len(tokens), "two grants got the same token"
    for me in {g[3] for g in grants}:
        mine = [g[2] for g in grants if g[3] == me]
        assert mine == sorted(mine) and len(set(mine)) == len(mine), (
            f"client {me}: tokens not strictly increasing: {mine}")
    by_ack = sorted(grants, key=lambda g: g[1])
    for b in grants:
        for a in by_ack:
            if a[1] >= b[0]:
                break
            assert a[2] < b[2], (f"grant {a} was acknowledged before grant {b} was requested, "
                                 f"but its token is not smaller")


def test_tokens_increase_across_leader_kill(make_cluster):
    """Three clients (one per node, distinct lock names) acquire and release in
    a loop; the leader is killed -9 in the middle. Every token is unique, each
    client's tokens strictly increase, and a grant acknowledged before another
    was requested has the smaller token (real-time order, across the leader
    change); grants continue under the new leader."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    stop = threading.Event()
    grants: List[tuple] = []
    errors: List[str] = []
    threads = [threading.Thread(target=_grant_loop, args=(cluster, m, m, stop, grants, errors),
                                daemon=True) for m in sorted(cluster.nodes)]
    for t in threads:
        t.start()
    try:
        deadline_wait("60 grants before the kill", lambda: len(grants) >= 60 or errors, 60)
        before = len(grants)
        killed_at = time.monotonic()
        cluster.kill9(leader)
        deadline_wait("60 grants after the kill",
                      lambda: sum(1 for g in grants if g[0] > killed_at) >= 60 or errors, 60)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    _check_real_time_order(list(grants))
    before_max = max(g[2] for g in grants if g[1] < killed_at)
    after = [g[2] for g in grants if g[0] > killed_at]
    assert after and min(after) > before_max
    print(f"\n{len(grants)} grants ({before} before the kill of leader {leader}); "
          f"last token before {before_max}, first after {min(after)}")


def test_tokens_increase_across_full_restart_with_data_dir(make_dcluster):
    """--data-dir, appendfsync always, --snapshot-every 100: 150 grants (so
    snapshots are taken and the log compacted), a lock held with a 120 s lease,
    then kill -9 of all three nodes and a restart. The held lock comes back
    with its owner and token (FENCE accepts it, another owner is refused), and
    every new grant's token is larger than every token granted before."""
    cluster = make_dcluster(3, args=ALWAYS + ["--snapshot-every", "100"])
    c = cluster.client(cluster.leader())
    tokens = []
    for i in range(150):
        t = c.execute_command("LOCK.ACQUIRE", f"cycle:{i % 7}", f"o{i}", 10000)
        tokens.append(int(t))
        assert c.execute_command("LOCK.RELEASE", f"cycle:{i % 7}", f"o{i}") == 1
    held = int(c.execute_command("LOCK.ACQUIRE", "held", "keeper", 120000))
    assert c.eval(GUARDED_SET, 2, "held", "guarded", held, "before") == "OK"
    tokens.append(held)
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
    c.close()
    cluster.wait_for("a snapshot on every node",
                     lambda: all(cluster.node(m).snapshots() for m in cluster.nodes), timeout=30)
    cluster.wait_applied_equal()
    cluster.kill_all()
    cluster.restart_all()
    leader = cluster.wait_stable(timeout=60)
    c = cluster.client(leader)
    info = deadline_wait("LOCK.INFO held after the restart", lambda: lock_info(c, "held"), 30)
    assert info["owner"] == "keeper" and int(info["token"]) == held, info
    assert 0 < int(info["ttl"]) <= 120000
    assert c.execute_command("LOCK.ACQUIRE", "held", "intruder", 1000) is None
    assert c.eval(GUARDED_SET, 2, "held", "guarded", held, "after") == "OK"
    assert c.get("guarded") == "after"
    new = []
    for i in range(20):
        new.append(int(c.execute_command("LOCK.ACQUIRE", f"after:{i}", "o", 10000)))
    assert new == sorted(new) and len(set(new)) == len(new)
    assert min(new) > max(tokens), f"tokens after the restart {new[:3]}… not above {max(tokens)}"
    # The same owner re-acquiring after the restart keeps its token.
    assert int(c.execute_command("LOCK.ACQUIRE", "held", "keeper", 60000)) == held
    assert int(c.execute_command("LOCK.RELEASE", "held", "keeper")) == 1
    regrant = int(c.execute_command("LOCK.ACQUIRE", "held", "second", 60000))
    assert regrant > max(new)
    with pytest.raises(redis.exceptions.ResponseError, match="^FENCED"):
        c.eval(GUARDED_SET, 2, "held", "guarded", held, "stale")
    assert c.get("guarded") == "after"
    cluster.assert_digests_equal()
    snaps = {m: [i for i, _ in cluster.node(m).snapshots()] for m in cluster.nodes}
    print(f"\ntokens before {tokens[0]}..{max(tokens)}, after the restart {min(new)}..{max(new)}; "
          f"snapshots at {snaps}")


@pytest.mark.parametrize("pause", ["client", "follower-node", "leader-node"])
def test_paused_holder_loses_lock_and_is_fenced(make_cluster, procs, pause):
    """A holder (a client process) takes `res` with a 1.5 s lease and writes
    `data` guarded by its token; a waiter on another node queues with WAIT 0.
    Then the holder is paused with SIGSTOP past its lease — its own process, the
    follower it is connected to, or the leader it is connected to. The waiter
    is granted the lock with a larger token and writes; once resumed, the old
    holder's guarded write is refused with FENCED and changes nothing, its
    RENEW and RELEASE answer 0, and the waiter still holds the lock."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    follower = cluster.followers(leader)[0]
    other = [m for m in cluster.nodes if m not in (leader, follower)][0]
    hnode = leader if pause == "leader-node" else follower
    wnode = other if pause != "client" else leader
    holder = session(procs, cluster, hnode, name=f"holder@node{hnode}")
    waiter = session(procs, cluster, wnode, name=f"waiter@node{wnode}")
    r = holder.do(10, "LOCK.ACQUIRE", "res", "h", 1500)
    t1 = r["reply"]
    assert isinstance(t1, int), r
    assert holder.do(10, "EVAL", GUARDED_SET, 2, "res", "data", t1, "h1")["reply"] == "OK"
    waiter.call("wait", "LOCK.ACQUIRE", "res", "w", 30000, "WAIT", 0)
    wait_waiters(cluster, "res", 1, m=wnode)
    paused_at = time.monotonic()
    if pause == "client":
        holder.sigstop()
    else:
        cluster.sigstop(hnode)
    try:
        got = waiter.next(20, "the waiter's grant")
        assert "reply" in got, got
        t2 = got["reply"]
        assert isinstance(t2, int) and t2 > t1, (t1, got)
        waited = got["t"] - paused_at
        assert waiter.do(10, "EVAL", GUARDED_SET, 2, "res", "data", t2, "w1")["reply"] == "OK"
    finally:
        if pause == "client":
            holder.sigcont()
        else:
            cluster.sigcont(hnode)
    if pause != "client":
        cluster.wait_stable(timeout=30)
    # The late writer: retried on transient errors (the write is guarded, so a
    # repeat can change nothing either).
    end = time.monotonic() + 30
    while True:
        late = holder.do(20, "EVAL", GUARDED_SET, 2, "res", "data", t1, "h-late")
        if "error" in late and late["kind"] == "other":
            break
        assert "error" in late, f"the late guarded write was accepted: {late}"
        assert time.monotonic() < end, f"no definite reply to the late write: {late}"
        time.sleep(0.2)
    assert late["error"].startswith("FENCED"), late
    assert holder.do(10, "LOCK.RENEW", "res", "h", 60000)["reply"] == 0
    assert holder.do(10, "LOCK.RELEASE", "res", "h")["reply"] == 0
    c = cluster.client(cluster.leader())
    assert c.get("data") == "w1"
    info = lock_info(c, "res")
    assert info and info["owner"] == "w" and int(info["token"]) == t2, info
    print(f"\npause {pause}: token {t1} -> {t2}, waiter granted {waited:.2f}s after the pause; "
          f"late write: {late['error'][:60]}")


# =====================================================================================
# 3. Fair waiting
# =====================================================================================


def test_waiters_granted_in_log_order_across_nodes(make_cluster, procs):
    """A holder on the leader; six waiters (processes) on the followers and the
    leader, started one at a time, each confirmed queued (LOCK.INFO waiters)
    before the next. Releasing one at a time grants them in exactly that order
    with strictly increasing tokens, and LOCK.INFO names each new owner."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    f1, f2 = cluster.followers(leader)
    c = cluster.client(leader)
    t0 = int(c.execute_command("LOCK.ACQUIRE", "fifo", "holder", 60000))
    order = [f1, f2, leader, f2, f1, leader]
    ws = []
    for i, m in enumerate(order):
        w = session(procs, cluster, m, name=f"waiter{i}@node{m}")
        w.call("acq", "LOCK.ACQUIRE", "fifo", f"w{i}", 60000, "WAIT", 0)
        wait_waiters(cluster, "fifo", i + 1, m=order[(i + 1) % len(order)])
        ws.append(w)
    assert c.execute_command("LOCK.RELEASE", "fifo", "holder") == 1
    tokens = [t0]
    for i, w in enumerate(ws):
        got = w.next(15, f"waiter {i}'s grant")
        assert "reply" in got and isinstance(got["reply"], int), got
        for j, other in enumerate(ws[i + 1:], start=i + 1):
            early = other.pending()
            assert early is None, f"waiter {j} answered before waiter {i} released: {early}"
        tokens.append(got["reply"])
        info = lock_info(c, "fifo")
        assert info["owner"] == f"w{i}" and int(info["token"]) == got["reply"], info
        assert int(info["waiters"]) == len(ws) - i - 1, info
        rel = w.do(10, "LOCK.RELEASE", "fifo", f"w{i}")
        assert rel.get("reply") == 1, rel
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens), tokens
    assert lock_info(c, "fifo") is None
    print(f"\nwaiters on nodes {order} granted in order; tokens {tokens}")


def test_disconnected_waiter_is_skipped(make_cluster, procs):
    """Waiters w0..w4 on several nodes. w1's process is killed (its connection
    closes) and the queue shrinks; w3's process is killed right before w2
    releases (its removal may race the grant). The lock goes w0, w2, w4, each
    well within the 10 s pending timeout, and never to a dead waiter for good."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    f1, f2 = cluster.followers(leader)
    c = cluster.client(leader)
    c.execute_command("LOCK.ACQUIRE", "q", "holder", 60000)
    order = [f1, f2, leader, f1, f2]
    ws = []
    for i, m in enumerate(order):
        w = session(procs, cluster, m, name=f"waiter{i}@node{m}")
        w.call("acq", "LOCK.ACQUIRE", "q", f"w{i}", 60000, "WAIT", 0)
        wait_waiters(cluster, "q", i + 1)
        ws.append(w)
    ws[1].kill9()
    wait_waiters(cluster, "q", 4)
    assert c.execute_command("LOCK.RELEASE", "q", "holder") == 1
    got = ws[0].next(10, "w0's grant")
    assert isinstance(got.get("reply"), int), got
    assert ws[0].do(10, "LOCK.RELEASE", "q", "w0")["reply"] == 1
    got2 = ws[2].next(5, "w2's grant (w1 disconnected)")
    assert isinstance(got2.get("reply"), int) and got2["reply"] > got["reply"], got2
    ws[3].kill9()
    released = time.monotonic()
    assert ws[2].do(10, "LOCK.RELEASE", "q", "w2")["reply"] == 1
    got4 = ws[4].next(5, "w4's grant (w3 disconnected just before the release)")
    assert isinstance(got4.get("reply"), int) and got4["reply"] > got2["reply"], got4
    info = lock_info(c, "q")
    assert info["owner"] == "w4" and int(info["waiters"]) == 0, info
    print(f"\ngrants w0 {got['reply']}, w2 {got2['reply']}, w4 {got4['reply']} "
          f"({got4['t'] - released:.2f}s after w2's release)")


def test_wait_timeouts_and_lease_expiry(make_cluster, procs):
    """WAIT 300 (on the leader) and WAIT 800 (on a follower) answer nil after
    their timeout (not before, and within 1.5 s after); the queue is empty
    again and a later release does not grant the lock to them. A lease that
    runs out (holder never releases, 1 s) grants the lock to a WAIT 0 waiter
    about then, with a larger token."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    f1 = cluster.followers(leader)[0]
    c = cluster.client(leader)
    t0 = int(c.execute_command("LOCK.ACQUIRE", "to", "holder", 60000))
    a = session(procs, cluster, leader, name="wait300")
    b = session(procs, cluster, f1, name="wait800")
    a.call("a", "LOCK.ACQUIRE", "to", "a", 60000, "WAIT", 300)
    b.call("b", "LOCK.ACQUIRE", "to", "b", 60000, "WAIT", 800)
    ra = a.next(10, "WAIT 300's nil")
    rb = b.next(10, "WAIT 800's nil")
    for r, ms in ((ra, 300), (rb, 800)):
        assert "reply" in r and r["reply"] is None, r
        took = (r["t"] - r["t0"]) * 1000
        assert ms - 20 <= took <= ms + 1500, f"WAIT {ms} answered after {took:.0f} ms"
    wait_waiters(cluster, "to", 0)
    assert c.execute_command("LOCK.RELEASE", "to", "holder") == 1
    assert lock_info(c, "to") is None, "a timed-out waiter was granted the lock"
    # Lease expiry grants the next waiter.
    t1 = int(c.execute_command("LOCK.ACQUIRE", "to", "short", 1000))
    assert t1 > t0
    granted_from = time.monotonic()
    b.call("b2", "LOCK.ACQUIRE", "to", "b2", 60000, "WAIT", 0)
    got = b.next(15, "the grant at lease expiry")
    assert isinstance(got.get("reply"), int) and got["reply"] > t1, got
    after = got["t"] - granted_from
    assert 0.7 <= after <= 5.0, f"granted {after:.2f}s after a 1 s lease began"
    assert lock_info(c, "to")["owner"] == "b2"
    print(f"\nWAIT 300 took {(ra['t'] - ra['t0']) * 1000:.0f} ms, WAIT 800 "
          f"{(rb['t'] - rb['t0']) * 1000:.0f} ms; expiry grant after {after:.2f}s")


def test_waiter_on_dead_node_is_skipped(make_cluster, procs):
    """A waiter queued on a follower that is then killed -9, and a second
    waiter on the leader. The release grants the dead waiter's entry first
    (nobody can confirm it); the leader gives the grant back after the 10 s
    pending timeout and the live waiter gets the lock, well before its own
    lease of the dead waiter (60 s) would have run out."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    f1 = cluster.followers(leader)[0]
    c = cluster.client(leader)
    c.execute_command("LOCK.ACQUIRE", "dead", "holder", 60000)
    gone = session(procs, cluster, f1, name="waiter@doomed")
    gone.call("g", "LOCK.ACQUIRE", "dead", "gone", 60000, "WAIT", 0)
    wait_waiters(cluster, "dead", 1)
    live = session(procs, cluster, leader, name="waiter@leader")
    live.call("l", "LOCK.ACQUIRE", "dead", "live", 60000, "WAIT", 0)
    wait_waiters(cluster, "dead", 2)
    cluster.kill9(f1)
    released = time.monotonic()
    assert c.execute_command("LOCK.RELEASE", "dead", "holder") == 1
    got = live.next(25, "the live waiter's grant")
    assert isinstance(got.get("reply"), int), got
    after = got["t"] - released
    assert after <= 20, f"the live waiter waited {after:.1f}s"
    assert lock_info(c, "dead")["owner"] == "live"
    print(f"\nlive waiter granted {after:.1f}s after the release (dead waiter first)")


def test_lock_queue_survives_snapshot_install_and_leader_kill(make_cluster, procs):
    """A lock held through follower f1 with four waiters queued on f1; the
    other follower is killed, 2000 writes and 50 grants go by (snapshots
    every 100 entries), and it restarts and catches up by a snapshot: the
    replicas' digests (locks and waiters included) agree. Then the leader is
    killed -9. Under the new leader the lock still has its holder, the queue
    its order: releasing one at a time grants w0..w3 in order, with tokens
    above every token granted before."""
    cluster = make_cluster(3, args=["--snapshot-every", "100"])
    leader = cluster.leader()
    f1, f2 = cluster.followers(leader)
    h = cluster.client(f1)
    t0 = int(h.execute_command("LOCK.ACQUIRE", "sq", "holder", 120000))
    ws = []
    for i in range(4):
        w = session(procs, cluster, f1, name=f"waiter{i}@f1")
        w.call("acq", "LOCK.ACQUIRE", "sq", f"w{i}", 120000, "WAIT", 0)
        wait_waiters(cluster, "sq", i + 1, m=f1)
        ws.append(w)
    cluster.wait_applied_equal()
    cluster.kill9(f2)
    lc = cluster.client(leader)
    before = [t0]
    for i in range(2000):
        assert lc.set(f"k:{i}", i) is True
        if i % 40 == 0:
            before.append(int(lc.execute_command("LOCK.ACQUIRE", f"other:{i}", "o", 1000)))
            assert lc.execute_command("LOCK.RELEASE", f"other:{i}", "o") == 1
    cluster.restart(f2)
    cluster.wait_voter(f2, timeout=45)
    log = cluster.node(f2).log().split("=== start #2")[-1]
    assert "received snapshot stream" in log, "the restarted follower caught up without a snapshot"
    cluster.assert_digests_equal(timeout=45)
    lc.close()
    cluster.kill9(leader)
    new_leader = cluster.leader(timeout=30)
    info = deadline_wait("LOCK.INFO under the new leader", lambda: lock_info(h, "sq"), 30)
    assert info["owner"] == "holder" and int(info["token"]) == t0 and int(info["waiters"]) == 4
    assert definite(lambda: h.execute_command("LOCK.RELEASE", "sq", "holder"), "release") == 1
    tokens = []
    for i, w in enumerate(ws):
        got = w.next(20, f"waiter {i}'s grant")
        assert isinstance(got.get("reply"), int), got
        for j, other in enumerate(ws[i + 1:], start=i + 1):
            assert other.pending() is None, f"waiter {j} answered before waiter {i} released"
        tokens.append(got["reply"])
        assert w.do(20, "LOCK.RELEASE", "sq", f"w{i}")["reply"] == 1
    assert tokens == sorted(tokens) and len(set(tokens)) == 4, tokens
    assert tokens[0] > max(before), (tokens, max(before))
    cluster.assert_digests_equal(timeout=45)
    print(f"\nnew leader {new_leader} (snapshot-installed node: {f2}); grants {tokens} "
          f"after tokens up to {max(before)}")


def test_uncertain_confirmation_never_gives_the_lock_to_two_clients(make_cluster, procs):
    """Waiter w on follower f1 and w3 on follower f2 queue behind a holder. f1
    is paused, the holder releases (the grant to w commits with the leader and
    f2, and the leader's AppendEntries carrying it wait in f1's socket), the
    leader and f2 are paused, f1 resumes: it applies the grant and forwards
    w's confirmation (Op::Delivered) to the paused leader, which never
    answers, and f1 alone cannot elect another (which would take the
    confirmation), so it ends UNCERTAIN once f1 has had no leader for its
    leaderless timeout. Whatever w is told then, the
    lock must not go to w3 while w's 60 s lease runs: either w gets no token,
    or w holds the lock (FENCE accepts its token) until it releases it.

    Before the fix (ea4a266 and after), w gets its token and 10 s after the grant the leader's purge gives the
    "unconfirmed" grant back and w3 gets the lock: two clients hold it."""
    cluster = make_cluster(3)
    # Whether the leader's AppendEntries with the commit are already in f1's
    # socket when the leader stops depends on its replication backoff: the
    # scenario is tried on fresh lock names until w's answer comes after the
    # request-timeout (the UNCERTAIN path); then the check runs.
    reached = 0
    for attempt in range(6):
        name = f"x{attempt}"
        leader = cluster.wait_stable(timeout=30)
        f1, f2 = cluster.followers(leader)
        c = cluster.client(leader)
        c.execute_command("LOCK.ACQUIRE", name, "holder", 60000)
        w = session(procs, cluster, f1, name=f"w@f1#{attempt}")
        w.call("w", "LOCK.ACQUIRE", name, "w", 60000, "WAIT", 0)
        wait_waiters(cluster, name, 1)
        w3 = session(procs, cluster, f2, name=f"w3@f2#{attempt}")
        w3.call("w3", "LOCK.ACQUIRE", name, "w3", 60000, "WAIT", 0)
        wait_waiters(cluster, name, 2)
        cluster.sigstop(f1)
        assert c.execute_command("LOCK.RELEASE", name, "holder") == 1
        granted = time.monotonic()
        assert lock_info(c, name)["owner"] == "w"
        c.close()
        # Past a few heartbeats: the commit of the grant may be in f1's socket.
        deadline_wait("0.5 s of heartbeats", lambda: time.monotonic() - granted > 0.5, 2)
        cluster.sigstop(leader)
        cluster.sigstop(f2)
        try:
            cluster.sigcont(f1)
            try:
                got = w.next(10, "w's answer")
            except AssertionError:
                # The grant's commit had not reached f1 before the leader
                # stopped: w hears nothing while the others are stopped. They
                # resume about 10.5 s after the grant, just past its pending
                # timeout, so either w's confirmation commits first (w hears
                # its token, or UNCERTAIN) or the leader's purge gives the
                # unconfirmed grant back first: w3 gets the lock and w, its
                # turn gone, waits again behind w3 (test_waiter_whose_node_
                # was_stopped_past_the_pending_timeout_waits_again). Never both.
                cluster.sigcont(f2)
                cluster.sigcont(leader)
                end = time.monotonic() + 30
                got = got3 = None
                while got is None and got3 is None:
                    assert time.monotonic() < end, (
                        "neither w nor w3 was answered within 30 s of the others resuming")
                    got, got3 = w.pending(), w3.pending()
                    time.sleep(0.05)
                time.sleep(2)
                got = got if got is not None else w.pending()
                got3 = got3 if got3 is not None else w3.pending()
                tokens = [g for g in (got, got3) if g is not None and isinstance(g.get("reply"), int)]
                assert len(tokens) <= 1, f"w ({got}) and w3 ({got3}) both hold the lock"
                continue
            if "error" in got:
                # The fixed behaviour: w hears that the outcome is unknown and
                # holds no token. Whichever way the confirmation went, exactly
                # one of w (re-acquiring as its owner) and w3 holds the lock.
                assert got["error"].startswith("UNCERTAIN"), got
                cluster.sigcont(f2)
                cluster.sigcont(leader)
                c2 = cluster.client(f2)
                retry = definite(
                    lambda: c2.execute_command("LOCK.ACQUIRE", name, "w", 60000), "w's retry")
                if retry is None:
                    got3 = w3.next(20, "w3's grant")
                    assert isinstance(got3.get("reply"), int), got3
                    assert lock_info(c2, name)["owner"] == "w3"
                    assert definite(lambda: c2.execute_command(
                        "LOCK.FENCE", name, got3["reply"]), "LOCK.FENCE") in ("OK", True)
                else:
                    assert lock_info(c2, name)["owner"] == "w"
                    end = time.monotonic() + 12
                    while time.monotonic() < end:
                        assert w3.pending() is None, (
                            f"w re-acquired token {retry}, and w3 got the lock too")
                        time.sleep(0.2)
                reached += 1
                if reached == 2:
                    return
                continue
            token = got["reply"]
            cluster.sigcont(f2)
            cluster.sigcont(leader)
            # w was told it holds the lock for 60 s: for the next 15 s (past the
            # 10 s pending timeout) nobody else may get it.
            end = granted + 15
            while time.monotonic() < end:
                early = w3.pending()
                assert early is None, (
                    f"w got token {token} ({got}) while the leader was stopped, then w3 "
                    f"was granted the lock too while w's 60 s lease ran: {early}")
                time.sleep(0.2)
            c2 = cluster.client(f2)
            assert definite(lambda: c2.execute_command("LOCK.FENCE", name, token),
                            "LOCK.FENCE") in ("OK", True)
            reached += 1
            if reached == 2:
                return
        finally:
            cluster.sigcont(f2)
            cluster.sigcont(leader)
    if not reached:
        raise RuntimeError("the scenario (an uncertain Op::Delivered) was not reached in 6 tries")


def test_owner_reacquiring_after_its_node_died_keeps_the_lock(make_cluster):
    """Client X waits for `x` (owner ox, WAIT 0) on follower f1; f1 is killed
    -9, so X's connection breaks. The holder releases: the engine grants the
    lock to X's queued request (nobody can confirm it now). X reconnects to f2
    and retries with the same owner, as the docs invite (the owner re-acquiring
    gets the same token): it gets the token with a fresh 60 s lease. For those
    60 s nobody else may acquire `x`, and X's RENEW must answer 1.

    Before the fix (ea4a266 and after), the unconfirmed grant is given back 10 s after the release (the
    pending timeout), which frees the lock X now holds: Y acquires it with a
    new token while X's lease runs, and X's RENEW answers 0."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    f1, f2 = cluster.followers(leader)
    c = cluster.client(leader)
    c.execute_command("LOCK.ACQUIRE", "x", "holder", 60000)
    outcome = {}

    def first_try():
        try:
            outcome["reply"] = cluster.client(f1, socket_timeout=60).execute_command(
                "LOCK.ACQUIRE", "x", "ox", 60000, "WAIT", 0)
        except redis.exceptions.RedisError as e:
            outcome["error"] = error_kind(e)

    t = threading.Thread(target=first_try, daemon=True)
    t.start()
    wait_waiters(cluster, "x", 1)
    cluster.kill9(f1)
    t.join(10)
    assert outcome.get("error") == "connection", outcome
    released = time.monotonic()
    assert c.execute_command("LOCK.RELEASE", "x", "holder") == 1
    x = cluster.client(f2)
    token = definite(lambda: x.execute_command("LOCK.ACQUIRE", "x", "ox", 60000, "WAIT", 0),
                     "X's retry")
    assert isinstance(token, int), token
    y = cluster.client(leader)
    end = released + 15
    while time.monotonic() < end:
        other = y.execute_command("LOCK.ACQUIRE", "x", "oy", 60000)
        assert other is None, (
            f"X holds token {token} (60 s lease, acquired {time.monotonic() - released:.1f}s "
            f"ago) but Y acquired the lock too, token {other}; X's RENEW now answers "
            f"{x.execute_command('LOCK.RENEW', 'x', 'ox', 60000)}")
        time.sleep(0.25)
    assert x.execute_command("LOCK.RENEW", "x", "ox", 60000) == 1
    assert lock_info(y, "x")["owner"] == "ox"


def test_grant_confirmed_after_its_lease_ended_is_not_handed_over(make_cluster, procs):
    """Waiter w (1 s lease) on follower f1 and w3 on follower f2 queue behind a
    holder; f1 is paused; the holder releases: the lock is granted to w, whose
    node cannot confirm. The 1 s lease runs out and the lock goes to w3. Then f1
    resumes and confirms w's grant. w must not be told it holds the lock (the
    lock is w3's, and w cannot know its lease is over: it asked long before
    the grant): it must get no token, or a token that is the current holder's
    (LOCK.FENCE accepts it) and w3 must not be holding it too.

    Before the fix (ea4a266 and after), w's confirmation succeeds (the grant is still "pending", for 10 s)
    and w gets its old token while w3 holds the lock."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    f1, f2 = cluster.followers(leader)
    c = cluster.client(leader)
    c.execute_command("LOCK.ACQUIRE", "x", "holder", 60000)
    w = session(procs, cluster, f1, name="w@f1")
    w.call("w", "LOCK.ACQUIRE", "x", "w", 1000, "WAIT", 0)
    wait_waiters(cluster, "x", 1)
    w3 = session(procs, cluster, f2, name="w3@f2")
    w3.call("w3", "LOCK.ACQUIRE", "x", "w3", 60000, "WAIT", 0)
    wait_waiters(cluster, "x", 2)
    cluster.sigstop(f1)
    try:
        assert c.execute_command("LOCK.RELEASE", "x", "holder") == 1
        assert lock_info(c, "x")["owner"] == "w"
        got3 = w3.next(15, "w3's grant when w's lease ends")
        assert isinstance(got3.get("reply"), int), got3
    finally:
        cluster.sigcont(f1)
    # w: an answer once f1 confirms, or none (its request waits again).
    try:
        got = w.next(5, "w's answer")
    except AssertionError:
        got = None
    holder = lock_info(c, "x")
    if got is not None and isinstance(got.get("reply"), int):
        assert holder["owner"] == "w" and holder["token"] == got["reply"], (
            f"w was handed token {got['reply']} after its lease ended, while {holder['owner']} "
            f"holds the lock with token {holder['token']}")
    assert holder["owner"] == "w3" or holder["owner"] == "w", holder


def test_waiter_disconnected_without_quorum_is_skipped(make_cluster, procs):
    """A waiter z on follower f1 disconnects (its process is killed) while f1
    cannot reach a quorum (leader killed, f2 paused), so f1's Op::Unblock for
    it fails. Once the cluster is back, z is still queued (LOCK.INFO waiters 2).
    The holder's release must still reach the live waiter w at once: the grant
    to z, a client f1 knows is gone, should be released right away.

    Before the fix (ea4a266 and after), the lock goes to z (LOCK.INFO names it) and w waits the 10 s pending
    timeout."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    f1, f2 = cluster.followers(leader)
    c = cluster.client(f2)
    c.execute_command("LOCK.ACQUIRE", "x", "holder", 60000)
    z = session(procs, cluster, f1, name="z@f1")
    z.call("z", "LOCK.ACQUIRE", "x", "z", 60000, "WAIT", 0)
    wait_waiters(cluster, "x", 1, m=f2)
    w = session(procs, cluster, f2, name="w@f2")
    w.call("w", "LOCK.ACQUIRE", "x", "w", 60000, "WAIT", 0)
    wait_waiters(cluster, "x", 2, m=f2)
    cluster.kill9(leader)
    cluster.sigstop(f2)
    try:
        z.kill9()
        # f1's Op::Unblock for z gives up after request-timeout (5 s): nothing
        # observable marks it, so this one wait is on the clock.
        end = time.monotonic() + 6.0
        deadline_wait("f1's request-timeout to pass", lambda: time.monotonic() >= end, 10)
    finally:
        cluster.sigcont(f2)
    cluster.leader(timeout=30)
    c = cluster.client(f2)
    released = time.monotonic()
    assert definite(lambda: c.execute_command("LOCK.RELEASE", "x", "holder"), "release") == 1
    got = w.next(20, "w's grant")
    after = got["t"] - released
    if got.get("kind") == "uncertain":
        # f2 has just resumed and is still learning the new leader: w's
        # confirmation can end with an unknown outcome (a lock is never
        # handed over unconfirmed). The grant reached w all the same, not z:
        # re-acquiring as w gets the lock (its token if the confirmation was
        # applied after all, a new one if the grant was given back).
        retry = definite(lambda: c.execute_command("LOCK.ACQUIRE", "x", "w", 60000), "w's retry")
        assert isinstance(retry, int), retry
        assert lock_info(c, "x")["owner"] == "w"
    else:
        assert isinstance(got.get("reply"), int), got
    assert after < 3, f"w was answered {after:.1f}s after the release (z was gone)"


# =====================================================================================
# 4. Replies and errors
# =====================================================================================


@pytest.mark.parametrize("via", ["leader", "follower"])
@pytest.mark.parametrize("protocol", [2, 3])
def test_replies_and_errors(make_cluster, via, protocol):
    """Every LOCK.* reply and error through the leader or a follower, in RESP2
    and RESP3: grant, nil when held, the owner re-acquiring (same token, lease
    extended), RENEW, RELEASE, INFO (map), FENCE (OK / FENCED), bad ttl and
    WAIT arguments, arity; in MULTI (never blocks; two grants in one entry get
    distinct increasing tokens) and in scripts (a guarded SET)."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    m = leader if via == "leader" else cluster.followers(leader)[0]
    c = cluster.client(m, protocol=protocol)
    err = redis.exceptions.ResponseError

    t = c.execute_command("LOCK.ACQUIRE", "L", "a", 5000)
    assert isinstance(t, int) and t > 0
    assert c.execute_command("LOCK.ACQUIRE", "L", "b", 5000) is None
    assert c.execute_command("LOCK.ACQUIRE", "L", "b", 5000, "WAIT", 50) is None
    # The timed-out waiter leaves the queue by an entry its node proposes after
    # answering nil, so LOCK.INFO may count it for a moment.
    deadline_wait("the timed-out waiter to leave", lambda: waiters(c, "L") == 0, 10)
    info = lock_info(c, "L")
    assert set(info) == {"owner", "token", "ttl", "waiters"}, info
    assert info["owner"] == "a" and info["token"] == t and info["waiters"] == 0
    assert 0 < info["ttl"] <= 5000
    if protocol == 3:
        assert isinstance(c.execute_command("LOCK.INFO", "L"), dict)
    # Re-acquire by the owner: same token, lease extended.
    assert c.execute_command("LOCK.ACQUIRE", "L", "a", 60000) == t
    assert lock_info(c, "L")["ttl"] > 5000
    assert c.execute_command("LOCK.ACQUIRE", "L", "a", 60000, "WAIT", 0) == t
    # RENEW
    assert c.execute_command("LOCK.RENEW", "L", "a", 120000) == 1
    assert 60000 < lock_info(c, "L")["ttl"] <= 120000
    assert c.execute_command("LOCK.RENEW", "L", "b", 1000) == 0
    assert c.execute_command("LOCK.RENEW", "nolock", "a", 1000) == 0
    # FENCE
    assert c.execute_command("LOCK.FENCE", "L", t) in ("OK", True)
    for bad in (t - 1, t + 1, 0, -1):
        with pytest.raises(err, match=r"^FENCED token -?\d+ is not the current holder of lock 'L'"):
            c.execute_command("LOCK.FENCE", "L", bad)
    with pytest.raises(err, match="^FENCED"):
        c.execute_command("LOCK.FENCE", "nolock", 1)
    with pytest.raises(err, match="not an integer"):
        c.execute_command("LOCK.FENCE", "L", "abc")
    # Guarded writes in a script.
    assert c.eval(GUARDED_SET, 2, "L", "k", t, "v1") in ("OK", True)
    with pytest.raises(err, match="^FENCED"):
        c.eval(GUARDED_SET, 2, "L", "k", t + 1, "v2")
    assert c.get("k") == "v1"
    # RELEASE
    assert c.execute_command("LOCK.RELEASE", "L", "b") == 0
    assert c.execute_command("LOCK.RELEASE", "L", "a") == 1
    assert c.execute_command("LOCK.RELEASE", "L", "a") == 0
    assert c.execute_command("LOCK.INFO", "L") is None
    with pytest.raises(err, match="^FENCED"):
        c.execute_command("LOCK.FENCE", "L", t)
    # A new grant gets a larger token.
    t2 = c.execute_command("LOCK.ACQUIRE", "L", "b", 5000)
    assert t2 > t
    # Errors.
    bad_args = [
        (("LOCK.ACQUIRE", "L", "a", 0), "invalid ttl"),
        (("LOCK.ACQUIRE", "L", "a", -5), "invalid ttl"),
        (("LOCK.ACQUIRE", "L", "a", "ten"), "not an integer"),
        (("LOCK.ACQUIRE", "L", "a", "1.5"), "not an integer"),
        (("LOCK.ACQUIRE", "L", "a", 1000, "WAIT"), "syntax error"),
        (("LOCK.ACQUIRE", "L", "a", 1000, "WAIT", "x"), "not an integer"),
        (("LOCK.ACQUIRE", "L", "a", 1000, "WAIT", -1), "negative"),
        (("LOCK.ACQUIRE", "L", "a", 1000, "NOWAIT", 5), "syntax error"),
        (("LOCK.ACQUIRE", "L", "a", 1000, "WAIT", 5, "x"), "syntax error"),
        (("LOCK.ACQUIRE", "L", "a"), "wrong number of arguments"),
        (("LOCK.RELEASE", "L"), "wrong number of arguments"),
        (("LOCK.RELEASE", "L", "a", "x"), "wrong number of arguments"),
        (("LOCK.RENEW", "L", "a"), "wrong number of arguments"),
        (("LOCK.RENEW", "L", "a", 0), "invalid ttl"),
        (("LOCK.RENEW", "L", "a", "x"), "not an integer"),
        (("LOCK.INFO",), "wrong number of arguments"),
        (("LOCK.INFO", "L", "x"), "wrong number of arguments"),
        (("LOCK.FENCE", "L"), "wrong number of arguments"),
    ]
    for args, text in bad_args:
        with pytest.raises(err, match=text):
            c.execute_command(*args)
    assert lock_info(c, "L")["owner"] == "b", "an error changed the lock"
    # WAIT is case-insensitive.
    assert c.execute_command("LOCK.ACQUIRE", "L2", "a", 1000, "wait", 10) is not None
    # MULTI: never blocks; two grants in one entry get increasing tokens.
    pipe = c.pipeline(transaction=True)
    pipe.execute_command("LOCK.ACQUIRE", "M1", "x", 5000)
    pipe.execute_command("LOCK.ACQUIRE", "M2", "x", 5000)
    pipe.execute_command("LOCK.ACQUIRE", "L", "other", 5000, "WAIT", 0)
    pipe.execute_command("LOCK.INFO", "M1")
    r1, r2, r3, r4 = pipe.execute()
    assert isinstance(r1, int) and isinstance(r2, int) and r2 == r1 + 1 and r1 > t2, (r1, r2)
    assert r3 is None
    assert info_map(r4)["token"] == r1
    nxt = c.execute_command("LOCK.ACQUIRE", "M3", "x", 5000)
    assert nxt > r2
    # In a script: LOCK.ACQUIRE never blocks there either.
    assert c.eval("return redis.call('LOCK.ACQUIRE', KEYS[1], 'z', 1000, 'WAIT', 0)", 1, "L") is None
    # Lock names are not keys.
    assert c.exists("L", "M1") == 0
    c.close()
    cluster.assert_digests_equal()


# =====================================================================================
# 5. Many processes, one counter
# =====================================================================================


def test_counter_under_lock_is_exact(make_cluster, procs):
    """Ten processes (over the three nodes), each 20 times: LOCK.ACQUIRE ctr-lock
    WAIT 0, GET ctr, SET ctr v+1, LOCK.RELEASE. The counter ends at exactly 200,
    every value 1..200 was written once, each release answered 1, tokens are
    unique, and in the order of the values written (the grant order) the tokens
    strictly increase."""
    cluster = make_cluster(3)
    members = sorted(cluster.nodes)
    n, rounds = 10, 20
    workers = [Proc(procs, "counter", str(cluster.node(members[i % 3]).resp_port), str(i),
                    "ctr-lock", "ctr", str(rounds), name=f"counter{i}") for i in range(n)]
    for w in workers:
        w.ready()
    start = time.monotonic()
    for w in workers:
        w.go()
    lines = []
    for i, w in enumerate(workers):
        mine = []
        while True:
            line = w.next(300, f"counter {i}'s progress")
            if line.get("done"):
                break
            mine.append(line)
        assert len(mine) == rounds
        toks = [x["token"] for x in mine]
        assert toks == sorted(toks) and len(set(toks)) == rounds, f"worker {i}: {toks}"
        lines += mine
    took = time.monotonic() - start
    c = cluster.client(cluster.leader())
    assert int(c.get("ctr")) == n * rounds
    written = sorted(x["wrote"] for x in lines)
    assert written == list(range(1, n * rounds + 1)), "a value was written twice or skipped"
    assert all(x["released"] == 1 for x in lines)
    by_value = sorted(lines, key=lambda x: x["wrote"])
    tokens = [x["token"] for x in by_value]
    assert len(set(tokens)) == len(tokens)
    assert all(a < b for a, b in zip(tokens, tokens[1:])), "tokens not increasing in grant order"
    assert c.execute_command("LOCK.INFO", "ctr-lock") is None
    print(f"\n{n} processes x {rounds} increments under the lock in {took:.1f}s "
          f"({n * rounds / took:.0f}/s); tokens {tokens[0]}..{tokens[-1]}")


# =====================================================================================
# 5b. Conditional writes (DELIFEQ, DELEX, DIGEST, SET … IFEQ, INCREX) for the
#     users' own lock and rate-limit idioms
# =====================================================================================


def _int_pair(reply):
    return [int(x) for x in reply]


@pytest.mark.parametrize("via", ["leader", "follower"])
def test_conditional_writes_for_the_redis_lock_idiom(make_cluster, via):
    """The Redis 8.4 / Valkey 9 conditional writes as a lock uses them, through
    the leader or a follower: safe release (DELIFEQ, DELEX IFEQ/IFDEQ), renewal
    by compare-and-set (SET … IFEQ … PX), DIGEST equal on every node, INCREX
    as a bounded rate limiter; errors for wrong types and bad digests; the
    replicas agree afterwards."""
    cluster = make_cluster(3)
    leader = cluster.leader()
    m = leader if via == "leader" else cluster.followers(leader)[0]
    c = cluster.client(m)
    err = redis.exceptions.ResponseError
    assert c.set("lk", "tokA", nx=True, px=30000) is True
    assert c.set("lk", "tokB", nx=True, px=30000) is None
    assert c.execute_command("DELIFEQ", "lk", "tokB") == 0
    assert c.get("lk") == "tokA"
    # Renew only if still ours.
    assert c.execute_command("SET", "lk", "tokA", "IFEQ", "tokA", "PX", 60000) in ("OK", True)
    assert 30000 < c.pttl("lk") <= 60000
    assert c.execute_command("SET", "lk", "tokB", "IFEQ", "tokB", "PX", 1000) is None
    assert c.get("lk") == "tokA" and c.pttl("lk") > 30000
    # DIGEST: 16 hex digits, the same on every node.
    d = c.execute_command("DIGEST", "lk")
    assert isinstance(d, str) and len(d) == 16 and int(d, 16) >= 0
    for other in cluster.nodes:
        assert cluster.client(other).execute_command("DIGEST", "lk") == d
    assert c.execute_command("DIGEST", "missing") is None
    wrong = "0" * 16 if d != "0" * 16 else "1" * 16
    assert c.execute_command("DELEX", "lk", "IFDEQ", wrong) == 0
    with pytest.raises(err, match="16 hexadecimal"):
        c.execute_command("DELEX", "lk", "IFDEQ", "abc")
    assert c.execute_command("DELEX", "lk", "IFNE", "tokA") == 0
    assert c.execute_command("DELEX", "lk", "IFDEQ", d.upper()) == 1
    assert c.get("lk") is None
    # DELIFEQ: release, twice, missing, wrong type.
    assert c.set("lk", "tokC", nx=True, px=30000) is True
    assert c.execute_command("DELIFEQ", "lk", "tokC") == 1
    assert c.execute_command("DELIFEQ", "lk", "tokC") == 0
    c.sadd("aset", "tokC")
    with pytest.raises(err, match="WRONGTYPE"):
        c.execute_command("DELIFEQ", "aset", "tokC")
    with pytest.raises(err, match="string type"):
        c.execute_command("DELEX", "aset", "IFEQ", "tokC")
    assert c.execute_command("DELEX", "aset") == 1
    # INCREX as a rate limiter: at most 3 per window.
    got = [_int_pair(c.execute_command("INCREX", "rl", "BYINT", 1, "UBOUND", 3, "EX", 60, "ENX"))
           for _ in range(4)]
    assert got == [[1, 1], [2, 1], [3, 1], [3, 0]], got
    assert 0 < c.ttl("rl") <= 60
    with pytest.raises(err):
        c.execute_command("DELIFEQ", "lk")
    c.close()
    cluster.assert_digests_equal()


def test_setnx_delifeq_counter_is_exact(make_cluster, procs):
    """The users' idiom, done safely, from ten processes over the three nodes:
    20 times each SET lock <token> NX PX 30000 (polled), GET/SET a counter,
    DELIFEQ lock <token>. The counter ends at exactly 200, every value was
    written once, and every DELIFEQ answered 1 (no release ever hit another
    holder's lock)."""
    cluster = make_cluster(3)
    members = sorted(cluster.nodes)
    n, rounds = 10, 20
    workers = [Proc(procs, "setnx-counter", str(cluster.node(members[i % 3]).resp_port), str(i),
                    "sn-lock", "sn-ctr", str(rounds), name=f"setnx-counter{i}") for i in range(n)]
    for w in workers:
        w.ready()
    for w in workers:
        w.go()
    lines, tries = [], 0
    for i, w in enumerate(workers):
        while True:
            line = w.next(300, f"worker {i}'s progress")
            if line.get("done"):
                tries += line["tries"]
                break
            lines.append(line)
    c = cluster.client(cluster.leader())
    assert int(c.get("sn-ctr")) == n * rounds
    assert sorted(x["wrote"] for x in lines) == list(range(1, n * rounds + 1))
    assert all(x["released"] == 1 for x in lines)
    assert c.get("sn-lock") is None
    print(f"\n{n} processes x {rounds} increments with SET NX + DELIFEQ; {tries} failed SET NX polls")


# =====================================================================================
# 6. The example
# =====================================================================================


@pytest.mark.parametrize("mode", ["lock", "setnx"])
def test_migrations_example_runs_once(make_cluster, mode):
    """examples/migrations_once.py with six workers over the three nodes, and
    the first holder stalling past its lease in the middle of the migrations:
    every migration step is recorded exactly once and in order, the stalled
    worker's late progress write is refused, and the example exits 0."""
    cluster = make_cluster(3)
    ports = ",".join(str(cluster.node(m).resp_port) for m in sorted(cluster.nodes))
    argv = [sys.executable, str(REPO / "examples" / "migrations_once.py"), "--port", ports,
            "--mode", mode, "--workers", "6", "--ttl-ms", "1500", "--stall", "3",
            "--prefix", f"mig-{mode}"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=180,
                          start_new_session=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "refused" in out, out
    if mode == "setnx":
        assert "release by DELIFEQ" in out, out
    c = cluster.client(cluster.leader())
    log = c.lrange(f"mig-{mode}:applied", 0, -1)
    steps = [line.split()[0] for line in log]
    assert steps == sorted(set(steps)) and len(steps) >= 4, log
    assert c.get(f"mig-{mode}:version") == steps[-1]
    # Running it again finds nothing to do.
    again = subprocess.run(argv[:-4] + ["--prefix", f"mig-{mode}"], capture_output=True,
                           text=True, timeout=120, start_new_session=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert c.lrange(f"mig-{mode}:applied", 0, -1) == log
    print("\n" + proc.stdout[-1500:])


def test_waiter_whose_node_was_stopped_past_the_pending_timeout_waits_again(make_cluster, procs):
    """w waits on f1, w3 on f2. f1 is stopped, the holder releases: the grant
    goes to w, which nobody can confirm, and after the 10 s pending timeout the
    leader gives it back and w3 gets the lock. When f1 resumes it applies the
    grant and the give-back: w's confirmation is refused, so w is not told it
    holds the lock; it waits again, behind w3, and gets the lock (a larger
    token) once w3 releases."""
    cluster = make_cluster(3)
    leader = cluster.wait_stable(timeout=30)
    f1, f2 = cluster.followers(leader)
    c = cluster.client(leader)
    c.execute_command("LOCK.ACQUIRE", "late", "holder", 60000)
    w = session(procs, cluster, f1, name="w@f1")
    w.call("w", "LOCK.ACQUIRE", "late", "w", 60000, "WAIT", 0)
    wait_waiters(cluster, "late", 1)
    w3 = session(procs, cluster, f2, name="w3@f2")
    w3.call("w3", "LOCK.ACQUIRE", "late", "w3", 60000, "WAIT", 0)
    wait_waiters(cluster, "late", 2)
    cluster.sigstop(f1)
    assert c.execute_command("LOCK.RELEASE", "late", "holder") == 1
    got3 = w3.next(25, "w3's grant after w's went unconfirmed")
    assert isinstance(got3.get("reply"), int), got3
    assert lock_info(c, "late")["owner"] == "w3"
    cluster.sigcont(f1)
    # f1 catches up (its view of the lock is w3's), and w is queued again.
    r1 = cluster.client(f1)
    deadline_wait("f1 to see w3 holding the lock and w waiting",
                  lambda: lock_info(r1, "late")["owner"] == "w3" and waiters(r1, "late") == 1, 15)
    time.sleep(1)
    assert w.pending() is None, "w was answered while w3 holds the lock"
    assert c.execute_command("LOCK.RELEASE", "late", "w3") == 1
    got = w.next(15, "w's grant after w3 released")
    assert isinstance(got.get("reply"), int) and got["reply"] > got3["reply"], (got, got3)
    assert lock_info(c, "late")["owner"] == "w"
    r1.close()
    c.close()

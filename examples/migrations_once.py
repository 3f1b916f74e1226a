#!/usr/bin/env python3
"""Run the database migrations once across workers, done right.

Every worker of an application (web processes, job runners …) starts with
"make sure the migrations ran". Exactly one of them must run each pending
step, the others must wait until it is done, and a worker that stalls (a long
GC pause, a frozen VM, a laptop lid) after its lease ran out must not write
anything afterwards: another worker has taken over by then.

Two ways, both runnable against a local three-node cluster
(`deploy/run-local.sh` starts one on ports 6379-6381):

  --mode lock   (default) raftcache's LOCK.ACQUIRE name owner ttl WAIT ms:
                the waiters queue fairly in the cluster (no polling) and the
                grant returns a *fencing token*, a number that strictly
                increases with every grant. Each step's progress is written by
                a script that first runs LOCK.FENCE name token, so a holder
                whose lease ended is refused (-FENCED) and writes nothing.
  --mode setnx  the classic idiom, which also works on redis-server:
                SET name random-token NX PX ttl, polled with backoff; progress
                is written by a script that checks the key still holds our
                token; the lock is released with DELIFEQ where the server has
                it, else the compare-and-delete Lua script (never a plain DEL,
                which could delete the next holder's lock).

    examples/migrations_once.py [--port 6379,6380,6381] [--mode lock|setnx]
                                [--workers 4] [--ttl-ms 5000] [--stall 0]
                                [--prefix migrations] [--reset]

The example's "database" is the cache itself: each step appends
"<id> <description> by <worker> token <token>" to the list <prefix>:applied
and sets <prefix>:version, atomically and guarded. At the end the launcher
checks that every step was applied exactly once, in order, and exits 1 if
not. --stall S makes the first worker that runs step 0002 freeze for S
seconds in the middle of it, renewals included (pick S above the lease,
--ttl-ms): another worker takes over and the frozen one's late write is
refused.

What fencing does not do for you: a step's *own* side effects on another
system (an ALTER TABLE on your SQL database) are only protected if that
system checks the token too (keep the highest token seen in the schema table
and refuse a smaller one). Otherwise make every step idempotent: a worker
that froze half-way through a step may have done part of it before the next
holder runs it again.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import socket
import sys
import threading
import time
import uuid

import redis

MIGRATIONS = [
    ("0001", "create table users"),
    ("0002", "add column users.email"),
    ("0003", "backfill users.email"),
    ("0004", "create index users_email"),
    ("0005", "create table orders"),
]

# Lock mode: fence, then record the step and the version in one atomic script
# (a step already recorded is not recorded again: the script may be sent
# twice after an UNCERTAIN reply).
RECORD_FENCED = """
redis.call('LOCK.FENCE', KEYS[1], ARGV[1])
local done = redis.call('GET', KEYS[3])
if done and done >= ARGV[3] then return 'ALREADY' end
redis.call('RPUSH', KEYS[2], ARGV[2])
return redis.call('SET', KEYS[3], ARGV[3])
"""

# SET NX mode: the same, guarded by "the lock key still holds my token".
RECORD_IF_HOLDER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return redis.error_reply('LOCKLOST the lock is no longer held with this token')
end
local done = redis.call('GET', KEYS[3])
if done and done >= ARGV[3] then return 'ALREADY' end
redis.call('RPUSH', KEYS[2], ARGV[2])
return redis.call('SET', KEYS[3], ARGV[3])
"""

# SET NX mode: extend the lease only if it is still ours.
EXTEND_IF_HOLDER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# SET NX mode: the safe release (what DELIFEQ does in one command).
DELETE_IF_HOLDER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def transient(e: Exception) -> bool:
    """Errors after which a safe command may simply be sent again: no leader
    yet (CLUSTERDOWN), outcome unknown (UNCERTAIN), a lost connection."""
    return isinstance(e, TRANSIENT) or str(e).startswith(("CLUSTERDOWN", "UNCERTAIN", "TRYAGAIN"))


class LockLost(Exception):
    """Our lease ended: another worker holds the lock now."""


class Worker:
    def __init__(self, args, me: int, stall_flag):
        self.args = args
        self.me = me
        self.ports = args.ports
        self.at = me % len(self.ports)
        self.stall_flag = stall_flag
        self.r = self.connect()
        self.lock = f"{args.prefix}:lock"
        self.applied = f"{args.prefix}:applied"
        self.version = f"{args.prefix}:version"
        # Renewals stop while the worker is "frozen" (--stall).
        self.frozen = threading.Event()
        self.lost = threading.Event()
        self.holding = threading.Event()
        self.token = None

    def say(self, text: str) -> None:
        print(f"[worker {self.me} @{self.ports[self.at]}] {text}", flush=True)

    def connect(self) -> redis.Redis:
        return redis.Redis(host=self.args.host, port=self.ports[self.at], decode_responses=True,
                           socket_timeout=None, socket_connect_timeout=5)

    def call(self, *args):
        """One command, sent again after a transient error (every command sent
        through here is safe to repeat); a lost connection moves to the next
        node."""
        end = time.monotonic() + 60
        while True:
            try:
                return self.r.execute_command(*args)
            except redis.exceptions.RedisError as e:
                if not transient(e) or time.monotonic() > end:
                    raise
                if isinstance(e, TRANSIENT):
                    self.at = (self.at + 1) % len(self.ports)
                    self.r = self.connect()
                time.sleep(0.1)

    # -- the lock, two ways ---------------------------------------------------------

    def acquire(self) -> bool:
        if self.args.mode == "lock":
            # The same owner asking again (after UNCERTAIN, say) gets the same
            # grant back: safe to repeat.
            self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
            token = self.call("LOCK.ACQUIRE", self.lock, self.owner, self.args.ttl_ms,
                              "WAIT", self.args.wait_ms)
            if token is None:
                return False
            self.token = int(token)
            return True
        self.token = uuid.uuid4().hex
        end = time.monotonic() + self.args.wait_ms / 1000
        pause = 0.02
        while time.monotonic() < end:
            if self.call("SET", self.lock, self.token, "NX", "PX", self.args.ttl_ms):
                return True
            # nil after an UNCERTAIN first try may mean that try set it.
            if self.call("GET", self.lock) == self.token:
                return True
            time.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, 0.5)
        return False

    def renew(self) -> bool:
        if self.args.mode == "lock":
            return self.call("LOCK.RENEW", self.lock, self.owner, self.args.ttl_ms) == 1
        return self.call("EVAL", EXTEND_IF_HOLDER, 1, self.lock, self.token,
                         self.args.ttl_ms) == 1

    def release(self) -> None:
        if self.args.mode == "lock":
            self.call("LOCK.RELEASE", self.lock, self.owner)
        elif has_command(self.r, "DELIFEQ"):
            self.call("DELIFEQ", self.lock, self.token)
        else:
            self.call("EVAL", DELETE_IF_HOLDER, 1, self.lock, self.token)

    def record(self, step: str, description: str) -> None:
        """The step's progress, written only while we still hold the lock."""
        entry = f"{step} {description} by worker-{self.me} token {self.token}"
        script = RECORD_FENCED if self.args.mode == "lock" else RECORD_IF_HOLDER
        try:
            self.call("EVAL", script, 3, self.lock, self.applied, self.version, self.token,
                      entry, step)
        except redis.exceptions.ResponseError as e:
            if str(e).startswith(("FENCED", "LOCKLOST")):
                raise LockLost(str(e).split(" script:")[0]) from None
            raise

    def renewer(self) -> None:
        """Extends the lease every ttl/3 while we hold it (not while frozen)."""
        while self.holding.is_set():
            time.sleep(self.args.ttl_ms / 3000)
            if not self.holding.is_set() or self.frozen.is_set():
                continue
            try:
                if not self.renew():
                    self.lost.set()
                    return
            except redis.exceptions.RedisError:
                pass

    # -- the migrations ---------------------------------------------------------------

    def run(self) -> bool:
        """Returns once every migration is applied (by us or someone else)."""
        while True:
            self.say("waiting for the migrations lock")
            if not self.acquire():
                self.say("gave up waiting for the lock")
                return False
            self.say(f"holds the lock (token {self.token})")
            self.holding.set()
            self.lost.clear()
            renewer = threading.Thread(target=self.renewer, daemon=True)
            renewer.start()
            try:
                self.migrate()
                return True
            except LockLost as e:
                self.say(f"progress write refused ({e}): lost the lock; starting over")
            finally:
                self.holding.clear()
                renewer.join()
                self.release()

    def migrate(self) -> None:
        done = self.call("GET", self.version) or ""
        pending = [(s, d) for s, d in MIGRATIONS if s > done]
        if not pending:
            self.say(f"nothing to do (version {done})")
            return
        for step, description in pending:
            if self.lost.is_set():
                raise LockLost("a renewal answered 0")
            self.say(f"applying {step} {description}")
            time.sleep(self.args.step_seconds)  # the step's work
            if step == "0002" and self.args.stall and self.claim_stall():
                self.say(f"freezes for {self.args.stall}s (renewals too), lease {self.args.ttl_ms} ms")
                self.frozen.set()
                time.sleep(self.args.stall)
                self.frozen.clear()
                self.say("wakes up and records its progress")
            self.record(step, description)

    def claim_stall(self) -> bool:
        with self.stall_flag.get_lock():
            if self.stall_flag.value:
                return False
            self.stall_flag.value = 1
            return True


def has_command(r: redis.Redis, name: str) -> bool:
    """True if the server knows the command (COMMAND INFO; redis-py parses a
    known one into {name: {...}} and fails on the nil of an unknown one)."""
    try:
        info = r.execute_command("COMMAND", "INFO", name)
    except Exception:  # noqa: BLE001 (unknown command, old server, parse error)
        return False
    if isinstance(info, dict):
        return name.lower() in {str(k).lower() for k in info}
    return bool(info and info[0])


def worker_main(args, me: int, stall_flag, barrier) -> None:
    worker = Worker(args, me, stall_flag)
    barrier.wait(timeout=60)
    sys.exit(0 if worker.run() else 1)


def parse_ports(text: str):
    return [int(p) for p in text.replace(" ", "").split(",") if p]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", default="6379,6380,6381",
                    help="the nodes' ports, comma-separated; workers are spread over them "
                         "(default: %(default)s)")
    ap.add_argument("--mode", choices=["lock", "setnx"], default="lock")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--ttl-ms", type=int, default=5000, help="lease (default: %(default)s)")
    ap.add_argument("--wait-ms", type=int, default=120000,
                    help="how long a worker waits for the lock (default: %(default)s)")
    ap.add_argument("--step-seconds", type=float, default=0.2)
    ap.add_argument("--stall", type=float, default=0.0,
                    help="the first worker running step 0002 freezes this long (default: 0)")
    ap.add_argument("--prefix", default="migrations")
    ap.add_argument("--reset", action="store_true", help="forget applied migrations first")
    args = ap.parse_args()
    args.ports = parse_ports(args.port)

    r = redis.Redis(host=args.host, port=args.ports[0], decode_responses=True)
    if args.reset:
        r.delete(f"{args.prefix}:applied", f"{args.prefix}:version", f"{args.prefix}:lock")
    before = r.lrange(f"{args.prefix}:applied", 0, -1)
    if args.mode == "setnx":
        print("release by " + ("DELIFEQ" if has_command(r, "DELIFEQ")
                               else "the compare-and-delete script"), flush=True)
    ctx = multiprocessing.get_context("fork")
    stall_flag = ctx.Value("i", 0)
    barrier = ctx.Barrier(args.workers)
    workers = [ctx.Process(target=worker_main, args=(args, i, stall_flag, barrier))
               for i in range(args.workers)]
    start = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    took = time.monotonic() - start

    applied = r.lrange(f"{args.prefix}:applied", 0, -1)
    steps = [a.split()[0] for a in applied]
    expected = [s for s, _ in MIGRATIONS]
    problems = []
    if steps != expected:
        problems.append(f"applied steps {steps}, expected each of {expected} once, in order")
    if r.get(f"{args.prefix}:version") != expected[-1]:
        problems.append(f"version is {r.get(f'{args.prefix}:version')!r}")
    failed = [i for i, w in enumerate(workers) if w.exitcode != 0]
    if failed:
        problems.append(f"workers {failed} failed")
    print(f"\n{args.mode}: {args.workers} workers on ports {args.ports} in {took:.1f}s; "
          f"{len(applied) - len(before)} steps applied by this run:")
    for a in applied[len(before):]:
        print(f"  {a}")
    if problems:
        print("FAILED: " + "; ".join(problems))
        return 1
    print("every migration applied exactly once, in order")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""pytest wrapper for the raftcache differential test suite.

It starts a reference Redis 7.0.15 (``redis-server``, or the binary named by
``REDIS_SERVER_BIN``) on a free loopback port, starts the target and runs the
corpus in ``scripts/`` against both with ``run.py`` (one pytest test per
script group).

Target selection (environment variables):

``RAFTCACHE_BIN``
    Path to the raftcache server binary. It is started as
    ``$RAFTCACHE_BIN --port N --bind 127.0.0.1``; the test waits until it
    answers PING and kills it by pid at the end. If it is not set (and
    ``DIFF_TARGET_REDIS`` is not set either) every test FAILS with a message
    saying so -- it is never skipped.

``DIFF_TARGET_REDIS=1``
    Validation mode for the corpus itself: start a *second* redis-server as
    the target instead of raftcache. Every script must then pass; use it after
    editing scripts (``DIFF_TARGET_REDIS=1 pytest tests/differential``).

Other knobs: ``REDIS_SERVER_BIN`` (reference binary, default ``redis-server``),
``DIFF_SERVER_LOG_DIR`` (directory for the servers' stdout/stderr logs).

Documented deliberate differences (DIFFERENCES.md) are printed but do not
fail the tests.
"""

import os
import shutil
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run  # noqa: E402  (the runner next to this file)

GROUPS = sorted(d for d in os.listdir(os.path.join(HERE, "scripts"))
                if os.path.isdir(os.path.join(HERE, "scripts", d)))

MISSING_TARGET = (
    "RAFTCACHE_BIN is not set: point it at the raftcache server binary, e.g. "
    "RAFTCACHE_BIN=target/release/raftcache pytest tests/differential "
    "(or set DIFF_TARGET_REDIS=1 to validate the corpus against a second redis-server)"
)


def _log(name):
    d = os.environ.get("DIFF_SERVER_LOG_DIR")
    if not d:
        return None
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, name + ".log")


@pytest.fixture(scope="module")
def servers():
    """Yields (reference_addr, target_addr), or a string explaining why the
    servers could not be started (the tests then fail with it)."""
    started = []
    try:
        redis_bin = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server")
        if not redis_bin:
            yield "redis-server not found (install redis-server 7.0.15 or set REDIS_SERVER_BIN)"
            return
        raftcache_bin = os.environ.get("RAFTCACHE_BIN")
        use_redis_target = os.environ.get("DIFF_TARGET_REDIS", "") not in ("", "0")
        if not raftcache_bin and not use_redis_target:
            yield MISSING_TARGET
            return
        try:
            port = run.free_port()
            ref = run.Server(run.redis_server_argv(redis_bin, port), port, _log("reference"))
            started.append(ref)
            port = run.free_port()
            if raftcache_bin:
                argv = run.raftcache_argv(raftcache_bin, port)
            else:
                argv = run.redis_server_argv(redis_bin, port)
            tgt = run.Server(argv, port, _log("target"))
            started.append(tgt)
        except Exception as e:  # noqa: BLE001 - reported as a test failure
            yield "could not start the servers: %s" % e
            return
        yield (ref.addr, tgt.addr)
    finally:
        for s in started:
            s.stop()


@pytest.mark.parametrize("group", GROUPS)
def test_differential(servers, group):
    if isinstance(servers, str):
        pytest.fail(servers, pytrace=False)
    reference, target = servers
    stats = run.run_corpus_stats(reference, target, filter="scripts/%s/" % group,
                                 out=open(os.devnull, "w"))
    for m in stats.documented:
        print("DOCUMENTED " + m.format())
    failures = stats.failures
    if failures:
        shown = "\n".join("MISMATCH " + m.format() for m in failures[:60])
        more = "" if len(failures) <= 60 else "\n... and %d more" % (len(failures) - 60)
        pytest.fail("%d of %d commands in %d scripts differ from Redis 7.0.15:\n%s%s" % (
            len(failures), stats.commands, stats.scripts, shown, more), pytrace=False)


def test_run_corpus_api(servers):
    """run_corpus() (the importable API) returns mismatch records."""
    if isinstance(servers, str):
        pytest.fail(servers, pytrace=False)
    reference, target = servers
    result = run.run_corpus(reference, target, filter="connection/ping_basic")
    assert isinstance(result, list)
    assert all(isinstance(m, run.Mismatch) for m in result)
    assert result == [], "\n".join(m.format() for m in result)

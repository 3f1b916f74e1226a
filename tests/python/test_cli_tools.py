"""raftcache driven by the stock Redis 7.0 command-line tools.

`redis-cli` one-shot and interactive (through a pty with pexpect), and
`redis-benchmark` as a functional test (completes, reports every test, leaves
sane data behind). No timing is ever asserted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pexpect
import pytest

CLI = shutil.which("redis-cli") or "redis-cli"
BENCH = shutil.which("redis-benchmark") or "redis-benchmark"


def _require_tool(path: str) -> None:
    if not os.path.isabs(path):
        pytest.fail(f"{path} is not installed (apt-get install redis-tools)", pytrace=False)


def cli(server, *args, input=None, timeout=60) -> subprocess.CompletedProcess:
    _require_tool(CLI)
    return subprocess.run(
        [CLI, "-h", "127.0.0.1", "-p", str(server.port), *args],
        input=input,
        capture_output=True,
        timeout=timeout,
    )


def out(server, *args, **kw) -> str:
    """stdout of a redis-cli one-shot command (which must exit 0), as text."""
    res = cli(server, *args, **kw)
    assert res.returncode == 0, f"redis-cli {args} exited {res.returncode}: {res.stderr!r}"
    return res.stdout.decode()


# --------------------------------------------------------------------------- one-shot

def test_cli_one_shot_basic(server):
    assert out(server, "ping") == "PONG\n"
    assert out(server, "set", "a", "b") == "OK\n"
    assert out(server, "get", "a") == "b\n"  # stdout is not a tty: raw output
    assert out(server, "--raw", "get", "a") == "b\n"
    assert out(server, "--no-raw", "get", "a") == '"b"\n'
    assert out(server, "--no-raw", "get", "missing") == "(nil)\n"
    assert out(server, "get", "missing") == "\n"
    assert out(server, "--no-raw", "incr", "n") == "(integer) 1\n"
    assert out(server, "incrby", "n", "41") == "42\n"
    assert out(server, "--no-raw", "incr", "a") == "(error) ERR value is not an integer or out of range\n"
    assert out(server, "--no-raw", "mget", "a", "missing", "n") == '1) "b"\n2) (nil)\n3) "42"\n'
    assert out(server, "--no-raw", "get") == "(error) ERR wrong number of arguments for 'get' command\n"
    assert out(server, "--no-raw", "nosuchcmd", "x") == (
        "(error) ERR unknown command 'nosuchcmd', with args beginning with: 'x' \n"
    )
    # -n selects the database.
    assert out(server, "-n", "1", "set", "a", "db1") == "OK\n"
    assert out(server, "-n", "1", "get", "a") == "db1\n"
    assert out(server, "get", "a") == "b\n"
    # -x reads the last argument from stdin, binary-safe.
    assert out(server, "-x", "set", "blob", input=b"hello\nworld\x00\xff") == "OK\n"
    assert cli(server, "get", "blob").stdout == b"hello\nworld\x00\xff\n"
    assert out(server, "strlen", "blob") == "13\n"


def test_cli_resp3_flag(server):
    assert out(server, "-3", "--no-raw", "set", "k", "v") == "OK\n"
    assert out(server, "-3", "--no-raw", "get", "k") == '"v"\n'
    assert out(server, "-3", "--no-raw", "get", "missing") == "(nil)\n"
    assert out(server, "-3", "--no-raw", "hset", "h", "f", "v", "g", "w") == "(integer) 2\n"
    assert out(server, "-3", "--no-raw", "hgetall", "h") == '1# "f" => "v"\n2# "g" => "w"\n'
    assert out(server, "-3", "hgetall", "h") == "f v\ng w\n"
    hello = out(server, "-3", "--no-raw", "hello", "3")
    assert '"proto" => (integer) 3' in hello
    assert out(server, "-3", "--no-raw", "incrbyfloat", "fl", "1.5") == '"1.5"\n'


def test_cli_resp3_flag_sets_and_zsets(server):
    assert out(server, "-3", "--no-raw", "sadd", "s", "only") == "(integer) 1\n"
    assert out(server, "-3", "--no-raw", "smembers", "s") == '1~ "only"\n'
    assert out(server, "-3", "--no-raw", "zadd", "z", "1.5", "m", "-2", "n") == "(integer) 2\n"
    assert out(server, "-3", "--no-raw", "zscore", "z", "m") == "(double) 1.5\n"
    assert out(server, "-3", "--no-raw", "zrange", "z", "0", "-1", "withscores") == (
        '1) 1) "n"\n   2) (double) -2\n2) 1) "m"\n   2) (double) 1.5\n'
    )
    assert out(server, "--no-raw", "zrange", "z", "0", "-1", "withscores") == (
        '1) "n"\n2) "-2"\n3) "m"\n4) "1.5"\n'
    )


def test_cli_info_keyspace(server):
    assert out(server, "info", "keyspace").replace("\r", "") == "# Keyspace\n"
    out(server, "set", "a", "1")
    out(server, "set", "b", "2", "ex", "100")
    out(server, "-n", "3", "set", "c", "3")
    text = out(server, "info", "keyspace").replace("\r", "")
    lines = [ln for ln in text.splitlines() if ln]
    assert lines[0] == "# Keyspace"
    assert re.fullmatch(r"db0:keys=2,expires=1,avg_ttl=\d+", lines[1]), lines
    assert re.fullmatch(r"db3:keys=1,expires=0,avg_ttl=0", lines[2]), lines
    assert len(lines) == 3
    assert "redis_version:" in out(server, "info", "server")


def test_cli_scan_and_pipe_mass_insert(server):
    # redis-cli --pipe: mass insertion from raw RESP, as in the Redis docs.
    n = 2000
    payload = b"".join(
        b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
        % (len(k), k, len(v), v)
        for k, v in ((b"user:%d" % i, b"value-%d" % i) for i in range(n))
    )
    res = cli(server, "--pipe", input=payload, timeout=120)
    text = res.stdout.decode() + res.stderr.decode()
    assert res.returncode == 0, text
    assert f"errors: 0, replies: {n}" in text, text
    assert out(server, "dbsize") == f"{n}\n"
    assert out(server, "get", "user:1234") == "value-1234\n"
    scanned = out(server, "--scan", "--pattern", "user:1*").split()
    assert sorted(scanned) == sorted(f"user:{i}" for i in range(n) if str(i).startswith("1"))


def test_cli_requirepass(auth_server):
    res = cli(auth_server, "--no-raw", "get", "k")
    assert res.stdout.decode() == "(error) NOAUTH Authentication required.\n"
    assert out(auth_server, "-a", auth_server.password, "--no-auth-warning", "set", "k", "v") == "OK\n"
    assert out(auth_server, "-a", auth_server.password, "--no-auth-warning", "get", "k") == "v\n"
    res = cli(auth_server, "-a", "wrong", "--no-auth-warning", "get", "k")
    assert b"WRONGPASS" in res.stdout + res.stderr or b"AUTH failed" in res.stdout + res.stderr


# --------------------------------------------------------------------------- interactive

def _spawn_cli(server, *args):
    _require_tool(CLI)
    env = dict(os.environ, TERM="xterm")  # linenoise disables hints on a dumb terminal
    child = pexpect.spawn(
        CLI,
        ["-h", "127.0.0.1", "-p", str(server.port), *args],
        env=env,
        encoding="utf-8",
        timeout=15,
        dimensions=(50, 250),
    )
    return child


def test_cli_interactive_session(server):
    child = _spawn_cli(server)
    transcript = []
    child.logfile_read = _Collector(transcript)
    prompt = f"127.0.0.1:{server.port}> "
    prompt1 = f"127.0.0.1:{server.port}[1]> "
    try:
        child.expect_exact(prompt)
        child.send("SET k v\r")
        child.expect_exact("\r\nOK\r\n")
        child.expect_exact(prompt)
        child.send("GET k\r")
        child.expect_exact('\r\n"v"\r\n')
        child.expect_exact(prompt)
        child.send("INCR k\r")
        child.expect_exact("(error) ERR value is not an integer or out of range")
        child.expect_exact(prompt)
        child.send("RPUSH l a b\r")
        child.expect_exact("(integer) 2")
        child.expect_exact(prompt)
        child.send("LRANGE l 0 -1\r")
        child.expect_exact('1) "a"\r\n2) "b"\r\n')
        child.expect_exact(prompt)
        child.send("SELECT 1\r")
        child.expect_exact("OK")
        child.expect_exact(prompt1)
        child.send("GET k\r")
        child.expect_exact("(nil)")
        child.expect_exact(prompt1)
        child.send("SET k in-db1\r")
        child.expect_exact("OK")
        child.expect_exact(prompt1)
        child.send("SELECT 0\r")
        child.expect_exact("OK")
        child.expect_exact(prompt)
        child.send("quit\r")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, f"redis-cli exit status {child.exitstatus}"
    text = "".join(transcript)
    assert text.count("(error)") == 1, f"unexpected errors in the session:\n{text}"
    assert out(server, "-n", "1", "get", "k") == "in-db1\n"


def test_cli_interactive_hints_and_help(server):
    """redis-cli sends COMMAND DOCS at startup and builds hints and HELP from it."""
    child = _spawn_cli(server)
    transcript = []
    child.logfile_read = _Collector(transcript)
    prompt = f"127.0.0.1:{server.port}> "
    try:
        child.expect_exact(prompt)
        child.send("SET ")
        # The hint after "SET " lists the arguments (grey text after the cursor).
        child.expect_exact("key value [NX|XX] [GET] [EX seconds|PX milliseconds|EXAT")
        child.send("\x15")  # ctrl-u: clear the line
        child.send("HGETALL ")
        child.expect_exact("key")
        child.send("\x15")
        child.send("HELP SET\r")
        child.expect_exact("summary:")
        child.expect_exact("Set the string value of a key")
        child.expect_exact("since:")
        child.expect_exact("1.0.0")
        child.expect_exact("group:")
        child.expect_exact("string")
        child.expect_exact(prompt)
        child.send("HELP HSET\r")
        child.expect_exact("Set the string value of a hash field")
        child.expect_exact(prompt)
        child.send("quit\r")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    text = "".join(transcript)
    assert "(error)" not in text and "ERR" not in text, text
    # The reply redis-cli's hints come from.
    docs = out(server, "--no-raw", "command", "docs", "set")
    assert '"summary"' in docs and '"Set the string value of a key"' in docs
    assert '"arguments"' in docs


class _Collector:
    """A file-like sink for pexpect's logfile_read."""

    def __init__(self, parts):
        self.parts = parts

    def write(self, s):
        self.parts.append(s)

    def flush(self):
        pass


# --------------------------------------------------------------------------- benchmark

BENCH_TESTS = ["SET", "GET", "INCR", "LPUSH", "HSET"]


def _bench(server, *extra):
    _require_tool(BENCH)
    res = subprocess.run(
        [BENCH, "-h", "127.0.0.1", "-p", str(server.port),
         "-t", "set,get,incr,lpush,hset", "-n", "20000", "-c", "10", "-q", *extra],
        capture_output=True,
        timeout=500,
    )
    text = res.stdout.decode(errors="replace")
    err = res.stderr.decode(errors="replace")
    assert res.returncode == 0, f"redis-benchmark exited {res.returncode}\n{text}\n{err}"
    # -q prints progress lines ending in \r and one final line per test.
    lines = [ln.strip() for ln in re.split(r"[\r\n]", text) if ln.strip()]
    finals = {}
    for ln in lines:
        m = re.fullmatch(r"([A-Z]+): ([0-9.]+) requests per second, p50=[0-9.]+ msec", ln)
        if m:
            finals.setdefault(m.group(1), []).append(float(m.group(2)))
    assert sorted(finals) == sorted(BENCH_TESTS), f"missing result lines:\n{text}\n{err}"
    assert all(len(v) == 1 and v[0] > 0 for v in finals.values()), finals
    for bad in ("Error", "ERR", "WARNING", "Could not fetch server CONFIG"):
        assert bad not in text + err, f"{bad!r} in redis-benchmark output:\n{text}\n{err}"
    return finals


def test_redis_benchmark(server):
    _bench(server)
    # Each test ran exactly -n 20000 requests against fixed keys (no -r).
    assert out(server, "get", "counter:__rand_int__") == "20000\n"
    assert out(server, "llen", "mylist") == "20000\n"
    assert out(server, "hlen", "myhash") == "1\n"
    value = out(server, "get", "key:__rand_int__").rstrip("\n")
    assert len(value) == 3, f"default -d 3 payload, got {value!r}"
    assert out(server, "hget", "myhash", "element:__rand_int__").rstrip("\n") == value
    assert out(server, "lindex", "mylist", "0").rstrip("\n") == value
    assert out(server, "dbsize") == "4\n"

    # Pipelined: 16 requests per round trip.
    _bench(server, "-P", "16")
    assert out(server, "get", "counter:__rand_int__") == "40000\n"
    assert out(server, "llen", "mylist") == "40000\n"
    assert out(server, "dbsize") == "4\n"
    assert server.alive()

"""The configuration file, RAFTCACHE_* variables and flags: precedence,
--print-config, and one-line errors that name the key, on the real binary."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

REPO = Path(__file__).resolve().parents[2]


def bin_path() -> str:
    path = os.environ.get("RAFTCACHE_BIN")
    assert path and os.access(path, os.X_OK), "RAFTCACHE_BIN must name the raftcache binary"
    return path


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTCACHE_")}
    env.update(extra)
    return env


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([bin_path(), *args], capture_output=True, text=True, timeout=30,
                          env=env if env is not None else clean_env())


def settings(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and " = " in line:
            k, v = line.split(" = ", 1)
            out[k] = v
    return out


def free_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_print_config_matches_the_documented_example():
    """deploy/raftcache.toml is exactly what --print-config prints with the
    defaults: every key documented and defaulted, kept in step with the flags."""
    p = run("--print-config")
    assert p.returncode == 0, p.stderr
    assert p.stdout == (REPO / "deploy" / "raftcache.toml").read_text(), (
        "deploy/raftcache.toml is stale: regenerate it with `raftcache --print-config`"
    )
    # The example file itself is a valid configuration.
    p = run("--config", str(REPO / "deploy" / "raftcache.toml"), "--print-config")
    assert p.returncode == 0, p.stderr


def test_flags_win_over_environment_which_wins_over_the_file(tmp_path):
    conf = tmp_path / "raftcache.toml"
    conf.write_text('port = 7001\nappendfsync = "always"\nread_consistency = "lease"\n'
                    'data-dir = "/var/lib/x"\nrequest-timeout = 1234\n')
    env = clean_env(RAFTCACHE_APPENDFSYNC="no", RAFTCACHE_PORT="7002", RAFTCACHE_BIN="/ignored")
    p = run("--config", str(conf), "--port", "7003", "--print-config", env=env)
    assert p.returncode == 0, p.stderr
    s = settings(p.stdout)
    assert s["port"] == "7003"  # flag
    assert s["appendfsync"] == '"no"'  # environment over file
    assert s["read-consistency"] == '"lease"'  # file (underscore spelling accepted)
    assert s["data-dir"] == '"/var/lib/x"'
    assert s["request-timeout"] == "1234"
    assert s["maxclients"] == "10000"  # default


def test_secrets_are_not_printed(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text('requirepass = "hunter2"\n')
    p = run("--config", str(conf), "--admin-token", "t0ken", "--print-config",
            env=clean_env(RAFTCACHE_PEER_SECRET="s3cret"))
    assert p.returncode == 0, p.stderr
    for secret in ("hunter2", "t0ken", "s3cret"):
        assert secret not in p.stdout
    s = settings(p.stdout)
    assert s["requirepass"] == s["admin-token"] == s["peer-secret"] == '"(hidden)"'


@pytest.mark.parametrize(
    "content, env, expect",
    [
        ('port = "abc"\n', {}, ["key 'port'", "--port", "abc"]),
        ("prot = 1\n", {}, ["unknown key 'prot'"]),
        ("port = \n", {}, ["TOML parse error", "line 1"]),
        ('appendfsync = "sometimes"\n', {}, ["key 'appendfsync'", "sometimes"]),
        ("[server]\nport = 1\n", {}, ["unknown key 'server'"]),
        ("", {"RAFTCACHE_MAXCLIENTS": "many"}, ["RAFTCACHE_MAXCLIENTS", "many"]),
        ("", {"RAFTCACHE_PEERS": "1=nohost"}, ["RAFTCACHE_PEERS", "no port"]),
    ],
)
def test_a_bad_value_fails_at_start_with_one_line_naming_the_key(tmp_path, content, env, expect):
    conf = tmp_path / "bad.toml"
    conf.write_text(content)
    p = run("--config", str(conf), env=clean_env(**env))
    assert p.returncode == 2, (p.stdout, p.stderr)
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1, err
    for word in expect:
        assert word in err, err


def test_a_missing_file_is_an_error():
    p = run("--config", "/nonexistent/raftcache.toml")
    assert p.returncode == 2 and "no such file" in p.stderr, p.stderr


def test_a_node_runs_on_the_files_settings(tmp_path):
    port = free_port()
    conf = tmp_path / "node.toml"
    conf.write_text(f'port = {port}\nbind = "127.0.0.1"\nraft-port = 0\nadmin-port = 0\n'
                    f'metrics-port = 0\nrequirepass = "pw"\n')
    proc = subprocess.Popen([bin_path(), "--config", str(conf)], env=clean_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = redis.Redis(port=port, password="pw", socket_timeout=2)
        deadline = time.monotonic() + 20
        while True:
            try:
                assert r.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "the node did not come up on the file's port"
                time.sleep(0.1)
        r.set("from", "file")
        assert r.get("from") == b"file"
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, socket_timeout=2).ping()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_id_from_hostname():
    """A StatefulSet pod named raftcache-2 is member 3."""
    port = free_port()
    proc = subprocess.Popen(
        [bin_path(), "--id-from-hostname", "--port", str(port), "--raft-port", "0",
         "--admin-port", "0", "--metrics-port", "0"],
        env=clean_env(HOSTNAME="raftcache-2.raftcache-headless"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        r = redis.Redis(port=port, socket_timeout=2, decode_responses=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                info = r.info("replication")
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "the node did not come up"
                time.sleep(0.1)
        assert str(info["raft_member_id"]) == "3", info
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    bad = run("--id-from-hostname", "--port", "0", env=clean_env(HOSTNAME="web"))
    assert bad.returncode == 2 and "does not end in -<ordinal>" in bad.stderr, bad.stderr

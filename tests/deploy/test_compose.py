"""The container image and deploy/docker-compose.yml, with real Docker.

The image: smaller than 40 MB, runs as uid 10001, holds no shell. The
compose cluster: three healthy nodes that found each other by service name
(Docker's DNS, through glibc's built-in NSS modules of the scratch image),
served by redis-cli and redis-py through every published port; the leader
killed (writes go on through the other two) and started again (it catches
up: raftcachectl digest agrees); a rolling restart under a writer that loses
no acknowledged write.

Without Docker, its daemon or Compose these tests FAIL (see conftest.py).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import threading
import time
from typing import Dict, List

import redis

# The shared helpers come from conftest.py through the `helpers` fixture.
SERVICES = ("node1", "node2", "node3")  # deploy/docker-compose.yml's (conftest's SERVICES)
MAX_IMAGE_BYTES = 40_000_000
UID = 10001


# --- the image ----------------------------------------------------------------------


def test_image_is_small_runs_as_non_root_and_has_no_shell(docker_image, helpers):
    size = int(helpers.docker("image", "inspect", "--format", "{{.Size}}", docker_image).stdout)
    print(f"{docker_image}: {size} bytes")
    assert size < MAX_IMAGE_BYTES, f"{docker_image} is {size} bytes"
    user = helpers.docker("image", "inspect", "--format", "{{.Config.User}}",
                          docker_image).stdout.strip()
    assert user.split(":")[0] == str(UID), user
    env = helpers.docker("image", "inspect", "--format", "{{json .Config.Env}}",
                         docker_image).stdout
    assert "NO_COLOR=1" in env, env  # plain log lines

    # The file system as the container sees it.
    cid = helpers.docker("create", docker_image).stdout.strip()
    try:
        tar_bytes = subprocess.run(["docker", "export", cid], capture_output=True, check=True,
                                   timeout=120).stdout
    finally:
        helpers.docker("rm", "-f", cid)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        entries = {m.name.rstrip("/"): m for m in tar.getmembers()}
        passwd = tar.extractfile(entries["etc/passwd"]).read().decode()
        nsswitch = tar.extractfile(entries["etc/nsswitch.conf"]).read().decode()
    for path in ("usr/local/bin/raftcache", "usr/local/bin/raftcachectl",
                 "lib64/ld-linux-x86-64.so.2"):
        assert entries[path].isfile() or entries[path].issym(), path
    assert entries["data"].isdir() and entries["data"].uid == UID, entries["data"].uid
    assert entries["tmp"].mode & 0o7777 == 0o1777, oct(entries["tmp"].mode)
    assert f"raftcache:x:{UID}:{UID}:" in passwd
    assert "hosts: files dns" in nsswitch
    assert not any(p in entries for p in ("bin/sh", "bin/bash", "usr/bin/env")), "a shell"

    # It runs: both binaries, as the image's user.
    out = helpers.docker("run", "--rm", docker_image, "--version").stdout
    assert out.startswith("raftcache "), out
    out = helpers.docker("run", "--rm", "--entrypoint", "/usr/local/bin/raftcachectl",
                         docker_image, "--version").stdout
    assert out.startswith("raftcachectl "), out


# --- the compose cluster ----------------------------------------------------------------


def test_compose_cluster_serves_through_every_node(compose_cluster, helpers):
    redis_cli = helpers.require_redis_cli()
    cluster = compose_cluster()

    # The node processes run as the image's user, not root.
    for s in SERVICES:
        top = helpers.docker("top", cluster.container(s), "-eo", "uid,pid,comm").stdout
        top = top.split("\n")[1:]
        rows = [line.split() for line in top if line.strip()]
        assert rows and all(r[0] == str(UID) for r in rows), (s, rows)

    # Every node listed the others by service name: the members are node1..3.
    leader = cluster.leader()
    info = cluster.info(leader)
    members = sorted(m.split("@")[1] for m in info["raft_members"].split(","))
    assert members == [f"{s}:7380" for s in SERVICES], members

    # redis-cli through each published port, reading what another wrote.
    for i, s in enumerate(SERVICES):
        port = str(cluster.nodes[s].port)
        p = subprocess.run([redis_cli, "-p", port, "set", f"cli:{s}", f"v{i}"],
                           capture_output=True, text=True, timeout=30)
        assert (p.returncode, p.stdout.strip()) == (0, "OK"), p
    for s in SERVICES:
        for t in SERVICES:
            p = subprocess.run([redis_cli, "-p", str(cluster.nodes[s].port), "get", f"cli:{t}"],
                               capture_output=True, text=True, timeout=30)
            assert p.stdout.strip() == f"v{SERVICES.index(t)}", (s, t, p)

    # redis-py: INCR through every node counts once each.
    for s in SERVICES:
        c = cluster.client(s)
        assert c.ping()
        c.incr("py:counter")
        c.close()
    for s in SERVICES:
        assert cluster.client(s).get("py:counter") == "3"

    # raftcachectl inside a container: health of every node by service name
    # (resolved by Docker's DNS), then status and digest.
    p = cluster.ctl("node1", "health")
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert p.stdout.count("SERVING") == 3, p.stdout
    p = cluster.ctl("node2", "status")
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert p.stdout.count("leader") >= 1
    p = cluster.ctl("node3", "digest", "--rounds", "50")
    assert p.returncode == 0, (p.stdout, p.stderr)


def write_until_ok(c: redis.Redis, key: str, value: str, timeout: float = 30) -> None:
    """SET, retried while the cluster elects a leader (a SET retried is
    harmless: same key, same value)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            assert c.set(key, value) is True
            return
        except (redis.exceptions.RedisError, OSError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def test_leader_killed_then_started_again_catches_up(compose_cluster, helpers):
    cluster = compose_cluster()
    leader = cluster.leader()
    others = [s for s in SERVICES if s != leader]
    c = cluster.client(leader)
    for i in range(50):
        assert c.set(f"before:{i}", i) is True
    c.close()

    cluster.kill(leader)
    helpers.wait_for(f"{leader} to stop",
                     lambda: cluster.state(leader)["Status"] != "running", 30)
    # The two others elect a leader and keep taking writes, through either.
    for s in others:
        c = cluster.client(s)
        write_until_ok(c, f"during:{s}:0", "0")
        for i in range(1, 100):
            assert c.set(f"during:{s}:{i}", i) is True
        c.close()
    new_leader = cluster.leader(services=others)
    assert new_leader in others

    cluster.start(leader)
    cluster.wait_ready(leader, timeout=90)
    cluster.wait_healthy([leader], timeout=90)
    c = cluster.client(leader)
    for s in others:
        assert c.get(f"during:{s}:99") == "99"
    assert c.get("before:49") == "49"
    c.close()
    # Every replica at one applied index has the same digest (exit 0).
    p = cluster.ctl(others[0], "digest", "--rounds", "100")
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert "agree" in p.stdout


class Writer(threading.Thread):
    """Writes unique keys through the three nodes in turn until stopped;
    records the keys whose SET was acknowledged (+OK)."""

    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.stop = threading.Event()
        self.acked: Dict[str, str] = {}
        self.errors: List[str] = []
        self.clients = {s: cluster.client(s, socket_timeout=10) for s in SERVICES}

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            s = SERVICES[i % len(SERVICES)]
            key, value = f"roll:{i}", f"{s}:{i}"
            try:
                if self.clients[s].set(key, value) is True:
                    self.acked[key] = value
            except (redis.exceptions.RedisError, OSError) as e:
                self.errors.append(f"{s}: {type(e).__name__}: {e}")
                time.sleep(0.02)
            i += 1
            time.sleep(0.005)
        for c in self.clients.values():
            c.close()


def test_rolling_restart_loses_no_acknowledged_write(compose_cluster, helpers):
    cluster = compose_cluster()
    cluster.leader()
    writer = Writer(cluster)
    writer.start()
    try:
        helpers.wait_for("the writer's first acknowledged writes",
                         lambda: len(writer.acked) >= 50, 30)
        for s in SERVICES:
            before = len(writer.acked)
            node_id = cluster.info(s)["raft_node_id"]
            cluster.restart(s)  # SIGTERM (clean stop), then start
            cluster.wait_ready(s, timeout=90)
            # A clean stop: it resumed its log as the same incarnation.
            assert cluster.info(s)["raft_node_id"] == node_id, s
            # Writes went on: acknowledged ones keep coming after each step.
            helpers.wait_for(f"writes after restarting {s}",
                             lambda before=before: len(writer.acked) >= before + 50, 60)
        cluster.wait_healthy(timeout=90)
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert not writer.is_alive()

    acked = dict(writer.acked)
    print(f"{len(acked)} writes acknowledged, {len(writer.errors)} refused or failed; "
          f"first errors: {writer.errors[:5]}")
    assert len(acked) >= 200
    keys = sorted(acked)
    for s in SERVICES:
        c = cluster.client(s, socket_timeout=30)
        missing = []
        for start in range(0, len(keys), 1000):
            chunk = keys[start:start + 1000]
            for k, v in zip(chunk, c.mget(chunk)):
                if v != acked[k]:
                    missing.append((k, acked[k], v))
        c.close()
        assert not missing, f"{s}: {len(missing)} acknowledged writes lost: {missing[:10]}"
    p = cluster.ctl("node1", "digest", "--rounds", "100")
    assert p.returncode == 0, (p.stdout, p.stderr)

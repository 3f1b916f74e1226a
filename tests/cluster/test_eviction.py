"""maxmemory and eviction on a three-node cluster (issue 19): the limit and
the policy are cluster-wide (set by the flags when the cluster forms, by
CONFIG SET through any node afterwards), every replica evicts the same keys
at the same index (equal digests, equal key sets), `noeviction` answers
Redis's OOM error to growing writes through every node while reads and
deletes work, and reads through followers count for LRU."""

from __future__ import annotations

import threading
import time

import pytest
import redis

# redis-py turns Redis's "-OOM command not allowed when used memory >
# 'maxmemory'." into OutOfMemoryError with the text after the code.
OOM = "command not allowed when used memory > 'maxmemory'."


def info_field(client: redis.Redis, section: str, field: str) -> str:
    return str(client.info(section)[field])


def keyset(client: redis.Redis) -> set:
    return set(client.scan_iter(count=1000))


def test_limit_from_flags_evicts_the_same_keys_on_every_node(make_cluster):
    cluster = make_cluster(3, args=["--maxmemory", "200kb", "--maxmemory-policy", "allkeys-lru"])
    clients = {m: cluster.client(m) for m in cluster.nodes}
    for m, c in clients.items():
        cluster.wait_for(f"node {m} to apply the flags' maxmemory",
                         lambda c=c: c.config_get("maxmemory")["maxmemory"] == str(200 * 1024))
        assert c.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"

    errors = []

    def write(m: int):
        try:
            for i in range(700):
                assert clients[m].set(f"key:{m}:{i}", "v" * 200) is True
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"writer via node {m}: {e!r}")

    threads = [threading.Thread(target=write, args=(m,)) for m in cluster.nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors

    cluster.assert_digests_equal()
    evicted = {m: int(info_field(c, "stats", "evicted_keys")) for m, c in clients.items()}
    used = {m: int(info_field(c, "memory", "used_memory")) for m, c in clients.items()}
    assert len(set(evicted.values())) == 1, f"evicted_keys differ: {evicted}"
    assert next(iter(evicted.values())) > 500, evicted
    assert len(set(used.values())) == 1, f"used_memory differs: {used}"
    # Eviction runs before each write: the last one may go over by its size.
    assert next(iter(used.values())) <= 200 * 1024 + 1024, used
    sets = {m: keyset(c) for m, c in clients.items()}
    first = sets[1]
    assert all(s == first for s in sets.values()), "the nodes kept different keys"
    assert len(first) + evicted[1] == 2100
    usage = clients[2].memory_usage(next(iter(first)))
    assert isinstance(usage, int) and usage > 200


def test_config_set_through_a_follower_and_noeviction_answers_oom(make_cluster):
    cluster = make_cluster(3)
    leader = cluster.leader()
    follower = cluster.followers(leader)[0]
    f = cluster.client(follower)
    assert f.config_set("maxmemory", "50kb") is True
    for m in cluster.nodes:
        c = cluster.client(m)
        cluster.wait_for(f"node {m} to apply maxmemory",
                         lambda c=c: c.config_get("maxmemory")["maxmemory"] == "51200")
        assert c.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    i = 0
    while True:
        try:
            f.set(f"k{i}", "v" * 100)
        except redis.exceptions.OutOfMemoryError as e:
            assert str(e) == OOM
            break
        i += 1
        assert i < 5000, "never refused"
    for m in cluster.nodes:
        c = cluster.client(m)
        with pytest.raises(redis.exceptions.OutOfMemoryError, match="^command not allowed"):
            c.rpush("list", "x")
        assert c.get("k0") == "v" * 100, "reads keep working"
        assert c.exists("k1") == 1
    assert f.delete("k0", "k1", "k2") == 3, "deletes keep working"
    assert f.set("fits-again", "v") is True
    # A bad value is refused with Redis's error and changes nothing.
    with pytest.raises(redis.exceptions.ResponseError, match=r"argument\(s\) must be one of the following: volatile-lru"):
        f.config_set("maxmemory-policy", "lru")
    assert int(info_field(cluster.client(leader), "stats", "evicted_keys")) == 0
    cluster.assert_digests_equal()


def test_reads_through_followers_keep_keys_under_lru(make_cluster):
    cluster = make_cluster(3, args=["--maxmemory", "120kb", "--maxmemory-policy", "allkeys-lru",
                                    "--maxmemory-samples", "10"])
    leader = cluster.leader()
    f1, f2 = cluster.followers(leader)
    w = cluster.client(leader)
    hot = [f"hot:{i}" for i in range(60)]
    for k in hot:
        w.set(k, "h" * 200)
    readers = [cluster.client(f1), cluster.client(f2)]
    for round_ in range(15):
        # The hot keys are read through the followers only; the nodes report
        # reads once a second, so each round lasts a little longer than that.
        for r in readers:
            for k in hot:
                r.get(k)
        time.sleep(1.05)
        for i in range(40):
            w.set(f"cold:{round_}:{i}", "c" * 200)
    evicted = int(info_field(w, "stats", "evicted_keys"))
    assert evicted > 100, evicted
    alive = sum(w.exists(k) for k in hot)
    assert alive >= 54, f"only {alive} of 60 keys read through the followers survived"
    cluster.assert_digests_equal()

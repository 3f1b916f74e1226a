"""INFO's commandstats, errorstats and replication fields that tools read,
and CONFIG SET of the encoding thresholds, against one node. The same tests
pass against a real redis-server (RAFTCACHE_BIN=$(which redis-server))."""

import redis


def test_commandstats_and_errorstats(r):
    r.config_resetstat()
    r.set("cs:k", "v")
    r.get("cs:k")
    r.get("cs:k")
    try:
        r.lpush("cs:k", "x")
    except redis.ResponseError:
        pass
    try:
        r.execute_command("GET")
    except redis.ResponseError:
        pass
    stats = r.info("commandstats")
    get = stats["cmdstat_get"]
    assert int(get["calls"]) == 2
    assert int(get["rejected_calls"]) == 1
    assert int(get["failed_calls"]) == 0
    assert int(stats["cmdstat_lpush"]["failed_calls"]) == 1
    errors = r.info("errorstats")
    assert errors["errorstat_WRONGTYPE"] == {"count": 1}
    assert errors["errorstat_ERR"] == {"count": 1}
    assert int(r.info("stats")["total_error_replies"]) == 2
    # Not in the default INFO, as in Redis; in INFO all.
    assert "cmdstat_get" not in r.info()
    assert "cmdstat_get" in r.info("all")


def test_stats_count_network_bytes_and_cpu(r):
    before = r.info("stats")
    r.set("net:k", "x" * 1000)
    assert r.get("net:k") == "x" * 1000
    after = r.info("stats")
    assert after["total_net_input_bytes"] >= before["total_net_input_bytes"] + 1000
    assert after["total_net_output_bytes"] >= before["total_net_output_bytes"] + 1000
    assert after["evicted_keys"] == 0
    assert "expired_keys" in after
    cpu = r.info("cpu")
    for field in ("used_cpu_sys", "used_cpu_user", "used_cpu_sys_children", "used_cpu_user_children"):
        assert cpu[field] >= 0


def test_keyspace_hits_and_misses_count_reads(r):
    r.set("ks:a", "1")
    r.config_resetstat()
    r.set("ks:b", "2")  # writes do not count
    assert r.get("ks:a") == "1"
    assert r.get("ks:none") is None
    assert r.mget("ks:a", "ks:b", "ks:nothing") == ["1", "2", None]
    with r.pipeline(transaction=True) as p:  # a read-only MULTI counts too
        p.get("ks:a")
        p.get("ks:zilch")
        p.execute()
    stats = r.info("stats")
    assert (stats["keyspace_hits"], stats["keyspace_misses"]) == (4, 3), stats


def test_replication_fields_of_a_single_node(r):
    rep = r.info("replication")
    assert rep["role"] == "master"
    assert int(rep["connected_slaves"]) == 0
    assert int(rep["master_repl_offset"]) >= 0


def test_encoding_thresholds_are_settable(r):
    old = r.config_get("hash-max-listpack-entries")["hash-max-listpack-entries"]
    try:
        assert r.config_set("hash-max-listpack-entries", 2)
        assert r.config_get("hash-max-ziplist-entries")["hash-max-ziplist-entries"] == "2"
        r.delete("enc:h")
        r.hset("enc:h", mapping={"a": 1, "b": 2})
        assert r.object("encoding", "enc:h") == "listpack"
        r.hset("enc:h", "c", 3)
        assert r.object("encoding", "enc:h") == "hashtable"
        try:
            r.config_set("hash-max-listpack-entries", -1)
            raise AssertionError("a negative threshold was accepted")
        except redis.ResponseError as e:
            assert "argument must be between 0 and 9223372036854775807" in str(e)
        assert r.config_set("save", "")
        assert r.config_set("lua-time-limit", 100)
        assert r.config_get("lua-time-limit")["lua-time-limit"] == "100"
    finally:
        r.config_set("hash-max-listpack-entries", old)
        r.config_set("lua-time-limit", 5000)

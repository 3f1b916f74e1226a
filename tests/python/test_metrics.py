"""The Prometheus endpoint (`--metrics-port`, GET /metrics) of one node:
scraped over HTTP and parsed with prometheus_client's text parser, checked
against what redis-py did and what the node reports through RESP."""

import urllib.error
import urllib.request
from typing import Dict

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port, is_real_redis

pytestmark = pytest.mark.skipif(is_real_redis(), reason="raftcache's own endpoint")


def scrape(port: int) -> Dict[str, object]:
    """{family name: family}; counters are named without `_total`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = reply.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families, family: str, sample: str = None, **labels) -> float:
    """The value of one sample (default: the family's own name, or
    `<family>_total` for a counter) with exactly these labels among its own."""
    fam = families[family]
    name = sample or (f"{family}_total" if fam.type == "counter" else family)
    for s in fam.samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no sample {name}{labels} in {fam.samples}")


@pytest.fixture
def metrics_server(start_server):
    port = free_port()
    srv = start_server("--metrics-port", str(port))
    return srv, port


def test_metrics_match_the_commands_run_and_the_keyspace(metrics_server):
    srv, port = metrics_server
    r = srv.client()
    r3 = srv.client(db=3)
    for i in range(7):
        r.set(f"m:{i}", i)
    r.set("m:ttl", "x", ex=100)
    r3.set("other-db", "1")
    assert r.get("m:1") == "1"
    assert r.get("m:missing") is None
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.lpush("m:1", "x")

    fams = scrape(port)
    assert fams["raftcache_commands"].type == "counter"
    assert fams["raftcache_raft_term"].type == "gauge"
    assert fams["raftcache_command_duration_seconds"].type == "histogram"
    assert fams["raftcache_raft_term"].documentation

    assert value(fams, "raftcache_commands", cmd="set") == 9
    assert value(fams, "raftcache_commands", cmd="get") == 2
    assert value(fams, "raftcache_commands_failed", cmd="lpush") == 1
    assert value(fams, "raftcache_command_duration_seconds",
                 "raftcache_command_duration_seconds_count", cmd="set") == 9
    assert value(fams, "raftcache_command_duration_seconds",
                 "raftcache_command_duration_seconds_bucket", cmd="set", le="+Inf") == 9
    assert value(fams, "raftcache_errors", kind="WRONGTYPE") == 1

    assert value(fams, "raftcache_raft_term") >= 1
    assert value(fams, "raftcache_raft_is_leader") == 1
    assert value(fams, "raftcache_raft_state", state="leader") == 1
    assert value(fams, "raftcache_raft_elections") >= 1
    assert value(fams, "raftcache_raft_leader_changes") >= 1
    applied = value(fams, "raftcache_raft_applied_index")
    assert applied >= 9
    assert value(fams, "raftcache_raft_last_log_index") >= applied
    # Nine SETs, each its own log entry (one client, one command at a time).
    assert value(fams, "raftcache_raft_proposals") >= 9
    assert value(fams, "raftcache_raft_commands_per_entry",
                 "raftcache_raft_commands_per_entry_count") >= 9

    assert value(fams, "raftcache_keys", db="0") == r.dbsize() == 8
    assert value(fams, "raftcache_keys", db="3") == r3.dbsize() == 1
    assert value(fams, "raftcache_keys_with_expiry", db="0") == 1
    assert value(fams, "raftcache_connected_clients") >= 2
    assert value(fams, "raftcache_connections_received") >= 2
    info = r.info("stats")
    assert value(fams, "raftcache_net_input_bytes") > 0
    assert info["total_net_input_bytes"] >= value(fams, "raftcache_net_input_bytes")
    assert value(fams, "raftcache_net_output_bytes") > 0
    assert value(fams, "raftcache_evicted_keys") == 0
    r.close()
    r3.close()


def test_metrics_endpoint_answers_only_get_metrics(metrics_server):
    _, port = metrics_server
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
    assert e.value.code == 404
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        assert reply.headers["Content-Type"].startswith("application/openmetrics-text")
        assert reply.read().decode().endswith("# EOF\n")


def test_a_taken_metrics_port_fails_the_start(metrics_server):
    srv, port = metrics_server
    import subprocess

    argv = [srv.argv[0], "--port", str(free_port()), "--bind", "127.0.0.1",
            "--raft-port", "0", "--admin-port", "0", "--metrics-port", str(port)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                         env={"NO_COLOR": "1", "RUST_BACKTRACE": "0"})
    assert out.returncode != 0
    assert f"binding the metrics port 127.0.0.1:{port}" in out.stdout + out.stderr

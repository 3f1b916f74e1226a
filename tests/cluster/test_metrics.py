"""The Prometheus endpoint of a three-node cluster: the leader exports each
follower's replication progress, followers their forwarded writes and
read-index rounds (each node's /metrics is scraped on its own port)."""

from __future__ import annotations

from typing import Dict

from prometheus_client.parser import text_string_to_metric_families

from harness import Cluster


def scrape(cluster: Cluster, m: int) -> Dict[str, object]:
    text = cluster.node(m).metrics_text()
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(fams, family: str, name: str = None):
    fam = fams[family]
    name = name or (f"{family}_total" if fam.type == "counter" else family)
    return [s for s in fam.samples if s.name == name]


def one(fams, family: str, name: str = None) -> float:
    found = samples(fams, family, name)
    assert len(found) == 1, found
    return found[0].value


def test_leader_exports_lag_of_each_follower(make_cluster):
    cluster = make_cluster(3)
    leader = cluster.leader()
    followers = cluster.followers(leader)
    # Writes through a follower (forwarded to the leader) and linearizable
    # reads there (a ReadIndex round each).
    c = cluster.client(followers[0])
    for i in range(20):
        assert c.set(f"k{i}", i)
        assert c.get(f"k{i}") == str(i)
    c.close()
    cluster.wait_applied_equal()

    def leader_sees_both():
        fams = scrape(cluster, leader)
        lag = samples(fams, "raftcache_raft_follower_lag_entries")
        matched = samples(fams, "raftcache_raft_follower_matched_index")
        return (fams, lag, matched) if len(lag) == 2 and len(matched) == 2 else None

    fams, lag, matched = cluster.wait_for("the leader to export two followers", leader_sees_both)
    assert one(fams, "raftcache_raft_is_leader") == 1
    ids = {cluster.node(m).info()["raft_node_id"] for m in followers}
    assert {s.labels["member"] for s in lag} == ids
    assert {s.labels["member"] for s in matched} == ids
    last = one(fams, "raftcache_raft_last_log_index")
    for s in lag:
        assert 0 <= s.value <= last
    for s in matched:
        assert 20 <= s.value <= last
    assert one(fams, "raftcache_raft_commit_index") >= 20
    assert one(fams, "raftcache_raft_voters") == 3
    assert one(fams, "raftcache_raft_term") >= 1
    # Every write replicated to both followers: at least 20 answered
    # AppendEntries each.
    assert one(fams, "raftcache_raft_append_entries_seconds",
               "raftcache_raft_append_entries_seconds_count") >= 40

    f = scrape(cluster, followers[0])
    assert one(f, "raftcache_raft_is_leader") == 0
    assert "raftcache_raft_follower_lag_entries" not in f
    assert one(f, "raftcache_forward_write_seconds", "raftcache_forward_write_seconds_count") >= 20
    assert one(f, "raftcache_raft_read_index_round_seconds",
               "raftcache_raft_read_index_round_seconds_count") >= 20
    assert one(f, "raftcache_raft_leader_changes") >= 1
    states = {s.labels["state"]: s.value for s in samples(f, "raftcache_raft_state")}
    assert states["follower"] == 1 and states["leader"] == 0

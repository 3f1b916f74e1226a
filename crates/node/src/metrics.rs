//! Prometheus metrics on `GET /metrics` (`--metrics-port`).
//!
//! Almost everything is read at scrape time from state the node keeps
//! anyway: openraft's metrics, the counters INFO reports, commandstats and
//! errorstats, the keyspace. Only what has no such source is recorded where
//! it happens: latencies into histograms with fixed buckets, and the leader
//! changes and elections a watcher task sees in openraft's server metrics.
//! Labels take bounded values only: member ids of the membership, command
//! names from the command table (anything else is `other`), error codes up
//! to [`MAX_ERROR_KINDS`].
//!
//! The response is the Prometheus text format (0.0.4), or OpenMetrics for a
//! scraper that asks for it in `Accept`.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, OnceLock};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use raftcache_raft::sled_log::SledLogStore;
use raftcache_raft::state_machine::SnapshotEvent;
use raftcache_raft::types::ShowId;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::clock::now_ms;
use crate::cluster::Cluster;
use crate::config::Args;
use crate::server::Shared;
use crate::stats::{CommandStat, LATENCY_BUCKETS_USEC};

/// Error codes exported with their own label; the rest count as `OTHER`.
pub const MAX_ERROR_KINDS: usize = 64;

/// The metrics recorded where they happen (everything else is read at
/// scrape time). One per process: a process runs one node.
pub struct Metrics {
    pub leader_changes: Counter,
    pub elections: Counter,
    pub step_downs: Counter,
    pub commands_per_entry: Histogram,
    pub forward_seconds: Histogram,
    pub read_round_seconds: Histogram,
    pub append_entries_seconds: Histogram,
    pub snapshot_build_seconds: Histogram,
    pub snapshot_install_seconds: Histogram,
}

/// Latency buckets in seconds: 100 µs to 10 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        10.0,
    ]
    .into_iter()
}

impl Metrics {
    fn new() -> Metrics {
        Metrics {
            leader_changes: Counter::default(),
            elections: Counter::default(),
            step_downs: Counter::default(),
            commands_per_entry: Histogram::new([
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
            ]),
            forward_seconds: Histogram::new(latency_buckets()),
            read_round_seconds: Histogram::new(latency_buckets()),
            append_entries_seconds: Histogram::new(latency_buckets()),
            snapshot_build_seconds: Histogram::new([
                0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            snapshot_install_seconds: Histogram::new([
                0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
        }
    }
}

/// This process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Records a snapshot's build or install time (the state machine's
/// observer, see `StateMachineStore::set_snapshot_observer`).
pub fn observe_snapshot(event: SnapshotEvent, took: std::time::Duration) {
    match event {
        SnapshotEvent::Built => METRICS.snapshot_build_seconds.observe(took.as_secs_f64()),
        SnapshotEvent::Installed => METRICS.snapshot_install_seconds.observe(took.as_secs_f64()),
    }
}

/// What the scrape-time collector reads: set once the node is up.
pub struct Sources {
    pub shared: Arc<Shared>,
    /// The durable Raft log, if the node has a data directory.
    pub log: Option<SledLogStore>,
}

/// A registry with every metric: the recorded ones and a collector over
/// `sources` (which exports nothing until they are set).
pub fn registry(sources: Arc<OnceLock<Sources>>) -> Registry {
    let mut registry = Registry::default();
    register_recorded(&mut registry);
    registry.register_collector(Box::new(Live(sources)));
    registry
}

fn register_recorded(registry: &mut Registry) {
    let m = &*METRICS;
    registry.register(
        "raftcache_raft_leader_changes",
        "Times this node saw the current leader change to another node",
        m.leader_changes.clone(),
    );
    registry.register(
        "raftcache_raft_elections",
        "Elections this node started (times it stood as a candidate)",
        m.elections.clone(),
    );
    registry.register(
        "raftcache_raft_step_downs",
        "Times this node stepped down as leader because no majority acknowledged it (check-quorum)",
        m.step_downs.clone(),
    );
    registry.register(
        "raftcache_raft_commands_per_entry",
        "Client operations per log entry proposed by this node (group commit)",
        m.commands_per_entry.clone(),
    );
    registry.register(
        "raftcache_forward_write_seconds",
        "Time for a batch of writes forwarded from this follower to be answered by the leader",
        m.forward_seconds.clone(),
    );
    registry.register(
        "raftcache_raft_append_entries_seconds",
        "Round trip of an AppendEntries (replication or heartbeat) from this leader to a follower, answered",
        m.append_entries_seconds.clone(),
    );
    registry.register(
        "raftcache_raft_read_index_round_seconds",
        "Time of one read-index round (leadership confirmation, or a follower's ReadIndex to the leader, then applying up to the read index)",
        m.read_round_seconds.clone(),
    );
    registry.register(
        "raftcache_snapshot_build_seconds",
        "Time to build a snapshot and make it current",
        m.snapshot_build_seconds.clone(),
    );
    registry.register(
        "raftcache_snapshot_install_seconds",
        "Time to verify and install a snapshot received from the leader",
        m.snapshot_install_seconds.clone(),
    );
}

/// Renders `registry` in the Prometheus text format, or OpenMetrics.
pub fn render(registry: &Registry, openmetrics: bool) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let encoded = if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, registry)
    };
    if let Err(e) = encoded {
        debug!(error = %e, "encoding metrics");
    }
    out
}

// --- the scrape-time collector -------------------------------------------------

#[derive(Debug)]
struct Live(Arc<OnceLock<Sources>>);

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}

impl Collector for Live {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        match self.0.get() {
            Some(sources) => Sample::gather(sources).encode(encoder),
            None => Ok(()),
        }
    }
}

/// A follower's replication progress as the leader sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Follower {
    pub member: String,
    pub matched: u64,
    pub lag: u64,
}

/// The values exported at one scrape, gathered first (each lock held only
/// while it is read) and then encoded.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    // Raft
    pub term: u64,
    pub state: &'static str,
    pub is_leader: bool,
    pub quorum_lost: bool,
    pub ready: bool,
    pub last_log_index: u64,
    /// On the leader: the highest index a majority of every configuration holds.
    pub commit_index: Option<u64>,
    pub applied_index: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
    pub voters: usize,
    pub learners: usize,
    pub followers: Vec<Follower>,
    pub proposals: u64,
    pub proposed_commands: u64,
    pub abandoned: u64,
    pub read_rounds: u64,
    pub log_bytes: Option<u64>,
    pub snapshot_bytes: u64,
    pub peer_failures: Vec<(String, u64)>,
    // Cache
    pub commands: Vec<(String, CommandStat)>,
    pub errors: Vec<(String, u64)>,
    pub commands_processed: u64,
    pub error_replies: u64,
    /// (db, keys, keys with a TTL) of every non-empty database.
    pub keyspace: Vec<(usize, u64, u64)>,
    pub expired_keys: u64,
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    pub evicted_keys: u64,
    /// The engine's accounting of the data, and the limit (0: none).
    pub used_memory: u64,
    pub maxmemory: u64,
    pub connected_clients: u64,
    pub blocked_clients: u64,
    pub pubsub_clients: u64,
    pub total_connections: u64,
    pub rejected_connections: u64,
    pub net_input_bytes: u64,
    pub net_output_bytes: u64,
    // Process
    pub uptime_seconds: u64,
    pub rss_bytes: u64,
    pub cpu_sys_seconds: f64,
    pub cpu_user_seconds: f64,
}

impl Sample {
    /// Reads the node's state now.
    pub fn gather(sources: &Sources) -> Sample {
        let shared = &sources.shared;
        let mut s = Sample::default();
        raft_sample(&shared.cluster, &mut s);
        s.log_bytes = sources.log.as_ref().map(SledLogStore::size_on_disk);
        s.snapshot_bytes = shared.cluster.sm.compaction_sizes().1;
        s.peer_failures = shared
            .cluster
            .peer_failures()
            .into_iter()
            .map(|(id, n)| (ShowId(id).to_string(), n))
            .collect();

        let calls = &shared.stats.calls;
        s.commands = bounded_commands(calls.snapshot());
        s.errors = bounded_errors(calls.error_counts());
        s.error_replies = calls.total_error_replies.load(Ordering::Relaxed);
        s.commands_processed = shared.stats.commands.load(Ordering::Relaxed);
        s.expired_keys = shared.stats.expired_keys.load(Ordering::Relaxed);
        s.keyspace_hits = shared.cluster.keyspace_hits.load(Ordering::Relaxed);
        s.keyspace_misses = shared.cluster.keyspace_misses.load(Ordering::Relaxed);
        s.net_input_bytes = shared.stats.net_input_bytes.load(Ordering::Relaxed);
        s.net_output_bytes = shared.stats.net_output_bytes.load(Ordering::Relaxed);
        {
            let machine = shared.cluster.sm.read();
            let state = &machine.state;
            let now = state.read_time(now_ms());
            s.evicted_keys = state.evicted_keys();
            s.used_memory = state.used_memory();
            s.maxmemory = state.memory().maxmemory;
            for (i, db) in state.dbs().iter().enumerate() {
                let keys = db.visible_len(now) as u64;
                if keys > 0 {
                    s.keyspace.push((i, keys, db.visible_expires(now) as u64));
                }
            }
        }
        s.connected_clients = shared.clients.count() as u64;
        s.blocked_clients = shared.hub.blocked_count() as u64;
        s.pubsub_clients = shared.hub.subscribed_count() as u64;
        s.total_connections = shared.clients.total_connections.load(Ordering::Relaxed);
        s.rejected_connections = shared.clients.rejected_connections.load(Ordering::Relaxed);
        s.uptime_seconds = shared.started.elapsed().as_secs();
        s.rss_bytes = crate::info::rss_bytes();
        (s.cpu_sys_seconds, s.cpu_user_seconds) = crate::info::cpu_times();
        s
    }

    /// Writes every value as a metric family.
    pub fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut enc;
        // Raft
        gauge(e, "raftcache_raft_term", "Current Raft term", self.term)?;
        gauge(e, "raftcache_raft_is_leader", "1 if this node is the Raft leader", self.is_leader)?;
        {
            let mut m = e.encode_descriptor(
                "raftcache_raft_state",
                "This node's Raft role (1 for the current one)",
                None,
                MetricType::Gauge,
            )?;
            for role in ["leader", "follower", "candidate", "learner", "shutdown"] {
                ConstGauge::new(u64::from(role == self.state))
                    .encode(m.encode_family(&[("state", role)])?)?;
            }
        }
        gauge(
            e,
            "raftcache_raft_quorum_lost",
            "1 while this node leads but has heard from no majority for the longest election timeout",
            self.quorum_lost,
        )?;
        gauge(
            e,
            "raftcache_raft_ready",
            "1 once this node is a voter of a settled membership with a usable leader",
            self.ready,
        )?;
        gauge(
            e,
            "raftcache_raft_last_log_index",
            "Index of the last entry in this node's log",
            self.last_log_index,
        )?;
        if let Some(commit) = self.commit_index {
            gauge(
                e,
                "raftcache_raft_commit_index",
                "Highest log index held by a majority (exported by the leader)",
                commit,
            )?;
        }
        gauge(
            e,
            "raftcache_raft_applied_index",
            "Index of the last entry applied to the state machine",
            self.applied_index,
        )?;
        gauge(
            e,
            "raftcache_raft_snapshot_index",
            "Log index of the newest snapshot",
            self.snapshot_index,
        )?;
        gauge(
            e,
            "raftcache_raft_purged_index",
            "Log index up to which the log was compacted",
            self.purged_index,
        )?;
        gauge(e, "raftcache_raft_voters", "Voters in the membership", self.voters)?;
        gauge(e, "raftcache_raft_learners", "Learners in the membership", self.learners)?;
        if self.is_leader {
            let mut m = e.encode_descriptor(
                "raftcache_raft_follower_matched_index",
                "Highest log index known to be replicated to each follower (leader only)",
                None,
                MetricType::Gauge,
            )?;
            for f in &self.followers {
                ConstGauge::new(f.matched)
                    .encode(m.encode_family(&[("member", f.member.as_str())])?)?;
            }
            let mut m = e.encode_descriptor(
                "raftcache_raft_follower_lag_entries",
                "Log entries each follower is behind the leader's last log index (leader only)",
                None,
                MetricType::Gauge,
            )?;
            for f in &self.followers {
                ConstGauge::new(f.lag)
                    .encode(m.encode_family(&[("member", f.member.as_str())])?)?;
            }
        }
        counter(
            e,
            "raftcache_raft_proposals",
            "Log entries proposed by this node's proposer (batches of client writes)",
            self.proposals,
        )?;
        counter(
            e,
            "raftcache_raft_proposed_commands",
            "Client operations in the entries this node proposed",
            self.proposed_commands,
        )?;
        counter(
            e,
            "raftcache_raft_abandoned_attempts",
            "Proposal attempts given up because the leader changed (retried)",
            self.abandoned,
        )?;
        counter(
            e,
            "raftcache_raft_read_index_rounds",
            "Read-index rounds run by this node",
            self.read_rounds,
        )?;
        if let Some(bytes) = self.log_bytes {
            gauge(
                e,
                "raftcache_raft_log_disk_bytes",
                "Size of the Raft log's database on disk",
                bytes,
            )?;
        }
        gauge(
            e,
            "raftcache_snapshot_bytes",
            "Size of the newest snapshot file",
            self.snapshot_bytes,
        )?;
        {
            let mut m = e.encode_descriptor(
                "raftcache_raft_peer_rpc_failures",
                "Raft RPCs to each peer that failed (unreachable, timed out)",
                None,
                MetricType::Counter,
            )?;
            for (peer, n) in &self.peer_failures {
                ConstCounter::new(*n).encode(m.encode_family(&[("member", peer.as_str())])?)?;
            }
        }

        // Cache
        {
            let mut m = e.encode_descriptor(
                "raftcache_commands",
                "Commands run, by command (INFO commandstats calls)",
                None,
                MetricType::Counter,
            )?;
            for (name, stat) in &self.commands {
                ConstCounter::new(stat.calls)
                    .encode(m.encode_family(&[("cmd", name.as_str())])?)?;
            }
            let mut m = e.encode_descriptor(
                "raftcache_commands_rejected",
                "Commands refused before they ran (arity, NOAUTH, …), by command",
                None,
                MetricType::Counter,
            )?;
            for (name, stat) in &self.commands {
                ConstCounter::new(stat.rejected)
                    .encode(m.encode_family(&[("cmd", name.as_str())])?)?;
            }
            let mut m = e.encode_descriptor(
                "raftcache_commands_failed",
                "Commands that ran and answered an error, by command",
                None,
                MetricType::Counter,
            )?;
            for (name, stat) in &self.commands {
                ConstCounter::new(stat.failed)
                    .encode(m.encode_family(&[("cmd", name.as_str())])?)?;
            }
            let mut m = e.encode_descriptor(
                "raftcache_command_duration_seconds",
                "Time from a command's start on this node to its reply (writes include replication), by command",
                None,
                MetricType::Histogram,
            )?;
            for (name, stat) in &self.commands {
                let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_USEC
                    .iter()
                    .map(|us| *us as f64 / 1e6)
                    .chain(std::iter::once(f64::INFINITY))
                    .zip(stat.buckets.iter().copied())
                    .collect();
                m.encode_family(&[("cmd", name.as_str())])?.encode_histogram::<NoLabelSet>(
                    stat.usec as f64 / 1e6,
                    stat.calls,
                    &buckets,
                    None,
                )?;
            }
        }
        {
            let mut m = e.encode_descriptor(
                "raftcache_errors",
                "Error replies sent to clients, by error code (INFO errorstats)",
                None,
                MetricType::Counter,
            )?;
            for (kind, n) in &self.errors {
                ConstCounter::new(*n).encode(m.encode_family(&[("kind", kind.as_str())])?)?;
            }
        }
        counter(e, "raftcache_error_replies", "Error replies sent to clients", self.error_replies)?;
        counter(
            e,
            "raftcache_commands_processed",
            "Commands received from clients",
            self.commands_processed,
        )?;
        {
            let mut m = e.encode_descriptor(
                "raftcache_keys",
                "Keys in each non-empty database",
                None,
                MetricType::Gauge,
            )?;
            for (db, keys, _) in &self.keyspace {
                ConstGauge::new(*keys).encode(m.encode_family(&[("db", db.to_string())])?)?;
            }
            let mut m = e.encode_descriptor(
                "raftcache_keys_with_expiry",
                "Keys with a TTL in each non-empty database",
                None,
                MetricType::Gauge,
            )?;
            for (db, _, expires) in &self.keyspace {
                ConstGauge::new(*expires).encode(m.encode_family(&[("db", db.to_string())])?)?;
            }
        }
        counter(
            e,
            "raftcache_expired_keys",
            "Keys removed by active expiry proposed by this node (as leader)",
            self.expired_keys,
        )?;
        counter(
            e,
            "raftcache_keyspace_hits",
            "Key lookups by reads served here that found the key",
            self.keyspace_hits,
        )?;
        counter(
            e,
            "raftcache_keyspace_misses",
            "Key lookups by reads served here that found no key",
            self.keyspace_misses,
        )?;
        counter(
            e,
            "raftcache_evicted_keys",
            "Keys this node's engine evicted under maxmemory (every replica evicts the same keys)",
            self.evicted_keys,
        )?;
        gauge(
            e,
            "raftcache_used_memory_bytes",
            "The engine's accounting of the data (what maxmemory limits; INFO used_memory)",
            self.used_memory,
        )?;
        gauge(e, "raftcache_maxmemory_bytes", "maxmemory (0: no limit)", self.maxmemory)?;
        gauge(
            e,
            "raftcache_connected_clients",
            "Client connections open now",
            self.connected_clients,
        )?;
        gauge(
            e,
            "raftcache_blocked_clients",
            "Clients waiting in a blocking command",
            self.blocked_clients,
        )?;
        gauge(
            e,
            "raftcache_pubsub_clients",
            "Clients with at least one subscription",
            self.pubsub_clients,
        )?;
        counter(
            e,
            "raftcache_connections_received",
            "Client connections accepted",
            self.total_connections,
        )?;
        counter(
            e,
            "raftcache_connections_rejected",
            "Client connections refused (maxclients)",
            self.rejected_connections,
        )?;
        counter(e, "raftcache_net_input_bytes", "Bytes read from clients", self.net_input_bytes)?;
        counter(
            e,
            "raftcache_net_output_bytes",
            "Bytes written to clients",
            self.net_output_bytes,
        )?;

        // Process
        gauge(
            e,
            "raftcache_uptime_seconds",
            "Seconds since the node started",
            self.uptime_seconds,
        )?;
        gauge(
            e,
            "raftcache_resident_memory_bytes",
            "Resident set size of the process",
            self.rss_bytes,
        )?;
        counter(
            e,
            "raftcache_cpu_system_seconds",
            "System CPU time of the process",
            self.cpu_sys_seconds,
        )?;
        counter(
            e,
            "raftcache_cpu_user_seconds",
            "User CPU time of the process",
            self.cpu_user_seconds,
        )?;
        Ok(())
    }
}

fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: impl Into<GaugeValue>,
) -> Result<(), std::fmt::Error> {
    let GaugeValue(v) = v.into();
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn counter<V>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: V,
) -> Result<(), std::fmt::Error>
where
    V: prometheus_client::encoding::EncodeCounterValue + Clone,
    ConstCounter<V>: EncodeMetric,
{
    let m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

/// A gauge's value (integers and flags as i64).
struct GaugeValue(i64);

impl From<u64> for GaugeValue {
    fn from(v: u64) -> Self {
        GaugeValue(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<usize> for GaugeValue {
    fn from(v: usize) -> Self {
        GaugeValue(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<bool> for GaugeValue {
    fn from(v: bool) -> Self {
        GaugeValue(i64::from(v))
    }
}

/// Fills the Raft part of `s` from the cluster's view of Raft.
fn raft_sample(cluster: &Cluster, s: &mut Sample) {
    let v = cluster.view();
    s.term = v.term;
    s.state = v.role;
    s.is_leader = v.is_leader;
    s.last_log_index = v.last_log_index;
    s.applied_index = v.applied_index;
    s.snapshot_index = v.snapshot_index;
    s.purged_index = v.purged_index;
    s.voters = v.voters;
    s.learners = v.learners;
    s.followers = v
        .followers
        .iter()
        .map(|f| Follower {
            member: ShowId(f.node).to_string(),
            matched: f.matched,
            lag: v.last_log_index.saturating_sub(f.matched),
        })
        .collect();
    s.commit_index = v.commit_index;
    s.quorum_lost = cluster.quorum_lost();
    s.ready = cluster.ready();
    let p = &cluster.proposer;
    s.proposals = p.batches.load(Ordering::Relaxed);
}

/// Per-command counters with a label only for known command names (and
/// known subcommands of container commands); everything else is summed
/// into `other`.
fn bounded_commands(stats: Vec<(String, CommandStat)>) -> Vec<(String, CommandStat)> {
    let mut out: Vec<(String, CommandStat)> = Vec::with_capacity(stats.len());
    let mut other: Option<CommandStat> = None;
    for (name, stat) in stats {
        if known_command(&name) {
            out.push((name, stat));
        } else {
            other.get_or_insert_with(CommandStat::default).add(&stat);
        }
    }
    if let Some(other) = other {
        out.push(("other".into(), other));
    }
    out
}

fn known_command(name: &str) -> bool {
    match name.split_once('|') {
        None => raftcache_sm::command::lookup(name.as_bytes()).is_some_and(|s| s.name == name),
        Some(_) => crate::subcommand::SUBCOMMANDS.iter().any(|(full, _)| *full == name),
    }
}

/// Error counts by code, at most [`MAX_ERROR_KINDS`] codes (the rest as `OTHER`).
fn bounded_errors(errors: Vec<(String, u64)>) -> Vec<(String, u64)> {
    let mut out = Vec::with_capacity(errors.len().min(MAX_ERROR_KINDS + 1));
    let mut other = 0;
    for (code, n) in errors {
        let plain = !code.is_empty()
            && code.len() <= 32
            && code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if plain && out.len() < MAX_ERROR_KINDS {
            out.push((code, n));
        } else {
            other += n;
        }
    }
    if other > 0 {
        out.push(("OTHER".into(), other));
    }
    out
}

// --- what the cluster layer reports ------------------------------------------------

/// Records what the cluster layer reports (installed with
/// `raftcache_cluster::observe::set` at startup).
pub struct Recorder;

/// The AppendEntries round-trip observer (`raftcache_raft::network`).
pub fn observe_append(took: std::time::Duration) {
    METRICS.append_entries_seconds.observe(took.as_secs_f64());
}

impl raftcache_cluster::observe::Observer for Recorder {
    fn entry_proposed(&self, ops: usize) {
        METRICS.commands_per_entry.observe(ops as f64);
    }
    fn forward_done(&self, took: std::time::Duration) {
        METRICS.forward_seconds.observe(took.as_secs_f64());
    }
    fn read_round(&self, took: std::time::Duration) {
        METRICS.read_round_seconds.observe(took.as_secs_f64());
    }
    fn election(&self) {
        METRICS.elections.inc();
    }
    fn leader_changed(&self) {
        METRICS.leader_changes.inc();
    }
    fn stepped_down(&self) {
        METRICS.step_downs.inc();
    }
}

// --- the HTTP endpoint -----------------------------------------------------------------

/// Binds the metrics port on the first `--bind` address (a port that cannot
/// be bound fails the start, as the other ports do).
pub async fn bind(args: &Args) -> anyhow::Result<TcpListener> {
    let addr = raftcache_cluster::bootstrap::listen_addr(&args.bind, args.metrics_port)?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics port {addr}"))?;
    let port = listener.local_addr()?.port();
    info!(port, "serving Prometheus metrics on /metrics");
    Ok(listener)
}

/// Serves `GET /metrics` until `shutdown`.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                debug!(error = %e, "metrics accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let registry = registry.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let registry = registry.clone();
                async move { Ok::<_, Infallible>(respond(&registry, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

fn respond(registry: &Registry, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &'static str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(content_type),
        );
        r
    };
    if req.uri().path() != "/metrics" {
        return reply(StatusCode::NOT_FOUND, "text/plain", "not found: try /metrics\n".into());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET /metrics\n".into());
    }
    let openmetrics = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let body = render(registry, openmetrics);
    if openmetrics {
        reply(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", body)
    } else {
        reply(StatusCode::OK, prometheus_client::encoding::prometheus_text::CONTENT_TYPE, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(Sample);

    impl Collector for Fixed {
        fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            self.0.encode(encoder)
        }
    }

    fn sample() -> Sample {
        let mut get = CommandStat { calls: 3, usec: 300, ..Default::default() };
        get.buckets[0] = 2;
        get.buckets[3] = 1;
        Sample {
            term: 4,
            state: "leader",
            is_leader: true,
            last_log_index: 120,
            commit_index: Some(118),
            applied_index: 118,
            voters: 3,
            followers: vec![
                Follower { member: "2.0".into(), matched: 118, lag: 2 },
                Follower { member: "3.0".into(), matched: 100, lag: 20 },
            ],
            proposals: 7,
            commands: bounded_commands(vec![
                ("get".into(), get),
                ("set".into(), CommandStat { calls: 5, usec: 50, ..Default::default() }),
                ("client|list".into(), CommandStat { calls: 1, ..Default::default() }),
                ("client|bogus".into(), CommandStat { calls: 2, ..Default::default() }),
                ("nosuchcommand".into(), CommandStat { calls: 1, ..Default::default() }),
            ]),
            errors: bounded_errors(vec![
                ("ERR".into(), 2),
                ("WRONGTYPE".into(), 1),
                ("bad code".into(), 4),
            ]),
            keyspace: vec![(0, 10, 2), (3, 1, 0)],
            connected_clients: 2,
            ..Default::default()
        }
    }

    fn render_sample(openmetrics: bool) -> String {
        let mut registry = Registry::default();
        register_recorded(&mut registry);
        registry.register_collector(Box::new(Fixed(sample())));
        METRICS.commands_per_entry.observe(3.0);
        render(&registry, openmetrics)
    }

    #[test]
    fn the_registry_renders_valid_prometheus_text() {
        let text = render_sample(false);
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("parses");
        let find = |name: &str, labels: &[(&str, &str)]| {
            scrape
                .samples
                .iter()
                .find(|s| {
                    s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
                })
                .unwrap_or_else(|| panic!("no sample {name} {labels:?} in\n{text}"))
                .value
                .clone()
        };
        use prometheus_parse::Value;
        assert_eq!(find("raftcache_raft_term", &[]), Value::Gauge(4.0));
        assert_eq!(find("raftcache_raft_is_leader", &[]), Value::Gauge(1.0));
        assert_eq!(find("raftcache_raft_state", &[("state", "leader")]), Value::Gauge(1.0));
        assert_eq!(
            find("raftcache_raft_follower_lag_entries", &[("member", "3.0")]),
            Value::Gauge(20.0)
        );
        assert_eq!(find("raftcache_raft_proposals_total", &[]), Value::Counter(7.0));
        assert_eq!(find("raftcache_commands_total", &[("cmd", "set")]), Value::Counter(5.0));
        assert_eq!(
            find("raftcache_commands_total", &[("cmd", "client|list")]),
            Value::Counter(1.0)
        );
        // Unknown names share one label value.
        assert_eq!(find("raftcache_commands_total", &[("cmd", "other")]), Value::Counter(3.0));
        assert_eq!(find("raftcache_errors_total", &[("kind", "WRONGTYPE")]), Value::Counter(1.0));
        assert_eq!(find("raftcache_errors_total", &[("kind", "OTHER")]), Value::Counter(4.0));
        assert_eq!(find("raftcache_keys", &[("db", "3")]), Value::Gauge(1.0));
        match find("raftcache_command_duration_seconds", &[("cmd", "get")]) {
            Value::Histogram(buckets) => {
                let at = |le: f64| buckets.iter().find(|b| b.less_than == le).map(|b| b.count);
                assert_eq!(at(0.0001), Some(2.0), "{buckets:?}");
                assert_eq!(at(0.001), Some(3.0), "cumulative: {buckets:?}");
                assert_eq!(at(f64::INFINITY), Some(3.0), "{buckets:?}");
            }
            other => panic!("command latency is not a histogram: {other:?}"),
        }
        assert!(matches!(find("raftcache_raft_commands_per_entry", &[]), Value::Histogram(_)));
        assert!(matches!(find("raftcache_raft_leader_changes_total", &[]), Value::Counter(_)));
        // Every family has help text.
        for family in ["raftcache_raft_term", "raftcache_commands_total", "raftcache_keys"] {
            assert!(scrape.docs.get(family).is_some_and(|d| !d.is_empty()), "{family} has no HELP");
        }
    }

    #[test]
    fn openmetrics_ends_with_eof() {
        let text = render_sample(true);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE raftcache_commands counter"));
    }
}

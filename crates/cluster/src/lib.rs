//! The node's place in the Raft group: bootstrap, leadership, and the paths a
//! client command takes.
//!
//! # Writes
//! Connections hand groups of consecutive write commands to the
//! [`proposer`]. It batches the groups waiting at that moment into one log
//! entry (group commit), gives the batch the next sequence number of this
//! node's session, and submits it: to the local Raft if this node leads, else
//! forwarded to the leader. A batch whose outcome is unknown (the leader died,
//! leadership changed) is retried with the same sequence number until it
//! succeeds or `request-timeout` passes; the engine applies a given
//! `(session, seq)` at most once, so a retry never runs a command twice.
//!
//! # Reads
//! `linearizable` reads on the leader wait for one leadership confirmation
//! (read index) shared by all reads that arrived before it started, then for
//! the state machine to reach the read index, and read locally. Followers
//! forward them to the leader. `lease` reads skip the confirmation while the
//! leader heard from a quorum within the lease. `stale` reads are local.
//!
//! # Bootstrap, incarnations and membership
//! See [`bootstrap`] and [`membership`].
//!
//! # The crate's surface
//! The binary starts a node with [`bootstrap::start`] and typed
//! [`settings::Settings`], then uses the [`Cluster`] it returns: writes
//! ([`Cluster::write`], [`Cluster::write_ops`], [`Cluster::propose_upkeep`]),
//! reads (the read barrier, the engine through `sm`), status
//! ([`Cluster::view`], [`Cluster::leader`], [`Cluster::ready`], INFO fields)
//! and shutdown. openraft's types stay inside this crate; what the binary
//! wants to measure it gets through [`observe`].

// gRPC handlers return `tonic::Status`, which is large by design; boxing it
// would only add an allocation to every error path.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod bootstrap;
pub mod check_quorum;
pub mod clock;
pub mod compaction;
pub mod confirm;
pub mod forward;
pub mod membership;
pub mod observe;
pub mod peer;
pub mod prevote;
pub mod process;
pub mod proposer;
pub mod reads;
pub mod reform;
pub mod settings;
pub mod touch;
pub mod tracking;
pub mod view;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftcache_proto::raft::InfoRequest;
use raftcache_raft::network::Network;
use raftcache_raft::openraft::{RaftMetrics, ServerState};
use raftcache_raft::state_machine::StateMachineStore;
use raftcache_raft::types::{member_of, NodeId, Raft, ShowId, VoteCell};
use raftcache_sm::{Op, Reply};

use self::confirm::Confirmer;
use self::proposer::Proposer;
use self::reads::ReadBarrier;

/// How often a write waiting on a leader checks that it still is one.
const LEADER_POLL: Duration = Duration::from_millis(20);

/// How reads are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadConsistency {
    Linearizable,
    Lease,
    Stale,
}

impl ReadConsistency {
    /// The mode `--read-consistency` names, if any.
    pub fn from_name(s: &str) -> Option<ReadConsistency> {
        match s {
            "linearizable" => Some(ReadConsistency::Linearizable),
            "lease" => Some(ReadConsistency::Lease),
            "stale" => Some(ReadConsistency::Stale),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ReadConsistency::Linearizable => "linearizable",
            ReadConsistency::Lease => "lease",
            ReadConsistency::Stale => "stale",
        }
    }
}

/// Settings of the cluster paths.
#[derive(Clone, Debug)]
pub struct Options {
    pub request_timeout: Duration,
    pub read_consistency: ReadConsistency,
    /// Answer -MOVED instead of proxying to the leader.
    pub redirect: bool,
    /// How long after a quorum acknowledgement a leader may serve lease reads.
    pub lease: Duration,
    /// A leader that has heard from no majority for this long does not count
    /// as a leader for this node's own requests (see [`Cluster::usable_leader`]).
    pub quorum_timeout: Duration,
    /// A node that has had no usable leader for this long answers its
    /// clients at once instead of waiting out `request_timeout`.
    pub leaderless_timeout: Duration,
    /// The longest election timeout: openraft's leader lease, which a
    /// follower must see pass without hearing from its leader before it
    /// votes for another node.
    pub election_timeout_max: Duration,
    /// The `--appendfsync` policy, or "none" for a memory-only node.
    pub appendfsync: String,
    /// The Redis version the server reports.
    pub redis_version: &'static str,
    /// Test-only switches that break safety on purpose (see
    /// [`settings::UnsafeSwitches`]); all off unless a test asks.
    pub unsafe_switches: settings::UnsafeSwitches,
}

/// Why a command could not be served; each maps to one error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterError {
    /// No leader was known within request-timeout: nothing was applied.
    NoLeader,
    /// The command may or may not have been applied.
    Uncertain,
    /// Redirect mode: the leader's client address.
    Moved(String),
    /// The node is shutting down.
    ShuttingDown,
}

impl ClusterError {
    /// The error reply a client sees.
    pub fn reply(&self) -> Reply {
        match self {
            ClusterError::NoLeader => {
                Reply::err("CLUSTERDOWN no leader: the cluster has no elected leader (request-timeout expired)")
            }
            ClusterError::Uncertain => Reply::err(
                "UNCERTAIN the outcome of this command is unknown: it may or may not have been applied \
                 (leader lost before it answered, request-timeout expired)",
            ),
            ClusterError::Moved(addr) => Reply::error(format!("MOVED 0 {addr}")),
            ClusterError::ShuttingDown => Reply::err("ERR the node is shutting down"),
        }
    }
}

/// One client command: its database and arguments.
#[derive(Clone, Debug)]
pub struct Command {
    pub db: u32,
    pub argv: Vec<Bytes>,
}

impl Command {
    pub fn op(self) -> Op {
        Op::Command { db: self.db, argv: self.argv }
    }
}

/// Where the leader is, as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leader {
    Me,
    Other { id: NodeId, raft_addr: String },
    Unknown,
}

/// This node's membership in the Raft group.
pub struct Cluster {
    /// This node's Raft instance; replaced only when the cluster is
    /// re-formed from this node (see [`reform`]).
    raft: arc_swap::ArcSwap<Raft>,
    /// What a new Raft instance is made of (see [`reform`]).
    pub(crate) parts: reform::RaftParts,
    /// Set once the node shuts down.
    stopping: std::sync::atomic::AtomicBool,
    /// Members that asked to join as a new incarnation (see [`reform`]).
    pub(crate) rejoins: reform::Rejoins,
    /// This node's last leadership (see [`reform`]).
    tenure: reform::Tenure,
    /// One re-form at a time.
    reforming: tokio::sync::Mutex<()>,
    /// The wedge this node saw at its last check (see [`reform`]).
    wedged: Mutex<Option<reform::Wedge>>,
    /// Set while this node waits to join a cluster that no reachable member
    /// holds (see `bootstrap`'s join).
    orphaned: std::sync::atomic::AtomicBool,
    /// How long the membership change in the log has waited to commit, as
    /// of the last check (see `reform`'s run).
    change_pending: Mutex<Option<Duration>>,
    /// Set while no other voter answers this node (see [`prevote`]).
    alone: std::sync::atomic::AtomicBool,
    pub sm: StateMachineStore,
    pub network: Network,
    pub node_id: NodeId,
    /// Member id → Raft address, from --peers.
    pub peers: BTreeMap<u32, String>,
    pub resp_addr: String,
    pub admin_addr: String,
    pub options: Options,
    pub proposer: Proposer,
    pub reads: ReadBarrier,
    /// Streams to the leader for forwarded writes.
    pub forwarder: forward::Forwarder,
    /// Read-index rounds to the voters.
    pub confirmer: Confirmer,
    /// This node's durable vote (see [`confirm`]).
    pub vote: VoteCell,
    /// Client (RESP) addresses of other nodes, learned through Info.
    resp_addrs: Mutex<HashMap<NodeId, String>>,
    /// Admin addresses of other nodes, learned through Info.
    admin_addrs: Mutex<HashMap<NodeId, String>>,
    /// Key lookups by reads served here that found a key, and that did not
    /// (INFO keyspace_hits / keyspace_misses).
    pub keyspace_hits: std::sync::atomic::AtomicU64,
    pub keyspace_misses: std::sync::atomic::AtomicU64,
    /// When this node started (admin Status's uptime).
    pub started: Instant,
    /// The data directory, if any (admin Status's log size).
    pub data_dir: Option<std::path::PathBuf>,
    /// One membership change or leadership transfer at a time.
    admin_lock: tokio::sync::Mutex<()>,
    /// Set while this leader hands leadership over: it proposes nothing
    /// (writes are refused, and retried by their origin once the new leader
    /// is known), so that its followers' leader leases run out.
    handing_over: std::sync::atomic::AtomicBool,
    /// Since when this node has seen no usable leader (as last checked).
    leaderless_since: Mutex<Option<Instant>>,
    /// Keys this node's clients read, for an LRU/LFU policy (see [`touch`]).
    pub touches: touch::Touches,
    /// Client-side caching across nodes (see [`tracking`]).
    pub tracking: tracking::Tracking,
}

impl Cluster {
    /// This node's Raft instance (the current one: see [`reform`]).
    pub(crate) fn raft(&self) -> std::sync::Arc<Raft> {
        self.raft.load_full()
    }

    /// The wedge this node saw at its last check, if any (see [`reform`]).
    pub fn wedged(&self) -> Option<reform::Wedge> {
        self.wedged.lock().expect("wedged lock").clone()
    }

    /// True while no quorum can form without an operator or a re-form: a
    /// wedge (see [`reform`]), or this node waits to join a cluster that no
    /// reachable member holds.
    pub fn stuck(&self) -> bool {
        self.wedged().is_some() || self.orphaned.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn set_change_pending(&self, waited: Option<Duration>) {
        *self.change_pending.lock().expect("change lock") = waited;
    }

    /// How long the last membership change in the log has waited to commit
    /// (`None`: it is committed).
    pub fn change_pending(&self) -> Option<Duration> {
        *self.change_pending.lock().expect("change lock")
    }

    pub(crate) fn set_orphaned(&self, orphaned: bool) {
        self.orphaned.store(orphaned, std::sync::atomic::Ordering::Relaxed);
    }

    /// True once the node is shutting down.
    pub fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Current metrics.
    pub fn metrics(&self) -> RaftMetrics<NodeId, raftcache_raft::openraft::BasicNode> {
        self.raft().metrics().borrow().clone()
    }

    /// The leader as this node knows it now.
    pub fn leader(&self) -> Leader {
        let metrics = self.raft().metrics();
        let m = metrics.borrow();
        match m.current_leader {
            Some(id) if id == self.node_id && m.state == ServerState::Leader => Leader::Me,
            Some(id) if id != self.node_id => {
                match m.membership_config.membership().get_node(&id) {
                    Some(node) => Leader::Other { id, raft_addr: node.addr.clone() },
                    None => Leader::Unknown,
                }
            }
            _ => Leader::Unknown,
        }
    }

    /// While this node leads: how long since a majority of the voters last
    /// acknowledged it (`Some(None)`: none has yet; zero for a single
    /// voter). `None` when it does not lead.
    fn quorum_ack_age(&self) -> Option<Option<Duration>> {
        let metrics = self.raft().metrics();
        let m = metrics.borrow();
        if m.state != ServerState::Leader || m.current_leader != Some(self.node_id) {
            return None;
        }
        if m.membership_config.membership().voter_ids().count() <= 1 {
            return Some(Some(Duration::ZERO));
        }
        Some(m.millis_since_quorum_ack.map(Duration::from_millis))
    }

    /// True if this node leads a group of several voters but has heard from
    /// no majority of them for `quorum_timeout` (longer than the longest
    /// election timeout): the other voters have elected, or are electing,
    /// another leader. openraft 0.9 has no check-quorum step-down, so the
    /// node stays leader in Raft's sense until it hears of the new term; this
    /// is how the node itself knows it is cut off.
    pub fn quorum_lost(&self) -> bool {
        matches!(self.quorum_ack_age(), Some(Some(age)) if age > self.options.quorum_timeout)
    }

    /// True if this node leads and a majority of the voters acknowledged it
    /// within `quorum_timeout`. A node that restarts with a committed vote
    /// for itself is a leader to openraft at once, before anyone has heard
    /// from it: it is not one that a restarting peer may join (its old
    /// incarnation would then be missing from a quorum that can no longer
    /// form).
    pub fn leads_with_quorum(&self) -> bool {
        matches!(self.quorum_ack_age(), Some(Some(age)) if age <= self.options.quorum_timeout)
    }

    /// True once this node may be counted on: a voter of a settled (not
    /// joint) membership in which it is its member's only incarnation, with
    /// a usable leader (itself with a quorum, or another). A restarted node
    /// that rejoins as a new incarnation is a learner until it has caught up,
    /// and its old incarnation stays a voter until the leader swaps them:
    /// restarting another node before this turns true can leave the dead
    /// incarnations a majority of the voters. It is the signal rolling
    /// restarts wait for (INFO `raft_ready`, the admin Status's `ready`).
    pub fn ready(&self) -> bool {
        let metrics = self.raft().metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let settled = membership.get_joint_config().len() == 1;
        let voter = membership.voter_ids().any(|id| id == self.node_id);
        let me = member_of(self.node_id);
        let alone = membership.nodes().filter(|(id, _)| member_of(**id) == me).count() == 1;
        drop(m);
        settled
            && voter
            && alone
            && match self.usable_leader() {
                Leader::Me => self.leads_with_quorum(),
                Leader::Other { .. } => true,
                Leader::Unknown => false,
            }
    }

    /// The leader this node's requests should go to: [`Cluster::leader`],
    /// except that a leader cut off from its quorum (see
    /// [`Cluster::quorum_lost`]) counts as no leader.
    pub fn usable_leader(&self) -> Leader {
        match self.leader() {
            Leader::Me if self.quorum_lost() => Leader::Unknown,
            // A follower that reaches no other voter does not stand for
            // election (see [`prevote`]), so openraft keeps naming the
            // leader it last followed: it is no use to this node.
            Leader::Other { .. } if self.alone() => Leader::Unknown,
            leader => leader,
        }
    }

    /// True while no other voter has answered this node for a while (see
    /// [`prevote`]).
    pub fn alone(&self) -> bool {
        self.alone.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn set_alone(&self, alone: bool) {
        self.alone.store(alone, std::sync::atomic::Ordering::Relaxed);
    }

    /// The usable leader now, noting since when there has been none.
    fn observe_leader(&self) -> (Leader, Duration) {
        let leader = self.usable_leader();
        let mut since = self.leaderless_since.lock().expect("leaderless lock");
        if leader == Leader::Unknown {
            let start = *since.get_or_insert_with(Instant::now);
            (leader, start.elapsed())
        } else {
            *since = None;
            (leader, Duration::ZERO)
        }
    }

    /// Waits until a usable leader is known, `deadline` passes, or the node
    /// has been without one for `leaderless_timeout` (it then answers at
    /// once rather than holding every client for `request_timeout`).
    pub async fn wait_for_leader(&self, deadline: Instant) -> Result<Leader, ClusterError> {
        let mut watch = self.raft().metrics();
        loop {
            let (leader, leaderless) = self.observe_leader();
            if leader != Leader::Unknown {
                return Ok(leader);
            }
            let left = deadline
                .saturating_duration_since(Instant::now())
                .min(self.options.leaderless_timeout.saturating_sub(leaderless));
            if left.is_zero() {
                return Err(ClusterError::NoLeader);
            }
            match tokio::time::timeout(left.min(Duration::from_millis(50)), watch.changed()).await {
                Ok(Err(_)) if self.stopping() => return Err(ClusterError::ShuttingDown),
                // The Raft instance was replaced (re-formed): follow the new one.
                Ok(Err(_)) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    watch = self.raft().metrics();
                }
                _ => continue,
            }
        }
    }

    /// Resolves when the usable leader is no longer `leader`: a request
    /// handed to it then is retried at once with the new one (under the same
    /// session and sequence number, so it is applied at most once) instead
    /// of waiting for an answer that a deposed or unreachable leader may
    /// never give.
    pub async fn leader_moved(&self, leader: &Leader) {
        // Polled rather than woken by the metrics channel, which openraft
        // publishes on every turn of its loop: that would wake every batch
        // in flight many times per write. An election takes hundreds of
        // milliseconds; noticing it within a poll is soon enough.
        let mut poll = tokio::time::interval(LEADER_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            poll.tick().await;
            if self.usable_leader() != *leader {
                return;
            }
        }
    }

    /// The client address of node `id`, asking it if not yet known.
    pub async fn resp_addr_of(&self, id: NodeId, raft_addr: &str) -> Option<String> {
        if id == self.node_id {
            return Some(self.resp_addr.clone());
        }
        if let Some(addr) = self.resp_addrs.lock().expect("addr cache").get(&id) {
            return Some(addr.clone());
        }
        let mut client = self.network.client_for(raft_addr).ok()?;
        let mut request = tonic::Request::new(InfoRequest {});
        request.set_timeout(Duration::from_secs(1));
        let info = client.info(request).await.ok()?.into_inner();
        self.resp_addrs.lock().expect("addr cache").insert(id, info.resp_addr.clone());
        Some(info.resp_addr)
    }

    /// The other members (voters and learners) and their Raft addresses,
    /// leaving out old incarnations of this node (same address).
    pub(crate) fn other_members(&self) -> Vec<(NodeId, String)> {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let mine = membership.get_node(&self.node_id).map(|n| n.addr.clone());
        membership
            .nodes()
            .filter(|(id, node)| **id != self.node_id && Some(&node.addr) != mine.as_ref())
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect()
    }

    /// WAIT: once every write acknowledged before the call (this client's
    /// among them) is applied here, the number of *other* members whose log
    /// holds all of them, asked of each member (Info) until `numreplicas`
    /// do or `timeout` passes (`None`: no limit, as Redis's `WAIT n 0`). An
    /// acknowledged write is on a majority already; this says on how many
    /// nodes besides this one.
    pub async fn wait_replicas(
        &self,
        numreplicas: i64,
        timeout: Option<Duration>,
    ) -> Result<usize, ClusterError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        self.read_barrier().await?;
        let target = self.sm.read().last_applied.map_or(0, |l| l.index);
        loop {
            let held = self.members_holding(target).await;
            if held as i64 >= numreplicas || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(held);
            }
            let pause = Duration::from_millis(10);
            let pause = deadline.map_or(pause, |d| pause.min(d - Instant::now()));
            tokio::time::sleep(pause).await;
        }
    }

    /// How many other members' logs reach `index` (members that do not
    /// answer within 200 ms count as not).
    async fn members_holding(&self, index: u64) -> usize {
        let mut addrs: Vec<String> =
            self.other_members().into_iter().map(|(_, addr)| addr).collect();
        addrs.sort();
        addrs.dedup();
        let probes = addrs.iter().map(|addr| async move {
            let mut client = self.network.client_for(addr).ok()?;
            let mut request = tonic::Request::new(InfoRequest {});
            request.set_timeout(Duration::from_millis(200));
            let info = tokio::time::timeout(Duration::from_millis(200), client.info(request))
                .await
                .ok()?
                .ok()?
                .into_inner();
            (info.last_log_index >= index).then_some(())
        });
        futures::future::join_all(probes).await.into_iter().flatten().count()
    }

    /// In redirect mode, the MOVED error for a follower (after waiting for a
    /// leader); `None` if this node leads or redirects are off.
    pub async fn redirect(&self) -> Option<ClusterError> {
        if !self.options.redirect {
            return None;
        }
        let deadline = Instant::now() + self.options.request_timeout;
        match self.wait_for_leader(deadline).await {
            Ok(Leader::Me) => None,
            Ok(Leader::Other { id, raft_addr }) => match self.resp_addr_of(id, &raft_addr).await {
                Some(addr) => Some(ClusterError::Moved(addr)),
                None => Some(ClusterError::NoLeader),
            },
            Ok(Leader::Unknown) => Some(ClusterError::NoLeader),
            Err(e) => Some(e),
        }
    }

    /// Serves a group of write commands: through the proposer (batched into
    /// a log entry, proposed here or forwarded to the leader), or a MOVED
    /// error on a follower in redirect mode.
    pub async fn write(&self, cmds: Vec<Command>) -> Result<Vec<Reply>, ClusterError> {
        self.write_ops(cmds.into_iter().map(Command::op).collect()).await
    }

    /// Serves a group of write operations (commands, transactions) as
    /// [`Cluster::write`] does.
    pub async fn write_ops(&self, ops: Vec<Op>) -> Result<Vec<Reply>, ClusterError> {
        if let Some(moved) = self.redirect().await {
            return Err(moved);
        }
        self.proposer.write(ops).await
    }

    /// The Redis replication fields, mapped onto Raft: the leader is the
    /// master (its `master_repl_offset` is the last log index, each
    /// follower a `slaveN` with its matched index as offset), a follower a
    /// replica of the leader (its offsets the applied index). Followers take
    /// writes too (they forward them), so `slave_read_only` is 0.
    pub fn redis_replication_fields(&self) -> Vec<(String, String)> {
        let m = self.metrics();
        let last = m.last_log_index.unwrap_or(0);
        let applied = m.last_applied.map_or(0, |l| l.index);
        let replid = format!("{:040x}", self.sm.read().state.cluster_id());
        let mut out: Vec<(String, String)> = Vec::new();
        let mut push = |k: &str, v: String| out.push((k.to_string(), v));
        match self.leader() {
            Leader::Me => {
                let followers: Vec<(NodeId, u64)> = m
                    .replication
                    .as_ref()
                    .map(|r| {
                        r.iter()
                            .filter(|(id, _)| **id != self.node_id)
                            .map(|(id, log)| (*id, log.map_or(0, |l| l.index)))
                            .collect()
                    })
                    .unwrap_or_default();
                push("connected_slaves", followers.len().to_string());
                let addrs = self.resp_addrs.lock().expect("addr cache").clone();
                for (i, (id, matched)) in followers.iter().enumerate() {
                    let (ip, port) = addrs
                        .get(id)
                        .and_then(|a| a.rsplit_once(':'))
                        .map_or(("?".to_string(), "0".to_string()), |(h, p)| {
                            (h.to_string(), p.to_string())
                        });
                    push(
                        &format!("slave{i}"),
                        format!(
                            "ip={ip},port={port},state=online,offset={matched},lag={}",
                            last.saturating_sub(*matched)
                        ),
                    );
                }
                push("master_failover_state", "no-failover".into());
                push("master_replid", replid);
                push("master_repl_offset", last.to_string());
            }
            leader => {
                let (host, port) = match &leader {
                    Leader::Other { id, .. } => self
                        .resp_addrs
                        .lock()
                        .expect("addr cache")
                        .get(id)
                        .and_then(|a| {
                            a.rsplit_once(':').map(|(h, p)| (h.to_string(), p.to_string()))
                        })
                        .unwrap_or_default(),
                    _ => Default::default(),
                };
                push("master_host", host);
                push("master_port", port);
                let up = matches!(leader, Leader::Other { .. });
                push("master_link_status", if up { "up" } else { "down" }.into());
                push("master_sync_in_progress", "0".into());
                push("slave_read_repl_offset", applied.to_string());
                push("slave_repl_offset", applied.to_string());
                push("slave_read_only", "0".into());
                push("connected_slaves", "0".into());
                push("master_failover_state", "no-failover".into());
                push("master_replid", replid);
                push("master_repl_offset", applied.to_string());
            }
        }
        out
    }

    /// The INFO replication section's fields.
    pub fn info_fields(&self) -> Vec<(String, String)> {
        let m = self.metrics();
        let role = role_name(m.state);
        let members: Vec<String> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| {
                let voter = m
                    .membership_config
                    .membership()
                    .get_joint_config()
                    .iter()
                    .any(|c| c.contains(id));
                format!("{}@{}{}", ShowId(*id), node.addr, if voter { "" } else { "(learner)" })
            })
            .collect();
        // A follower cut off from every other voter names no leader (see
        // `usable_leader`).
        let leader = match m.current_leader {
            Some(l) if l == self.node_id || !self.alone() => ShowId(l).to_string(),
            _ => String::new(),
        };
        vec![
            ("role".into(), if m.state == ServerState::Leader { "master" } else { "slave" }.into()),
            ("raft_member_id".into(), member_of(self.node_id).to_string()),
            ("raft_node_id".into(), ShowId(self.node_id).to_string()),
            ("raft_role".into(), role.into()),
            ("raft_term".into(), m.current_term.to_string()),
            ("raft_leader_id".into(), leader),
            // 1 while this node leads but has heard from no majority for
            // the longest election timeout: it serves nothing as leader then.
            ("raft_quorum_lost".into(), u8::from(self.quorum_lost()).to_string()),
            // 1 once this node is a voter of a settled membership with a
            // leader: what a rolling restart waits for before the next node.
            ("raft_ready".into(), u8::from(self.ready()).to_string()),
            // 1 while a majority of the voters are old incarnations of
            // members that rejoined: no quorum can form (see `reform`).
            ("raft_wedged".into(), u8::from(self.stuck()).to_string()),
            // How long the membership change in the log has waited to
            // commit (0: none waits).
            (
                "raft_membership_pending_ms".into(),
                self.change_pending().map_or(0, |d| d.as_millis()).to_string(),
            ),
            ("raft_last_log_index".into(), m.last_log_index.unwrap_or(0).to_string()),
            ("raft_applied_index".into(), m.last_applied.map_or(0, |l| l.index).to_string()),
            ("raft_members".into(), members.join(",")),
            ("read_consistency".into(), self.options.read_consistency.name().into()),
            (
                "follower_mode".into(),
                if self.options.redirect { "redirect" } else { "proxy" }.into(),
            ),
            // Client-side caching across nodes (see `tracking`): nodes whose
            // tracking clients this leader's writes wait for, and writes
            // that stopped waiting for one after its registration's length.
            ("tracking_registered_nodes".into(), self.tracking.registered_count().to_string()),
            (
                "tracking_write_waits_timed_out".into(),
                self.tracking.timeouts.load(std::sync::atomic::Ordering::Relaxed).to_string(),
            ),
        ]
    }
}

/// The name INFO and the admin API give a Raft role.
pub fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

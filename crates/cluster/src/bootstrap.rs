//! Bringing a node into its Raft group.
//!
//! Every node is started with the same `--peers` list. A node decides how to
//! start by asking the other members (the peer service's Info RPC):
//!
//! - If some member reports an initialized cluster, this node is joining an
//!   existing group. A memory-only node cannot know whether it voted or
//!   acknowledged entries in an earlier life, so it takes a fresh random
//!   *incarnation* (a new Raft node id that has never voted), and asks the
//!   leader to add it as a learner; once caught up, the leader makes it a voter
//!   in place of the member's old incarnation.
//! - If a majority of members (this one included) is reachable and none is
//!   initialized, this is the cluster's first start: every node initializes
//!   with the same membership (all members at incarnation 0). openraft accepts
//!   identical initialization on several nodes, like etcd's initial-cluster.
//!   The nodes initialize one after another (half an election timeout apart,
//!   in `--peers` order), so that the first one's election is not split.
//! - Otherwise it waits and asks again.
//!
//! With no `--peers` (or only itself), the node is a one-node cluster.
//!
//! # With a data directory
//! The directory holds the Raft log and vote (sled), snapshots, and an
//! `identity` file (member id, incarnation, cluster id, and whether the last
//! stop was clean). A node resumes under its persisted identity when it can
//! trust its log: always under `appendfsync always`, and after a clean stop
//! under the other policies. After an unclean stop under `everysec`/`no` its
//! log may lack entries it acknowledged, so it discards its state and joins as
//! a new incarnation, unless no leader exists anywhere (the whole cluster
//! crashed), in which case it resumes and may lose the last second of writes,
//! as documented. A snapshot that fails verification is never loaded: the
//! node discards its state and fetches everything from the leader. A directory
//! written by another member id or another cluster is refused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use raftcache_proto::admin::admin_server::AdminServer;
use raftcache_proto::raft::raft_server::RaftServer;
use raftcache_proto::raft::{InfoRequest, JoinRequest};
use raftcache_raft::mem_log::MemLogStore;
use raftcache_raft::network::{Network, PeerSecret, MAX_MESSAGE, PEER_SECRET_HEADER};
use raftcache_raft::openraft::{self, BasicNode, SnapshotPolicy};
use raftcache_raft::sled_log::SledLogStore;
use raftcache_raft::state_machine::Loaded;
use raftcache_raft::state_machine::StateMachineStore;
use raftcache_raft::types::{incarnation_of, node_id, NodeId, Raft, ShowId, VoteCell};
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tracing::{info, warn};

use super::admin::{AdminService, TokenCheck};
use super::confirm::Confirmer;
use super::peer::PeerService;
use super::proposer::{self, Proposer};
use super::reads::{self, ReadBarrier};
use raftcache_sm::Reply;

use super::{Cluster, Options};
use crate::settings::Settings;

/// How this node starts.
#[derive(Debug, PartialEq, Eq)]
enum Start {
    /// First start of the cluster: initialize with all members at
    /// incarnation 0, except the members named here, which are already
    /// running as the given incarnation (joiners whose cluster is gone).
    Fresh(BTreeMap<u32, NodeId>),
    /// The cluster exists: join it as a new incarnation.
    Join,
    /// Continue under the persisted identity with the persisted log.
    Resume(u32),
}

/// What a data directory says about this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub member_id: u32,
    pub incarnation: u32,
    pub cluster_id: u64,
    pub clean_shutdown: bool,
    /// The `--appendfsync` policy the log was last written under: what
    /// decides whether it can be trusted after an unclean stop.
    pub fsync: String,
}

impl Identity {
    fn path(dir: &Path) -> PathBuf {
        dir.join("identity")
    }

    /// Reads `dir/identity`, if there is one.
    pub fn read(dir: &Path) -> anyhow::Result<Option<Identity>> {
        let text = match std::fs::read_to_string(Identity::path(dir)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context("reading the identity file"),
        };
        let mut id = Identity::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else { continue };
            match k.trim() {
                "member_id" => id.member_id = v.trim().parse().context("identity member_id")?,
                "incarnation" => {
                    id.incarnation = v.trim().parse().context("identity incarnation")?
                }
                "cluster_id" => {
                    id.cluster_id =
                        u64::from_str_radix(v.trim(), 16).context("identity cluster_id")?
                }
                "clean_shutdown" => id.clean_shutdown = v.trim() == "true",
                "fsync" => id.fsync = v.trim().to_string(),
                _ => {}
            }
        }
        Ok(Some(id))
    }

    /// Writes `dir/identity` atomically and durably.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join("identity.tmp");
        let text = format!(
            "# raftcache node identity: do not edit\nmember_id={}\nincarnation={}\ncluster_id={:016x}\nclean_shutdown={}\nfsync={}\n",
            self.member_id, self.incarnation, self.cluster_id, self.clean_shutdown, self.fsync
        );
        {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, Identity::path(dir))?;
        std::fs::File::open(dir)?.sync_all()
    }
}

/// The Raft log store in use.
#[derive(Clone)]
pub(crate) enum Logs {
    Mem(MemLogStore),
    Sled(SledLogStore),
}

/// A node's data directory, kept open while it runs.
pub struct DataDir {
    pub dir: PathBuf,
    pub log: SledLogStore,
    pub identity: Mutex<Identity>,
}

impl DataDir {
    /// Records a clean stop: the log is flushed, so the next start can trust it.
    pub fn close_cleanly(&self) {
        if let Err(e) = self.log.flush() {
            warn!(error = %e, "flushing the Raft log at shutdown");
            return;
        }
        let mut id = self.identity.lock().expect("identity lock");
        id.clean_shutdown = true;
        if let Err(e) = id.write(&self.dir) {
            warn!(error = %e, "writing the identity file at shutdown");
        }
    }
}

/// The host other nodes and clients should use for this node.
fn advertised_host(args: &Settings) -> String {
    if let Some(a) = &args.advertise {
        return a.clone();
    }
    let first = args.bind.split_whitespace().next().unwrap_or("127.0.0.1").trim_start_matches('-');
    match first {
        "0.0.0.0" | "*" | "::" => "127.0.0.1".into(),
        other => other.to_string(),
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn bind_addr(args: &Settings, port: u16) -> anyhow::Result<SocketAddr> {
    listen_addr(&args.bind, port)
}

/// The address to listen on for `port`: the first `--bind` address (`*`
/// meaning all), as redis-server takes it. The binary's other listeners
/// (metrics) use it too.
pub fn listen_addr(bind: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let host = bind.split_whitespace().next().unwrap_or("127.0.0.1").trim_start_matches('-');
    let host = if host == "*" { "0.0.0.0" } else { host };
    join_host_port(host, port).parse().with_context(|| format!("bad --bind address {host}"))
}

/// Removes snapshot directories that memory-only nodes killed with -9 left in
/// the temp directory (`raftcache-<member>-<pid>-<rand>` whose pid is gone).
fn remove_stale_temp_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let parts: Vec<&str> = name.split('-').collect();
        let [prefix, member, pid, tag] = parts[..] else { continue };
        let well_formed = prefix == "raftcache"
            && member.parse::<u32>().is_ok()
            && tag.len() == 8
            && u32::from_str_radix(tag, 16).is_ok();
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if well_formed && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// What the other members said.
struct Survey {
    /// Members that answered, this node included.
    reachable: usize,
    initialized: bool,
    leader_known: bool,
    /// Reachable members that are pristine and have not yet decided to start
    /// fresh.
    undecided: usize,
    /// Reachable members running as a new incarnation that waits to join a
    /// cluster and is not yet in any membership: member → its Raft node id.
    joiners: BTreeMap<u32, NodeId>,
    /// How many of them have voted or heard from a leader (they remember
    /// the old cluster's node ids and terms).
    informed_joiners: usize,
}

/// Asks every other member for its Info. Fails if one belongs to another
/// cluster than `cluster_id` (when both are known).
async fn survey(
    network: &Network,
    me: u32,
    peers: &BTreeMap<u32, String>,
    cluster_id: u64,
) -> anyhow::Result<Survey> {
    let probes = peers.iter().filter(|(m, _)| **m != me).map(|(m, addr)| async move {
        let mut client = network.client_for(addr).ok()?;
        let mut request = tonic::Request::new(InfoRequest {});
        request.set_timeout(Duration::from_millis(500));
        client.info(request).await.ok().map(|r| (*m, r.into_inner()))
    });
    let mut survey = Survey {
        reachable: 1,
        initialized: false,
        leader_known: false,
        undecided: 0,
        joiners: BTreeMap::new(),
        informed_joiners: 0,
    };
    for (member, info) in futures::future::join_all(probes).await.into_iter().flatten() {
        if cluster_id != 0 && info.cluster_id != 0 && info.cluster_id != cluster_id {
            anyhow::bail!(
                "the data directory belongs to cluster {cluster_id:016x}, but member {member} is in cluster {:016x}; \
                 refusing to start (use an empty --data-dir to join this cluster)",
                info.cluster_id
            );
        }
        survey.reachable += 1;
        survey.initialized |= info.initialized;
        // Only a member that says it leads counts: after a restart, a node's
        // committed vote still names the leader it had, which may be gone.
        survey.leader_known |= info.initialized
            && info.leader_raft_node_id != 0
            && info.leader_raft_node_id == info.raft_node_id;
        let joiner =
            !info.initialized && info.raft_node_id != 0 && incarnation_of(info.raft_node_id) != 0;
        if joiner {
            survey.joiners.insert(member, info.raft_node_id);
            if info.vote_term != 0 {
                survey.informed_joiners += 1;
            }
        } else if !info.initialized && !info.fresh_intent {
            survey.undecided += 1;
        }
    }
    Ok(survey)
}

/// How long a node waiting to join sees no member holding a cluster before
/// it reports itself stuck.
const ORPHANED_AFTER: Duration = Duration::from_secs(5);

/// How long a node that decided to start fresh waits for reachable pristine
/// peers to decide too before initializing anyway.
const INTENT_WAIT: Duration = Duration::from_secs(3);

/// For a node without usable state: first start of the cluster, or join it.
///
/// A pristine node that sees an initialized cluster joins it as a new
/// incarnation. Otherwise, once a majority is reachable it announces that it
/// will start fresh (incarnation 0) and initializes when every member is
/// reachable and has announced the same, or after [`INTENT_WAIT`] (members that
/// are still down then join later as new incarnations). A node that has announced
/// never joins instead: it is committed to incarnation 0, and an initialized
/// peer can only have initialized with it in the membership.
///
/// *Joiners* (members running as a new incarnation that wait to join a
/// cluster) prove that a cluster existed a moment ago. While one is reachable
/// and no member is initialized, the node initializes only once **every**
/// member is reachable, each either a joiner or a pristine node that has
/// announced: then no member holds any state of the old cluster (it is all
/// lost, as after a full restart of a memory-only cluster), and the new
/// cluster takes the joiners in as they are (their running incarnations are
/// voters of the first membership, so they need no admission). Short of
/// that it waits, and says why every 10 s: a member that is down may still
/// hold the old cluster's log (a split of clusters is what this prevents).
async fn decide(
    network: &Network,
    me: u32,
    peers: &BTreeMap<u32, String>,
    cluster_id: u64,
    intent: &AtomicBool,
) -> anyhow::Result<Start> {
    if peers.len() <= 1 {
        return Ok(Start::Fresh(BTreeMap::new()));
    }
    let mut last_log = Instant::now();
    let mut intent_since: Option<Instant> = None;
    loop {
        let s = survey(network, me, peers, cluster_id).await?;
        let everyone = s.reachable == peers.len();
        match intent_since {
            None if s.initialized => return Ok(Start::Join),
            // A cluster existed: start over only with every member here, and
            // only if no joiner remembers it (see below).
            None if !s.joiners.is_empty() && (!everyone || s.informed_joiners > 0) => {}
            None if s.reachable * 2 > peers.len() => {
                intent.store(true, Ordering::Relaxed);
                intent_since = Some(Instant::now());
                continue;
            }
            // No member holds the old cluster: start it over, taking the
            // joiners in as they run.
            Some(_)
                if !s.joiners.is_empty()
                    && everyone
                    && s.undecided == 0
                    && s.informed_joiners == 0 =>
            {
                warn!(
                    joiners = ?s.joiners.values().map(|id| ShowId(*id).to_string()).collect::<Vec<_>>(),
                    "no member holds the cluster any more (every member is here, none initialized): \
                     starting it over, empty, with the members that were waiting to join it"
                );
                return Ok(Start::Fresh(s.joiners));
            }
            // A joiner that voted or heard from the old cluster's leader
            // remembers its node ids and terms, which the new cluster would
            // reuse (incarnation 0): only an operator may start over then,
            // from the joiner (force-new-cluster). Never without the joiners.
            Some(_) if !s.joiners.is_empty() => {}
            // Everyone is here and has decided, or we waited long enough
            // for the others (a member that is down joins later).
            Some(since) if (s.undecided == 0 && everyone) || since.elapsed() >= INTENT_WAIT => {
                return Ok(Start::Fresh(BTreeMap::new()));
            }
            _ => {}
        }
        if last_log.elapsed() > Duration::from_secs(10) && !s.joiners.is_empty() {
            warn!(
                joiners = ?s.joiners.values().map(|id| ShowId(*id).to_string()).collect::<Vec<_>>(),
                reachable = s.reachable,
                members = peers.len(),
                "members wait to join a cluster that no reachable member holds; not starting a \
                 new one (a member that is down may hold the cluster's log: start it; if none \
                 does, run `raftcachectl --endpoints <a waiting member's admin address> \
                 force-new-cluster --yes`, which starts the cluster over from that member)"
            );
            last_log = Instant::now();
        } else if last_log.elapsed() > Duration::from_secs(5) && s.joiners.is_empty() {
            info!(
                reachable = s.reachable,
                members = peers.len(),
                "waiting for a majority of members to be reachable"
            );
            last_log = Instant::now();
        }
        // Once committed to a fresh start, look often: the nodes then start
        // their Raft within a few milliseconds of each other, and a vote or
        // AppendEntries from the first one finds the others running.
        let pause = if intent_since.is_some() { 20 } else { 100 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// For a node whose persisted state cannot be trusted as is (an unclean stop
/// under everysec/no, or a snapshot that failed verification).
async fn decide_untrusted(
    network: &Network,
    me: u32,
    peers: &BTreeMap<u32, String>,
    identity: &Identity,
    may_resume: bool,
    grace: Duration,
) -> anyhow::Result<Start> {
    let started = Instant::now();
    loop {
        if peers.len() <= 1 {
            // A one-node cluster has nobody to ask: resume if possible, else
            // start over (the state it had is lost either way).
            return Ok(if may_resume {
                Start::Resume(identity.incarnation)
            } else {
                Start::Fresh(BTreeMap::new())
            });
        }
        let s = survey(network, me, peers, identity.cluster_id).await?;
        if s.leader_known {
            return Ok(Start::Join);
        }
        if may_resume && s.reachable * 2 > peers.len() && started.elapsed() >= grace {
            warn!(
                "no leader anywhere after an unclean stop: resuming with this node's log, which may lack \
                 its last acknowledged writes (appendfsync is not always)"
            );
            return Ok(Start::Resume(identity.incarnation));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asks the cluster (any of `addrs`, Raft peer addresses) to admit this
/// incarnation, until it is a voter (or, with `stay_learner`, a learner).
async fn join(
    cluster: Arc<Cluster>,
    my_raft_addr: String,
    addrs: Vec<String>,
    stay_learner: bool,
    shutdown: CancellationToken,
) {
    let me = cluster.node_id;
    let mut last_warning: Option<Instant> = None;
    // Since when no member this node can reach holds a cluster to join.
    let mut orphaned: Option<Instant> = None;
    let mut told: Option<Instant> = None;
    let peers: BTreeMap<u32, String> = cluster.peers.clone();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let membership = cluster.metrics().membership_config.membership().clone();
        if membership.voter_ids().any(|id| id == me) {
            cluster.set_orphaned(false);
            info!(node = %ShowId(me), "joined the cluster as a voter");
            return;
        }
        if membership.nodes().next().is_none() && peers.len() > 1 {
            let member = raftcache_raft::types::member_of(me);
            let held = match survey(&cluster.network, member, &peers, 0).await {
                Ok(s) => s.initialized,
                Err(_) => true,
            };
            if held {
                orphaned = None;
                cluster.set_orphaned(false);
            } else if orphaned.get_or_insert_with(Instant::now).elapsed() > ORPHANED_AFTER {
                cluster.set_orphaned(true);
                if told.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
                    told = Some(Instant::now());
                    warn!(
                        "waiting to join a cluster that no reachable member holds (INFO raft_wedged:1). \
                         If a member that is down holds it, start that member; if none does (every \
                         member restarted without its data), start the cluster over, empty, from this \
                         node: `raftcachectl --endpoints {} force-new-cluster --yes`",
                        cluster.admin_addr
                    );
                }
            }
        }
        if stay_learner && membership.get_node(&me).is_some() {
            info!(node = %ShowId(me), "joined the cluster as a learner");
            return;
        }
        for addr in &addrs {
            if *addr == my_raft_addr {
                continue;
            }
            let Ok(mut client) = cluster.network.client_for(addr) else { continue };
            let mut request = tonic::Request::new(JoinRequest {
                raft_node_id: me,
                raft_addr: my_raft_addr.clone(),
                stay_learner,
            });
            request.set_timeout(Duration::from_secs(600));
            match client.join(request).await {
                Ok(_) => break,
                Err(status) if status.code() == tonic::Code::FailedPrecondition => continue,
                Err(status) => {
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        warn!(peer = %addr, error = %status.message(), "join request failed; retrying");
                        last_warning = Some(Instant::now());
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Everything [`start`] brings up.
pub struct Started {
    pub cluster: Arc<Cluster>,
    /// A snapshot directory to delete at exit (memory-only nodes).
    pub temp_dir: Option<PathBuf>,
    /// The data directory, for a clean close at shutdown.
    pub data: Option<Arc<DataDir>>,
}

/// Gives the cluster an id once (the leader proposes it), and records it in
/// the data directory's identity file when known.
async fn name_the_cluster(
    cluster: Arc<Cluster>,
    data: Option<Arc<DataDir>>,
    initial_config: Vec<(String, bytes::Bytes)>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = shutdown.cancelled() => return,
        }
        let id = cluster.sm.read().state.cluster_id();
        if id == 0 {
            if cluster.leader() == super::Leader::Me {
                let proposal = raftcache_sm::Proposal {
                    time_ms: crate::clock::now_ms(),
                    seed: 0,
                    origin: None,
                    ops: Arc::new(vec![raftcache_sm::Op::SetClusterId {
                        id: rand::random::<u64>().max(1),
                    }]),
                };
                let named = cluster.raft().client_write(proposal).await;
                // The node whose id named the cluster (only one does) sets
                // its cluster-wide parameters (--maxmemory …) next.
                let won = named.is_ok_and(|r| r.data.0.first() == Some(&Reply::Int(1)));
                if won && !initial_config.is_empty() {
                    set_initial_config(&cluster, &initial_config, &shutdown).await;
                }
            }
            continue;
        }
        cluster.network.set_cluster_id(id);
        if let Some(data) = &data {
            let mut identity = data.identity.lock().expect("identity lock");
            if identity.cluster_id != id {
                identity.cluster_id = id;
                if let Err(e) = identity.write(&data.dir) {
                    warn!(error = %e, "recording the cluster id");
                    continue;
                }
            }
        }
        return;
    }
}

/// Proposes the cluster-wide parameters of this node's flags, until they are
/// applied (or this node stops being the leader: they are then left to
/// CONFIG SET, and the node says so).
async fn set_initial_config(
    cluster: &Arc<Cluster>,
    config: &[(String, bytes::Bytes)],
    shutdown: &CancellationToken,
) {
    let ops: Vec<raftcache_sm::Op> = config
        .iter()
        .map(|(name, value)| raftcache_sm::Op::Config { name: name.clone(), value: value.clone() })
        .collect();
    let ops = Arc::new(ops);
    while cluster.leader() == super::Leader::Me && !shutdown.is_cancelled() {
        let proposal = raftcache_sm::Proposal {
            time_ms: crate::clock::now_ms(),
            seed: 0,
            origin: None,
            ops: ops.clone(),
        };
        match cluster.raft().client_write(proposal).await {
            Ok(r) => {
                for ((name, value), reply) in config.iter().zip(&r.data.0) {
                    if reply.is_error() {
                        warn!(%name, value = %String::from_utf8_lossy(value), ?reply, "cluster-wide parameter refused");
                    }
                }
                return;
            }
            Err(e) => {
                warn!(error = %e, "setting the cluster-wide parameters; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    warn!("not the leader any more: set the cluster-wide parameters (maxmemory …) with CONFIG SET");
}

/// Streams a peer may reset before this node accepted them (see
/// [`serve_peers`]).
const PEER_RESET_STREAMS: usize = 4096;

/// Serves the peer service on the Raft port until `shutdown`, refusing
/// requests without the peer secret when one is set.
fn serve_peers(
    raft_listener: tokio::net::TcpListener,
    peer_service: PeerService,
    secret: Option<tonic::metadata::AsciiMetadataValue>,
    shutdown: CancellationToken,
) {
    let serve_shutdown = shutdown;
    tokio::spawn(async move {
        let service = RaftServer::new(peer_service)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let service = InterceptedService::new(service, move |request: tonic::Request<()>| {
            let Some(want) = &secret else { return Ok(request) };
            match request.metadata().get(PEER_SECRET_HEADER) {
                Some(given) if given.as_bytes() == want.as_bytes() => Ok(request),
                _ => Err(tonic::Status::unauthenticated("wrong or missing peer secret")),
            }
        });
        // TCP_NODELAY: without it, small Raft messages wait for delayed ACKs
        // (40 ms on Linux) and every round trip stalls.
        let incoming =
            match tonic::transport::server::TcpIncoming::from_listener(raft_listener, true, None) {
                Ok(incoming) => incoming,
                Err(e) => {
                    warn!(error = %e, "peer listener");
                    return;
                }
            };
        // A peer drops the AppendEntries stream of every request that times
        // out (a late answer would be taken for the next), so a node that was
        // paused finds many streams reset before it accepted them; h2's
        // default limit of 20 (a guard against rapid-reset floods) then
        // closes the connection with GOAWAY the moment the node resumes, and
        // replication to it starts over on a new connection. The bound stays,
        // above what a pause of minutes produces.
        let result = tonic::transport::Server::builder()
            .http2_max_pending_accept_reset_streams(Some(PEER_RESET_STREAMS))
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, serve_shutdown.cancelled())
            .await;
        if let Err(e) = result {
            warn!(error = %e, "peer service stopped");
        }
    });
}

/// The health service name that is SERVING exactly while the node is
/// `ready` (see [`Cluster::ready`]): for rolling restarts and Kubernetes'
/// readiness probes.
pub const READY_SERVICE: &str = "raftcache.ready";

/// A node's state as opened: how it starts, its log and state machine, and
/// where they live.
struct Opened {
    mode: Start,
    logs: Logs,
    sm: StateMachineStore,
    /// A snapshot directory to delete at exit (memory-only nodes).
    temp_dir: Option<PathBuf>,
    data: Option<DataDir>,
}

/// Opens the data directory (or a memory-only store) and decides how the
/// node starts: fresh, joining, or resuming its persisted identity.
async fn open_state(
    args: &Settings,
    bootstrap_network: &Network,
    peers: &BTreeMap<u32, String>,
    join_addrs: &Option<Vec<String>>,
    fresh_intent: &AtomicBool,
) -> anyhow::Result<Opened> {
    let grace = args.election_timeout * 6;
    let (mode, logs, sm, temp_dir, data) = match &args.data_dir {
        None => {
            remove_stale_temp_dirs();
            let dir = std::env::temp_dir().join(format!(
                "raftcache-{}-{}-{:08x}",
                args.member_id,
                std::process::id(),
                rand::random::<u32>()
            ));
            let sm = StateMachineStore::open(&dir)
                .with_context(|| format!("opening {}", dir.display()))?;
            let mode = match join_addrs {
                Some(_) => Start::Join,
                None => decide(bootstrap_network, args.member_id, peers, 0, fresh_intent).await?,
            };
            (mode, Logs::Mem(MemLogStore::new()), sm, Some(dir), None)
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let identity = Identity::read(dir)?;
            if let Some(id) = &identity {
                if id.member_id != args.member_id {
                    anyhow::bail!(
                        "the data directory {} belongs to member {}, not --id {}; refusing to start",
                        dir.display(),
                        id.member_id,
                        args.member_id
                    );
                }
            }
            let fsync = args.fsync;
            let (log, recovery) = SledLogStore::open(dir.join("raft"), fsync)
                .map_err(|e| anyhow::anyhow!("opening the Raft log: {e}"))?;
            if let Some((from, n)) = recovery.dropped {
                warn!(from, dropped = n, "the Raft log had a damaged tail, now cut off");
            }
            let (sm, loaded) = StateMachineStore::open_and_load(dir.join("snapshots"))
                .with_context(|| format!("opening {}", dir.join("snapshots").display()))?;
            let has_state = log.has_state().map_err(|e| anyhow::anyhow!("{e}"))?
                || matches!(loaded, Loaded::Snapshot { .. });
            let corrupt = matches!(loaded, Loaded::Corrupt { .. });
            info!(?loaded, entries = recovery.entries, "opened the data directory");
            // The log can be trusted if it was written under `always` (what
            // the last process used, not this one) or the last stop was clean,
            // and it has not lost entries it acknowledged.
            let lost = recovery.lost.is_some();
            let trusted = |id: &Identity| (id.fsync == "always" || id.clean_shutdown) && !lost;
            let known_cluster =
                identity.as_ref().map_or(0, |i| i.cluster_id).max(sm.read().state.cluster_id());
            let mode = match identity.as_ref() {
                Some(id) if has_state && !corrupt && trusted(id) => {
                    // Refuse at once if a reachable member is in another cluster.
                    survey(bootstrap_network, args.member_id, peers, known_cluster).await?;
                    Start::Resume(id.incarnation)
                }
                // A node that joined with --join knows no --peers to survey:
                // state it cannot trust is discarded and it joins again.
                _ if join_addrs.is_some() => Start::Join,
                Some(id) if has_state => {
                    decide_untrusted(bootstrap_network, args.member_id, peers, id, !corrupt, grace)
                        .await?
                }
                _ => {
                    decide(
                        bootstrap_network,
                        args.member_id,
                        peers,
                        identity.as_ref().map_or(0, |i| i.cluster_id),
                        fresh_intent,
                    )
                    .await?
                }
            };
            if matches!(mode, Start::Join | Start::Fresh(_)) && (has_state || corrupt) {
                warn!(
                    "discarding this node's persisted Raft state; it rejoins as a new incarnation"
                );
                log.wipe().map_err(|e| anyhow::anyhow!("{e}"))?;
                sm.wipe().context("wiping snapshots")?;
            }
            if matches!(mode, Start::Resume(_)) && known_cluster != 0 {
                bootstrap_network.set_cluster_id(known_cluster);
            }
            let mut identity = identity.unwrap_or_default();
            identity.fsync = args.fsync.name().into();
            if identity.cluster_id == 0 && matches!(mode, Start::Resume(_)) {
                identity.cluster_id = known_cluster;
            }
            let data =
                DataDir { dir: dir.clone(), log: log.clone(), identity: Mutex::new(identity) };
            (mode, Logs::Sled(log), sm, None, Some(data))
        }
    };
    Ok(Opened { mode, logs, sm, temp_dir, data })
}

/// Creates the Raft instance of node `me` over `logs` and `sm`; returns it
/// with the log's durable vote cell and what a later instance is made of.
async fn start_raft(
    me: NodeId,
    args: &Settings,
    network: Network,
    logs: Logs,
    sm: StateMachineStore,
) -> anyhow::Result<(Raft, VoteCell, super::reform::RaftParts)> {
    let election_timeout_ms = args.election_timeout.as_millis() as u64;
    let heartbeat_ms = args.heartbeat.as_millis() as u64;
    let config = openraft::Config {
        cluster_name: "raftcache".into(),
        heartbeat_interval: heartbeat_ms,
        election_timeout_min: election_timeout_ms,
        election_timeout_max: election_timeout_ms * 2,
        max_payload_entries: 1000,
        // Snapshots are triggered by `compaction::run`.
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 1000,
        ..Default::default()
    }
    .validate()
    .context("raft config")?;
    let parts = super::reform::RaftParts { config: Arc::new(config), logs };
    let vote = match &parts.logs {
        Logs::Mem(log) => log.vote_cell(),
        Logs::Sled(log) => log.vote_cell(),
    };
    let raft = parts.new_raft(me, &network, &sm).await?;
    Ok((raft, vote, parts))
}

/// Creates a Raft instance over `logs` (a clone: the stores share their data).
pub(crate) async fn new_raft(
    me: NodeId,
    config: Arc<openraft::Config>,
    network: Network,
    logs: Logs,
    sm: StateMachineStore,
) -> anyhow::Result<Raft> {
    match logs {
        Logs::Mem(log) => Raft::new(me, config, network, log, sm).await,
        Logs::Sled(log) => Raft::new(me, config, network, log, sm).await,
    }
    .context("starting raft")
}

/// Serves the admin service (behind the token check), the health service
/// and server reflection on the admin port until `shutdown`, and keeps the
/// health status current.
fn serve_admin(
    admin_listener: tokio::net::TcpListener,
    cluster: &Arc<Cluster>,
    admin_token: Option<&str>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let admin = AdminService { cluster: cluster.clone() };
    let token = TokenCheck { token: admin_token.map(Arc::from) };
    let (mut health, health_service) = tonic_health::server::health_reporter();
    // Both versions of reflection: grpcurl asks for v1, older clients (and
    // grpcio's Python reflection client) for v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(raftcache_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1alpha = reflection().build_v1alpha().context("gRPC reflection")?;
    let reflection = reflection().build_v1().context("gRPC reflection")?;
    let admin_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let incoming = match tonic::transport::server::TcpIncoming::from_listener(
            admin_listener,
            true,
            None,
        ) {
            Ok(incoming) => incoming,
            Err(e) => {
                warn!(error = %e, "admin listener");
                return;
            }
        };
        let result = tonic::transport::Server::builder()
            .add_service(AdminServer::with_interceptor(admin, token))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_v1alpha)
            .serve_with_incoming_shutdown(incoming, admin_shutdown.cancelled())
            .await;
        if let Err(e) = result {
            warn!(error = %e, "admin service stopped");
        }
    });
    // The health service: SERVING while the node has a leader and has
    // applied its log, for the whole server ("") and the admin service.
    let health_cluster = cluster.clone();
    let health_shutdown = shutdown.clone();
    tokio::spawn(async move {
        use tonic_health::ServingStatus;
        let serving =
            |yes: bool| if yes { ServingStatus::Serving } else { ServingStatus::NotServing };
        let (mut last, mut last_ready) = (None, None);
        loop {
            let status = serving(health_cluster.healthy());
            if last != Some(status) {
                health.set_service_status("", status).await;
                health.set_service_status("raftcache.admin.v1.Admin", status).await;
                last = Some(status);
            }
            // `raftcache.ready`: INFO's raft_ready, what a rolling restart
            // waits for before the next node (a voter of a settled
            // membership, its member's only incarnation, with a leader).
            let ready = serving(health_cluster.ready());
            if last_ready != Some(ready) {
                health.set_service_status(READY_SERVICE, ready).await;
                last_ready = Some(ready);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = health_shutdown.cancelled() => return,
            }
        }
    });
    Ok(())
}

/// Brings the node into the cluster as `mode` says: initializes a fresh
/// cluster (staggered), asks to join, or just resumes.
fn enter(
    mode: &Start,
    cluster: &Arc<Cluster>,
    args: &Settings,
    peers: &BTreeMap<u32, String>,
    join_addrs: &Option<Vec<String>>,
    my_listed_addr: String,
    shutdown: &CancellationToken,
) {
    let election_timeout_ms = args.election_timeout.as_millis() as u64;
    match mode {
        Start::Fresh(joiners) => {
            let members: BTreeMap<NodeId, BasicNode> = peers
                .iter()
                .map(|(m, addr)| {
                    let id = joiners.get(m).copied().unwrap_or_else(|| node_id(*m, 0));
                    (id, BasicNode::new(addr.clone()))
                })
                .collect();
            // openraft starts an election as soon as a node initializes;
            // nodes started together would all stand in term 1 and split the
            // vote, and the first leader would wait an election timeout
            // longer. The n-th member (in --peers order) initializes n half
            // election timeouts later, so the first one normally wins at once
            // and the others, already following it, find the cluster
            // initialized.
            let rank = peers.keys().position(|m| *m == args.member_id).unwrap_or(0) as u64;
            let stagger = Duration::from_millis(rank * election_timeout_ms / 2);
            let cluster = cluster.clone();
            tokio::spawn(async move {
                tokio::time::sleep(stagger).await;
                // Already voted or following (openraft would refuse, and log
                // the refusal as an error).
                let m = cluster.metrics();
                if m.vote.leader_id().term > 0 || m.last_log_index.is_some() {
                    info!("not initializing: the cluster formed meanwhile");
                    return;
                }
                match cluster.raft().initialize(members).await {
                    Ok(()) => info!("initialized the cluster"),
                    Err(e) => info!(reason = %e, "not initializing (already initialized)"),
                }
            });
        }
        Start::Join => {
            let addrs = match join_addrs {
                Some(addrs) => addrs.clone(),
                None => peers.values().cloned().collect(),
            };
            if addrs.is_empty() {
                info!("waiting to be added to a cluster (raftcachectl member add)");
            } else {
                let stay_learner = join_addrs.is_some() && args.join_as_learner;
                tokio::spawn(join(
                    cluster.clone(),
                    my_listed_addr,
                    addrs,
                    stay_learner,
                    shutdown.clone(),
                ));
            }
        }
        Start::Resume(_) => info!("resumed from the data directory"),
    }
}

/// Starts the peer and admin services and the Raft instance, and brings the
/// node into the cluster (initializing or joining). Returns once Raft runs;
/// joining continues in the background.
pub async fn start(args: &Settings, shutdown: CancellationToken) -> anyhow::Result<Started> {
    let election_timeout_ms = args.election_timeout.as_millis() as u64;
    let heartbeat_ms = args.heartbeat.as_millis() as u64;
    let host = advertised_host(args);
    let resp_addr = join_host_port(&host, args.resp_port);
    let raft_listen = bind_addr(args, args.raft_port)?;
    let raft_listener = tokio::net::TcpListener::bind(raft_listen)
        .await
        .with_context(|| format!("binding the Raft port {raft_listen}"))?;
    let raft_port = raft_listener.local_addr()?.port();
    info!(port = raft_port, "listening for peers");
    let admin_listen = bind_addr(args, args.admin_port)?;
    let admin_listener = tokio::net::TcpListener::bind(admin_listen)
        .await
        .with_context(|| format!("binding the admin port {admin_listen}"))?;
    let admin_addr = join_host_port(&host, admin_listener.local_addr()?.port());
    let my_raft_addr = join_host_port(&host, raft_port);
    let mut peers = args.peers.0.clone();
    if peers.is_empty() {
        peers.insert(args.member_id, my_raft_addr.clone());
    }
    // With --join, the members are whoever the cluster says they are: this
    // node knows only the addresses it was given to ask.
    let join_addrs: Option<Vec<String>> = args.join.clone();
    if join_addrs.is_some() {
        if !args.peers.0.is_empty() {
            anyhow::bail!("--join and --peers cannot be used together");
        }
        peers = BTreeMap::from([(args.member_id, my_raft_addr.clone())]);
    }
    let Some(my_listed_addr) = peers.get(&args.member_id).cloned() else {
        anyhow::bail!("--id {} is not listed in --peers", args.member_id);
    };

    // The peer service answers Info before Raft exists.
    let slot: Arc<OnceLock<Arc<Cluster>>> = Arc::default();
    let fresh_intent: Arc<AtomicBool> = Arc::default();
    let started: Arc<tokio::sync::Notify> = Arc::default();
    let peer_service = PeerService {
        cluster: slot.clone(),
        fresh_intent: fresh_intent.clone(),
        started: started.clone(),
        vote_wait: Duration::from_millis(election_timeout_ms / 2),
        append_wait: Duration::from_millis(heartbeat_ms / 2),
        member_id: args.member_id,
        resp_addr: resp_addr.clone(),
        admin_addr: admin_addr.clone(),
    };
    let secret = match &args.peer_secret {
        Some(s) => Some(
            tonic::metadata::AsciiMetadataValue::try_from(s.as_str())
                .map_err(|_| anyhow::anyhow!("--peer-secret must be printable ASCII"))?,
        ),
        None => None,
    };
    let peer_secret = PeerSecret(secret.clone());
    serve_peers(raft_listener, peer_service, secret, shutdown.clone());

    let bootstrap_network = Network::new(0).with_secret(peer_secret.clone());
    let Opened { mode, logs, sm, temp_dir, data } =
        open_state(args, &bootstrap_network, &peers, &join_addrs, &fresh_intent).await?;
    // Before Raft applies anything, so that every entry sees them.
    sm.set_unsafe_switches(args.unsafe_switches.engine);
    let incarnation = match mode {
        Start::Fresh(_) => 0,
        Start::Join => rand::random::<u32>().max(1),
        Start::Resume(incarnation) => incarnation,
    };
    let me = node_id(args.member_id, incarnation);
    info!(node = %ShowId(me), ?mode, "starting Raft");
    if let Some(data) = &data {
        let mut id = data.identity.lock().expect("identity lock");
        id.member_id = args.member_id;
        id.incarnation = incarnation;
        id.clean_shutdown = false;
        id.write(&data.dir).context("writing the identity file")?;
    }

    let network = Network::new(me).with_secret(peer_secret);
    network.set_cluster_id(bootstrap_network.cluster_id());
    let (raft, vote, parts) = start_raft(me, args, network.clone(), logs, sm.clone()).await?;

    let (proposer, proposals) = Proposer::new();
    let (reads, read_waiters) = ReadBarrier::new();
    let confirmer = Confirmer::new(network.clone());
    let cluster = Arc::new(Cluster {
        raft: arc_swap::ArcSwap::from_pointee(raft),
        parts,
        stopping: Default::default(),
        rejoins: Default::default(),
        tenure: Default::default(),
        reforming: Default::default(),
        wedged: Default::default(),
        orphaned: Default::default(),
        change_pending: Default::default(),
        alone: Default::default(),
        sm,
        network,
        node_id: me,
        peers: peers.clone(),
        resp_addr,
        admin_addr,
        options: Options {
            request_timeout: args.request_timeout,
            read_consistency: args.read_consistency,
            redirect: args.redirect,
            lease: Duration::from_millis(election_timeout_ms / 2),
            // The longest election timeout (openraft picks timeouts in
            // [election-timeout, 2 x election-timeout]): by then the other
            // voters are electing a leader without this one, as etcd's
            // check-quorum assumes.
            quorum_timeout: Duration::from_millis(election_timeout_ms * 2),
            leaderless_timeout: Duration::from_millis(
                (election_timeout_ms * 6).min(args.request_timeout.as_millis() as u64),
            ),
            election_timeout_max: Duration::from_millis(election_timeout_ms * 2),
            appendfsync: match args.data_dir {
                Some(_) => args.fsync.name().into(),
                None => "none".into(),
            },
            redis_version: args.redis_version,
            unsafe_switches: args.unsafe_switches,
        },
        proposer,
        reads,
        confirmer,
        forwarder: Default::default(),
        vote,
        resp_addrs: Mutex::default(),
        admin_addrs: Mutex::default(),
        keyspace_hits: Default::default(),
        keyspace_misses: Default::default(),
        started: Instant::now(),
        data_dir: args.data_dir.clone(),
        admin_lock: Default::default(),
        handing_over: Default::default(),
        leaderless_since: Mutex::default(),
        touches: Default::default(),
        tracking: Default::default(),
    });
    let _ = slot.set(cluster.clone());
    started.notify_waiters();
    tokio::spawn(proposer::run(cluster.clone(), proposals));
    tokio::spawn(reads::run_barrier(cluster.clone(), read_waiters));

    serve_admin(admin_listener, &cluster, args.admin_token.as_deref(), &shutdown)?;

    enter(&mode, &cluster, args, &peers, &join_addrs, my_listed_addr, &shutdown);
    let data = data.map(Arc::new);
    tokio::spawn(name_the_cluster(
        cluster.clone(),
        data.clone(),
        args.initial_config.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(super::view::watch_leadership(cluster.clone(), shutdown.clone()));
    tokio::spawn(super::compaction::run(cluster.clone(), args.snapshot_every, shutdown.clone()));
    tokio::spawn(super::touch::run(cluster.clone(), shutdown.clone()));
    tokio::spawn(super::check_quorum::run(cluster.clone(), shutdown.clone()));
    tokio::spawn(super::reform::run(cluster.clone(), shutdown.clone()));
    tokio::spawn(super::prevote::run(cluster.clone(), shutdown.clone()));
    tokio::spawn(super::tracking::run(cluster.clone(), shutdown.clone()));
    Ok(Started { cluster, temp_dir, data })
}

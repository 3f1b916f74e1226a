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
//! - Otherwise it waits and asks again.
//!
//! With no `--peers` (or only itself), the node is a one-node cluster.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use raftcache_proto::admin::admin_server::AdminServer;
use raftcache_proto::raft::raft_server::RaftServer;
use raftcache_proto::raft::{InfoRequest, JoinRequest};
use raftcache_raft::mem_log::MemLogStore;
use raftcache_raft::network::{Network, MAX_MESSAGE};
use raftcache_raft::openraft::{self, BasicNode, SnapshotPolicy};
use raftcache_raft::state_machine::StateMachineStore;
use raftcache_raft::types::{node_id, NodeId, Raft, ShowId};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::admin::AdminService;
use super::peer::PeerService;
use super::proposer::{self, Proposer};
use super::reads::{self, ReadBarrier};
use super::{Cluster, Options, ReadConsistency};
use crate::config::Args;

/// How this node starts.
#[derive(Debug, PartialEq, Eq)]
enum Start {
    /// First start of the cluster: initialize with all members at incarnation 0.
    Fresh,
    /// The cluster exists: join it as a new incarnation.
    Join,
}

/// The host other nodes and clients should use for this node.
fn advertised_host(args: &Args) -> String {
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

fn bind_addr(args: &Args, port: u16) -> anyhow::Result<SocketAddr> {
    let host = args.bind.split_whitespace().next().unwrap_or("127.0.0.1").trim_start_matches('-');
    let host = if host == "*" { "0.0.0.0" } else { host };
    join_host_port(host, port).parse().with_context(|| format!("bad --bind address {host}"))
}

/// Asks every other member for its Info until the start mode is clear.
async fn decide(network: &Network, me: u32, peers: &BTreeMap<u32, String>) -> Start {
    let others: Vec<(u32, String)> =
        peers.iter().filter(|(m, _)| **m != me).map(|(m, a)| (*m, a.clone())).collect();
    if others.is_empty() {
        return Start::Fresh;
    }
    let mut last_log = Instant::now();
    loop {
        let mut reachable = 1; // this node
        let mut initialized = false;
        let probes = others.iter().map(|(_, addr)| async move {
            let mut client = network.client_for(addr).ok()?;
            let mut request = tonic::Request::new(InfoRequest {});
            request.set_timeout(Duration::from_millis(500));
            client.info(request).await.ok().map(|r| r.into_inner())
        });
        for info in futures::future::join_all(probes).await.into_iter().flatten() {
            reachable += 1;
            initialized |= info.initialized;
        }
        if initialized {
            return Start::Join;
        }
        if reachable * 2 > peers.len() {
            return Start::Fresh;
        }
        if last_log.elapsed() > Duration::from_secs(5) {
            info!(
                reachable,
                members = peers.len(),
                "waiting for a majority of members to be reachable"
            );
            last_log = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asks the cluster to admit this incarnation, until it is a voter.
async fn join(cluster: Arc<Cluster>, my_raft_addr: String, shutdown: CancellationToken) {
    let me = cluster.node_id;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let is_voter =
            cluster.metrics().membership_config.membership().voter_ids().any(|id| id == me);
        if is_voter {
            info!(node = %ShowId(me), "joined the cluster as a voter");
            return;
        }
        for (member, addr) in &cluster.peers {
            if *member == raftcache_raft::types::member_of(me) {
                continue;
            }
            let Ok(mut client) = cluster.network.client_for(addr) else { continue };
            let mut request = tonic::Request::new(JoinRequest {
                raft_node_id: me,
                raft_addr: my_raft_addr.clone(),
            });
            request.set_timeout(Duration::from_secs(120));
            match client.join(request).await {
                Ok(_) => break,
                Err(status) if status.code() == tonic::Code::FailedPrecondition => continue,
                Err(status) => warn!(member, error = %status, "join request failed"),
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
}

/// Starts the peer and admin services and the Raft instance, and brings the
/// node into the cluster (initializing or joining). Returns once Raft runs;
/// joining continues in the background.
pub async fn start(args: &Args, shutdown: CancellationToken) -> anyhow::Result<Started> {
    let host = advertised_host(args);
    let resp_addr = join_host_port(&host, args.port);
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
        peers.insert(args.id, my_raft_addr.clone());
    }
    let Some(my_listed_addr) = peers.get(&args.id).cloned() else {
        anyhow::bail!("--id {} is not listed in --peers", args.id);
    };

    // The peer service answers Info before Raft exists.
    let slot: Arc<OnceLock<Arc<Cluster>>> = Arc::default();
    let peer_service = PeerService {
        cluster: slot.clone(),
        member_id: args.id,
        resp_addr: resp_addr.clone(),
        admin_addr: admin_addr.clone(),
    };
    let serve_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let service = RaftServer::new(peer_service)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
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
        let result = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, serve_shutdown.cancelled())
            .await;
        if let Err(e) = result {
            warn!(error = %e, "peer service stopped");
        }
    });

    let bootstrap_network = Network::new(0);
    let mode = decide(&bootstrap_network, args.id, &peers).await;
    let incarnation = match mode {
        Start::Fresh => 0,
        Start::Join => rand::random::<u32>().max(1),
    };
    let me = node_id(args.id, incarnation);
    info!(node = %ShowId(me), ?mode, "starting Raft");

    let (sm_dir, temp_dir) = match &args.data_dir {
        Some(dir) => (dir.join("snapshots"), None),
        None => {
            let dir = std::env::temp_dir().join(format!(
                "raftcache-{}-{}-{:08x}",
                args.id,
                std::process::id(),
                rand::random::<u32>()
            ));
            (dir.clone(), Some(dir))
        }
    };
    let sm = StateMachineStore::open(&sm_dir)
        .with_context(|| format!("opening {}", sm_dir.display()))?;
    let network = Network::new(me);
    let config = openraft::Config {
        cluster_name: "raftcache".into(),
        heartbeat_interval: args.heartbeat_ms,
        election_timeout_min: args.election_timeout_ms,
        election_timeout_max: args.election_timeout_ms * 2,
        max_payload_entries: 1000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(args.snapshot_every),
        max_in_snapshot_log_to_keep: 1000,
        ..Default::default()
    }
    .validate()
    .context("raft config")?;
    let raft = Raft::new(me, Arc::new(config), network.clone(), MemLogStore::new(), sm.clone())
        .await
        .context("starting raft")?;

    let (proposer, proposals) = Proposer::new();
    let (reads, read_waiters) = ReadBarrier::new();
    let cluster = Arc::new(Cluster {
        raft,
        sm,
        network,
        node_id: me,
        peers: peers.clone(),
        resp_addr,
        admin_addr,
        options: Options {
            request_timeout: Duration::from_millis(args.request_timeout),
            read_consistency: ReadConsistency::parse(&args.read_consistency),
            redirect: args.follower_mode == "redirect",
            lease: Duration::from_millis(args.election_timeout_ms / 2),
        },
        proposer,
        reads,
        resp_addrs: Mutex::default(),
    });
    let _ = slot.set(cluster.clone());
    tokio::spawn(proposer::run(cluster.clone(), proposals));
    tokio::spawn(reads::run_barrier(cluster.clone(), read_waiters));

    let admin = AdminService { cluster: cluster.clone() };
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
            .add_service(AdminServer::new(admin))
            .serve_with_incoming_shutdown(incoming, admin_shutdown.cancelled())
            .await;
        if let Err(e) = result {
            warn!(error = %e, "admin service stopped");
        }
    });

    match mode {
        Start::Fresh => {
            let members: BTreeMap<NodeId, BasicNode> = peers
                .iter()
                .map(|(m, addr)| (node_id(*m, 0), BasicNode::new(addr.clone())))
                .collect();
            match cluster.raft.initialize(members).await {
                Ok(()) => info!("initialized the cluster"),
                Err(e) => info!(reason = %e, "not initializing (already initialized)"),
            }
        }
        Start::Join => {
            tokio::spawn(join(cluster.clone(), my_listed_addr, shutdown.clone()));
        }
    }
    Ok(Started { cluster, temp_dir })
}

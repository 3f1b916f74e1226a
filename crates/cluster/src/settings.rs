//! The cluster layer's settings, typed: the binary parses its flags (and
//! config file) once, at its edge, and hands these over.

use std::path::PathBuf;
use std::time::Duration;

pub use raftcache_raft::sled_log::Fsync;

pub use crate::ReadConsistency;

/// What the cluster layer needs to know to start a node.
#[derive(Clone, Debug)]
pub struct Settings {
    /// This node's member id (`--id`).
    pub member_id: u32,
    /// The members that form the cluster at its first start (`--peers`).
    pub peers: Peers,
    /// `--join`: `Some(addresses)` to join a running cluster (empty: wait
    /// to be added by an operator).
    pub join: Option<Vec<String>>,
    /// `--join-as learner`: stay a learner after joining.
    pub join_as_learner: bool,
    /// The listen addresses (`--bind`, space-separated like redis-server).
    pub bind: String,
    /// The host others are told to use (`--advertise`).
    pub advertise: Option<String>,
    /// The client (RESP) port, advertised to peers.
    pub resp_port: u16,
    pub raft_port: u16,
    pub admin_port: u16,
    /// Where the Raft log, vote and snapshots live; none: memory only.
    pub data_dir: Option<PathBuf>,
    pub fsync: Fsync,
    pub read_consistency: ReadConsistency,
    /// Followers answer -MOVED instead of forwarding (`--follower-mode redirect`).
    pub redirect: bool,
    pub request_timeout: Duration,
    pub heartbeat: Duration,
    /// The shortest election timeout (the longest is twice it).
    pub election_timeout: Duration,
    /// Fewest applied entries between snapshots.
    pub snapshot_every: u64,
    /// The bearer token admin calls must carry.
    pub admin_token: Option<String>,
    /// The secret peers exchange on the Raft port.
    pub peer_secret: Option<String>,
    /// The Redis version the server reports (admin Status shows it).
    pub redis_version: &'static str,
    /// Cluster-wide parameters (CONFIG SET through the log, e.g. `maxmemory`)
    /// that the node proposes with the cluster's id when it is the first
    /// leader of a new cluster; afterwards CONFIG SET changes them.
    pub initial_config: Vec<(String, bytes::Bytes)>,
}

/// Cluster members: member id → Raft peer address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers(pub std::collections::BTreeMap<u32, String>);

/// Parses `--peers 1=host:port,2=host:port`.
pub fn parse_peers(s: &str) -> Result<Peers, String> {
    let mut peers = std::collections::BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (id, addr) =
            item.split_once('=').ok_or_else(|| format!("peer '{item}' is not id=host:port"))?;
        let id: u32 = id.trim().parse().map_err(|_| format!("peer id '{id}' is not a number"))?;
        let addr = addr.trim();
        let (host, port) =
            addr.rsplit_once(':').ok_or_else(|| format!("peer address '{addr}' has no port"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("peer address '{addr}' is not host:port"));
        }
        if id == 0 {
            return Err("member ids start at 1".into());
        }
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(format!("member {id} is listed twice"));
        }
    }
    Ok(Peers(peers))
}

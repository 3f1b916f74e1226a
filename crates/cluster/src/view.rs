//! What the rest of the node may know of Raft's state, in this crate's own
//! types (openraft's stay inside the cluster layer).

use std::sync::Arc;

use raftcache_raft::openraft::ServerState;
use raftcache_raft::types::NodeId;
use raftcache_sm::{Op, Proposal, Reply};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{role_name, Cluster, Leader};

/// A follower's replication progress, as its leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    pub node: NodeId,
    /// The last index known replicated on it.
    pub matched: u64,
}

/// A look at this node's Raft state.
#[derive(Clone, Debug, Default)]
pub struct RaftView {
    pub term: u64,
    /// "leader", "follower", "candidate", "learner" or "shutdown".
    pub role: &'static str,
    pub is_leader: bool,
    pub leader: Option<NodeId>,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
    pub voters: usize,
    pub learners: usize,
    /// The leader's view of its followers (empty elsewhere).
    pub followers: Vec<Progress>,
    /// The highest index a majority of every configuration holds (the
    /// leader only).
    pub commit_index: Option<u64>,
}

impl Cluster {
    /// This node's Raft state now.
    pub fn view(&self) -> RaftView {
        let metrics = self.raft().metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let voters = membership.voter_ids().count();
        let is_leader = m.state == ServerState::Leader && m.current_leader == Some(self.node_id);
        let last = m.last_log_index.unwrap_or(0);
        let mut view = RaftView {
            term: m.current_term,
            role: role_name(m.state),
            is_leader,
            leader: m.current_leader,
            last_log_index: last,
            applied_index: m.last_applied.map_or(0, |l| l.index),
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            purged_index: m.purged.map_or(0, |l| l.index),
            voters,
            learners: membership.nodes().count().saturating_sub(voters),
            ..Default::default()
        };
        if let (true, Some(replication)) = (is_leader, m.replication.as_ref()) {
            let matched = |id: &NodeId| -> u64 {
                if *id == self.node_id {
                    return last;
                }
                replication.get(id).copied().flatten().map_or(0, |l| l.index)
            };
            view.followers = replication
                .keys()
                .filter(|id| **id != self.node_id)
                .map(|id| Progress { node: *id, matched: matched(id) })
                .collect();
            view.commit_index = membership
                .get_joint_config()
                .iter()
                .map(|config| {
                    let mut held: Vec<u64> = config.iter().map(matched).collect();
                    held.sort_unstable_by(|a, b| b.cmp(a));
                    held.get(config.len() / 2).copied().unwrap_or(0)
                })
                .min();
        }
        view
    }

    /// Proposes `ops` outside any client session (the leader's own upkeep:
    /// expiry purges); `None` unless this node leads (and is not handing
    /// leadership over) and the entry was applied.
    pub async fn propose_upkeep(&self, ops: Vec<Op>, time_ms: i64) -> Option<Vec<Reply>> {
        if self.leader() != Leader::Me || self.handing_over() {
            return None;
        }
        let proposal = Proposal { time_ms, seed: rand::random(), origin: None, ops: Arc::new(ops) };
        self.raft().client_write(proposal).await.ok().map(|r| r.data.0)
    }

    /// Raft RPCs to each member that failed so far.
    pub fn peer_failures(&self) -> Vec<(NodeId, u64)> {
        let members: std::collections::BTreeSet<NodeId> = {
            let metrics = self.raft().metrics();
            let m = metrics.borrow();
            m.membership_config.membership().nodes().map(|(id, _)| *id).collect()
        };
        let failures = self.network.peer_failures();
        failures.into_iter().filter(|(id, _)| members.contains(id)).collect()
    }

    /// Stops Raft (at shutdown).
    pub async fn shutdown(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = self.raft().shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// Reports elections and leader changes to the observer (see
/// [`crate::observe`]) and logs each new leader, from openraft's server
/// metrics (published only when the vote, role, leader or membership
/// change). Runs until `shutdown`.
pub async fn watch_leadership(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    let mut rx = cluster.raft().server_metrics();
    let me = cluster.node_id;
    let mut leader = None;
    let mut led_term = 0;
    let mut stood_in = {
        let m = rx.borrow();
        // A vote for itself restored from the data directory is not an
        // election of this process (which starts as a follower).
        let vote = m.vote.leader_id();
        let restored =
            vote.node_id == me && !matches!(m.state, ServerState::Candidate | ServerState::Leader);
        if restored {
            vote.term
        } else {
            0
        }
    };
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                changed = rx.changed() => if changed.is_err() {
                    if cluster.stopping() { return }
                    // The Raft instance was replaced (re-formed): follow the new one.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    rx = cluster.raft().server_metrics();
                },
                _ = shutdown.cancelled() => return,
            }
        }
        first = false;
        let m = rx.borrow_and_update();
        let vote = m.vote.leader_id();
        if vote.node_id == me && vote.term > stood_in {
            stood_in = vote.term;
            crate::observe::get().election();
        }
        // Logged for every new term with a leader (the same node may be
        // elected again); counted as a change only when the node differs.
        if m.current_leader.is_some() && (m.current_leader != leader || vote.term != led_term) {
            if m.current_leader != leader {
                crate::observe::get().leader_changed();
            }
            leader = m.current_leader;
            led_term = vote.term;
            if let Some(id) = leader {
                info!(leader = %raftcache_raft::types::ShowId(id), term = vote.term, "new leader");
            }
        }
    }
}

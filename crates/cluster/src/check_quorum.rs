//! Check-quorum: a leader that has not heard from a majority of the voters
//! for `quorum_timeout` (the longest election timeout) steps down, as etcd's
//! `--check-quorum` and RedisRaft do, so that neither clients nor operators
//! are told that a cluster without a quorum has a leader.
//!
//! openraft 0.9 has no step-down of its own: a leader stays one until it
//! hears of a later term, and it ignores an election trigger. So the node
//! gives itself that later term: it hands its own Raft a vote request for
//! term + 1 from [`NOBODY`], an id no node ever has (member 0 is refused by
//! `--id`). The vote is granted like any other, which makes the node a
//! follower that voted in term + 1 for a candidate that does not exist.
//!
//! Why this is safe: granting a vote only ever *removes* this node's help
//! from later elections of that term, and no node can collect votes as
//! [`NOBODY`]. The vote is made durable before it counts (the log store
//! saves it), so read-index confirmations that check this node's durable
//! vote (see [`crate::confirm`]) fail from then on, exactly as if another
//! node had been elected. The node's log is untouched. What it costs: once
//! the partition heals, this node's term is higher than the majority's
//! leader's (as for any follower that was cut off, since openraft 0.9 has no
//! pre-vote), and that leader steps down on hearing it; a new election
//! follows, which the node cannot win if it missed entries.
//!
//! openraft refuses a vote request while its leader lease (the longest
//! election timeout) runs since the vote was last refreshed; a leader's vote
//! is refreshed when it is elected, and `quorum_timeout` is at least the
//! lease, so by the time this steps in the request is granted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use raftcache_raft::openraft::raft::VoteRequest;
use raftcache_raft::openraft::{CommittedLeaderId, LogId, ServerState, Vote};
use raftcache_raft::types::NodeId;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Cluster;

/// The candidate a stepping-down leader votes for: member 0, which no node
/// is (`--id` must be at least 1).
pub const NOBODY: NodeId = 0;

/// How often the leader checks its quorum.
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// Runs until `shutdown`: whenever this node leads but no majority has
/// acknowledged it for `quorum_timeout`, it steps down.
pub async fn run(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The term in which this node was first seen leading without any
    // acknowledgement yet, and since when (a leader restored from its own
    // committed vote, or one elected just before it was cut off).
    let mut unacked: Option<(u64, Instant)> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let Some(term) = cut_off(&cluster, &mut unacked) else { continue };
        step_down(&cluster, term).await;
    }
}

/// The term of this node's leadership if it should step down now.
fn cut_off(cluster: &Cluster, unacked: &mut Option<(u64, Instant)>) -> Option<u64> {
    let metrics = cluster.raft().metrics();
    let m = metrics.borrow();
    if m.state != ServerState::Leader || m.current_leader != Some(cluster.node_id) {
        *unacked = None;
        return None;
    }
    if m.membership_config.membership().voter_ids().count() <= 1 {
        return None;
    }
    let term = m.current_term;
    let timeout = cluster.options.quorum_timeout;
    let lost = match m.millis_since_quorum_ack {
        Some(ms) => {
            *unacked = None;
            Duration::from_millis(ms) > timeout
        }
        None => {
            let since = match *unacked {
                Some((t, since)) if t == term => since,
                _ => unacked.insert((term, Instant::now())).1,
            };
            since.elapsed() > timeout
        }
    };
    lost.then_some(term)
}

/// Makes this leader of `term` a follower by granting a vote for term + 1 to
/// [`NOBODY`] (see the module documentation).
async fn step_down(cluster: &Cluster, term: u64) {
    let m = cluster.metrics();
    let heard = m.millis_since_quorum_ack;
    // The candidate's log must be at least this node's; its last log id is
    // only compared, never used.
    let last = LogId::new(CommittedLeaderId::new(u64::MAX, NOBODY), u64::MAX);
    let request = VoteRequest::new(Vote::new(term + 1, NOBODY), Some(last));
    match cluster.raft().vote(request).await {
        Ok(resp) if resp.vote_granted => {
            crate::observe::get().stepped_down();
            warn!(
                term,
                quorum_ack_ms = ?heard,
                "stepped down: no majority of the voters acknowledged this leader within {} ms \
                 (check-quorum); clients get CLUSTERDOWN until a leader is elected",
                cluster.options.quorum_timeout.as_millis()
            );
        }
        // The leader lease has not run out yet, or the term moved on: check
        // again at the next tick.
        Ok(resp) => info!(term, vote = %resp.vote, "check-quorum step-down not granted yet"),
        Err(e) => warn!(term, error = %e, "check-quorum step-down failed"),
    }
}

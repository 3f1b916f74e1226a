//! Leadership confirmation for linearizable reads (read index), outside
//! openraft's core.
//!
//! A read on the leader may be served from its state machine once (1) no other
//! leader can have been elected since the read arrived and (2) the state
//! machine has applied everything that could have been acknowledged before it
//! arrived. (2) is waiting for the applied index to reach the log's last index
//! as of the read. (1) is a *round*: the leader asks every voter whether its
//! durable vote is still for this leader in this term. A voter that says yes
//! has not voted in a later term at the moment it answered, and votes are made
//! durable before they are granted; a later leader needs the votes of a
//! majority, which shares a member with any majority of yes answers (the leader
//! counts itself, checking its own durable vote after the answers). So once a
//! majority of every configuration of the membership said yes to a round sent
//! after the read arrived, no later leader existed when the read arrived, and
//! this leader's log held every acknowledged write.
//!
//! This is what openraft's `ensure_linearizable` establishes with a round of
//! heartbeats, at a fraction of the cost: a voter answers from one mutex read
//! instead of running an AppendEntries through its Raft core, and rounds travel
//! as messages on one long-lived gRPC stream per voter instead of a new HTTP/2
//! request each.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftcache_proto::raft::{ConfirmReply, ConfirmRequest};
use raftcache_raft::network::Network;
use raftcache_raft::openraft::ServerState;
use raftcache_raft::types::{NodeId, VoteCell};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::Cluster;

/// How long a round waits for a majority before it fails (the reads in it are
/// retried in a later round until request-timeout).
const ROUND_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a round waits for the voters it asked first before it asks the
/// others too.
const HEDGE: Duration = Duration::from_millis(2);
/// Pause before reconnecting a broken stream.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// Rounds queued to one voter before later ones are dropped (it is not
/// answering; a later round will be sent once it does).
const QUEUED_ROUNDS: usize = 64;

/// What a round asks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Ask {
    round: u64,
    term: u64,
    leader: NodeId,
}

/// The leader's stream to one voter.
struct Link {
    addr: String,
    want: watch::Sender<Ask>,
    /// The highest round this voter said yes to.
    accepted: Arc<AtomicU64>,
}

/// The leader's side: one link per voter, created on first use.
pub struct Confirmer {
    network: Network,
    links: Mutex<HashMap<NodeId, Link>>,
    next_round: AtomicU64,
    /// Bumped whenever any voter says yes.
    answers: watch::Sender<u64>,
}

impl Confirmer {
    pub fn new(network: Network) -> Confirmer {
        Confirmer {
            network,
            links: Mutex::default(),
            next_round: AtomicU64::new(0),
            answers: watch::channel(0).0,
        }
    }

    /// Sends `ask` to `target` at `addr`, starting its stream if needed, and
    /// returns the counter of rounds it accepted.
    fn send(&self, target: NodeId, addr: &str, ask: Ask) -> Arc<AtomicU64> {
        let mut links = self.links.lock().expect("links lock");
        if links.get(&target).is_none_or(|l| l.addr != addr) {
            let link = Link {
                addr: addr.to_string(),
                want: watch::channel(Ask::default()).0,
                accepted: Arc::default(),
            };
            tokio::spawn(run_link(
                self.network.clone(),
                target,
                addr.to_string(),
                link.want.subscribe(),
                link.accepted.clone(),
                self.answers.clone(),
            ));
            links.insert(target, link);
        }
        let link = &links[&target];
        link.want.send_replace(ask);
        link.accepted.clone()
    }

    /// Drops the links to nodes that are no longer voters (a replaced
    /// incarnation): their tasks end when their link is dropped.
    fn forget_all_but(&self, voters: &[(NodeId, String)]) {
        let mut links = self.links.lock().expect("links lock");
        if links.len() > voters.len() {
            links.retain(|id, _| voters.iter().any(|(v, _)| v == id));
        }
    }

    /// The last round `target` said yes to (0 if none).
    fn accepted(&self, target: NodeId) -> u64 {
        let links = self.links.lock().expect("links lock");
        links.get(&target).map_or(0, |l| l.accepted.load(Ordering::Relaxed))
    }

    /// One confirmation round; true if this node still leads and has applied
    /// everything committed before the call.
    pub async fn round(&self, cluster: &Cluster, vote: &VoteCell) -> bool {
        let Some(Lead { term, configs, voters, read_index }) = leading(cluster) else {
            return false;
        };
        let ask = Ask {
            round: self.next_round.fetch_add(1, Ordering::Relaxed) + 1,
            term,
            leader: cluster.node_id,
        };

        self.forget_all_but(&voters);
        let mut answers = self.answers.subscribe();
        // Ask just enough voters for a majority, the most recently responsive
        // first; the others only if they have not all answered by HEDGE. With
        // three nodes a round costs one follower one message instead of two.
        let mut voters = voters;
        voters.sort_by_key(|(id, _)| std::cmp::Reverse(self.accepted(*id)));
        let first = match configs.as_slice() {
            [c] => (c.len() / 2 + 1).saturating_sub(usize::from(c.contains(&cluster.node_id))),
            _ => voters.len(),
        };
        let (asked, rest) = voters.split_at(first.min(voters.len()));
        let mut counters: Vec<(NodeId, Arc<AtomicU64>)> =
            asked.iter().map(|(id, addr)| (*id, self.send(*id, addr, ask))).collect();
        let deadline = tokio::time::Instant::now() + ROUND_TIMEOUT;
        let mut hedge = (!rest.is_empty()).then(|| tokio::time::Instant::now() + HEDGE);
        loop {
            answers.borrow_and_update();
            let yes: BTreeSet<NodeId> = counters
                .iter()
                .filter(|(_, c)| c.load(Ordering::Acquire) >= ask.round)
                .map(|(id, _)| *id)
                .chain(std::iter::once(cluster.node_id))
                .collect();
            if majority(&configs, &yes) {
                break;
            }
            match tokio::time::timeout_at(hedge.unwrap_or(deadline), answers.changed()).await {
                Ok(Ok(())) => {}
                Err(_) if hedge.is_some() => {
                    hedge = None;
                    counters.extend(rest.iter().map(|(id, addr)| (*id, self.send(*id, addr, ask))));
                }
                _ => return false,
            }
        }
        // This node's own vote, checked after the answers.
        if !still_leads(cluster, vote, ask.term) {
            return false;
        }
        if cluster.sm.read().last_applied.map_or(0, |l| l.index) >= read_index {
            return true;
        }
        cluster
            .raft()
            .wait(Some(cluster.options.request_timeout))
            .applied_index_at_least(Some(read_index), "read index")
            .await
            .is_ok()
    }
}

/// What a leader knows when a round begins.
struct Lead {
    term: u64,
    /// The membership's configurations (two while it changes).
    configs: Vec<BTreeSet<NodeId>>,
    /// The other voters and their addresses.
    voters: Vec<(NodeId, String)>,
    /// Everything acknowledged so far is at or below this index.
    read_index: u64,
}

/// The leader's term, membership and read index, if this node leads.
fn leading(cluster: &Cluster) -> Option<Lead> {
    let lead = {
        let metrics = cluster.raft().metrics();
        let m = metrics.borrow();
        let leader_id = m.vote.leader_id();
        if m.state != ServerState::Leader
            || leader_id.node_id != cluster.node_id
            || !m.vote.is_committed()
        {
            return None;
        }
        let membership = m.membership_config.membership();
        Lead {
            term: leader_id.term,
            configs: membership.get_joint_config().clone(),
            voters: membership
                .voter_ids()
                .filter(|id| *id != cluster.node_id)
                .filter_map(|id| membership.get_node(&id).map(|n| (id, n.addr.clone())))
                .collect(),
            read_index: m.last_log_index.unwrap_or(0),
        }
    };
    // Everything acknowledged has been applied here: the applied index covers
    // it even if the metrics lag.
    let applied = cluster.sm.read().last_applied.map_or(0, |l| l.index);
    Some(Lead { read_index: lead.read_index.max(applied), ..lead })
}

/// True if `yes` holds a majority of every configuration.
fn majority(configs: &[BTreeSet<NodeId>], yes: &BTreeSet<NodeId>) -> bool {
    configs.iter().all(|c| c.intersection(yes).count() * 2 > c.len())
}

/// True if this node's durable vote is for itself in `term`.
fn still_leads(cluster: &Cluster, vote: &VoteCell, term: u64) -> bool {
    vote.get()
        .is_some_and(|v| v.leader_id().term == term && v.leader_id().node_id == cluster.node_id)
}

/// A read index for a follower's `ReadIndex` without a round, when the
/// follower's own vote completes a majority. The follower sends the durable
/// vote it had after the reads arrived; if it is for this leader in this term,
/// the follower had not voted in a later term then, which is the answer a
/// round would get from it. With three nodes, the follower and the leader are
/// a majority, so follower reads cost one request and no round.
pub fn vouched_read_index(
    cluster: &Cluster,
    vote: &VoteCell,
    from: NodeId,
    term: u64,
    leader: NodeId,
) -> Option<u64> {
    let lead = leading(cluster)?;
    if term != lead.term || leader != cluster.node_id {
        return None;
    }
    let yes: BTreeSet<NodeId> = [cluster.node_id, from].into();
    if !majority(&lead.configs, &yes) || !still_leads(cluster, vote, term) {
        return None;
    }
    Some(lead.read_index)
}

/// Keeps a stream to one voter open while rounds are wanted and records its
/// yes answers. Ends when the link is dropped.
async fn run_link(
    network: Network,
    target: NodeId,
    addr: String,
    mut want: watch::Receiver<Ask>,
    accepted: Arc<AtomicU64>,
    answers: watch::Sender<u64>,
) {
    let request = |ask: Ask| ConfirmRequest {
        round: ask.round,
        term: ask.term,
        leader: ask.leader,
        target,
        cluster_id: network.cluster_id(),
    };
    loop {
        if want.changed().await.is_err() {
            return;
        }
        let Ok(mut client) = network.client_for(&addr) else {
            tracing::warn!(%addr, "bad peer address");
            return;
        };
        let (tx, rx) = mpsc::channel(QUEUED_ROUNDS);
        let _ = tx.try_send(request(*want.borrow_and_update()));
        let call = client.confirm_leader(ReceiverStream::new(rx));
        let mut inbound = match tokio::time::timeout(ROUND_TIMEOUT, call).await {
            Ok(Ok(response)) => response.into_inner(),
            _ => {
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                changed = want.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // A full queue means the voter is not answering: drop
                    // this round (its reads wait for other voters or retry).
                    let _ = tx.try_send(request(*want.borrow_and_update()));
                }
                reply = inbound.message() => match reply {
                    Ok(Some(ConfirmReply { round, accepted: true })) => {
                        accepted.fetch_max(round, Ordering::Release);
                        answers.send_modify(|n| *n = n.wrapping_add(1));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                },
            }
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

/// A voter's answer to one round: true if this node is `target` in the same
/// cluster and its durable vote is for `leader` in `term`.
pub fn answer(cluster: &Cluster, vote: &VoteCell, request: &ConfirmRequest) -> ConfirmReply {
    let mine = cluster.network.cluster_id();
    let same_cluster = request.cluster_id == 0 || mine == 0 || request.cluster_id == mine;
    let accepted = same_cluster
        && request.target == cluster.node_id
        && vote.get().is_some_and(|v| {
            v.leader_id().term == request.term && v.leader_id().node_id == request.leader
        });
    ConfirmReply { round: request.round, accepted }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_majority_is_needed_in_every_configuration() {
        let one = [set(&[1, 2, 3])];
        assert!(majority(&one, &set(&[1, 2])));
        assert!(!majority(&one, &set(&[1])));
        assert!(!majority(&one, &set(&[1, 4, 5])), "non-members do not count");
        // A joint configuration while membership changes from {1,2,3} to {3,4,5}.
        let joint = [set(&[1, 2, 3]), set(&[3, 4, 5])];
        assert!(!majority(&joint, &set(&[1, 2, 3])));
        assert!(!majority(&joint, &set(&[3, 4, 5])));
        assert!(majority(&joint, &set(&[1, 3, 4])));
        // Five voters: the leader and one vouching follower are not enough.
        let five = [set(&[1, 2, 3, 4, 5])];
        assert!(!majority(&five, &set(&[1, 2])));
        assert!(majority(&five, &set(&[1, 2, 3])));
    }
}

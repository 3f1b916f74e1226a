//! The write path: group commit, sessions and retries.
//!
//! Connections send *groups* (a connection's consecutive writes, which must
//! stay in order) through one channel. The proposer drains whatever groups
//! are waiting (giving runnable connections a few scheduler turns to add
//! theirs when the batch is small, see [`GATHER_BELOW`]) into one batch, which becomes one log entry with one sequence
//! number, and submits each batch in its own task, so many batches are in
//! flight at once. Ordering holds because a connection never has more than one
//! group in flight: it waits for a group's replies before it sends anything
//! that must observe them.
//!
//! Every batch carries this node's session, its sequence number and the
//! lowest sequence number still in flight (`ack_below`). A batch that may or
//! may not have been applied is retried with the same sequence number, which
//! the engine applies at most once.
//!
//! A node that has had no leader for a while (half the longest election
//! timeout: longer than an election takes once it has started) asks its
//! peers in turn to relay its batches to the leader they follow (see
//! [`super::forward`]), until it has a leader again or has been without one
//! for `leaderless_timeout`. A follower cut off from the leader but not from
//! the other followers (a bridge partition) stands for election again and
//! again and never wins (the others still hear the leader); its clients are
//! served through the relay.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftcache_raft::openraft::error::{ClientWriteError, RaftError};
use raftcache_raft::openraft::raft::ClientWriteResponse;
use raftcache_raft::openraft::BasicNode;
use raftcache_raft::types::{NodeId, TypeConfig};
use raftcache_sm::{Op, Origin, Proposal, Reply};
use tokio::sync::{mpsc, oneshot};

use super::forward::ForwardError;
use super::{Cluster, ClusterError, Leader};
use crate::clock::now_ms;
use crate::settings::ACK_BEFORE_COMMIT_AFTER;

/// Most operations in one log entry.
pub const MAX_BATCH_OPS: usize = 4096;
/// A batch smaller than this (in commands) is held back while the proposer
/// yields to the scheduler up to [`GATHER_YIELDS`] times, so that connections
/// that are already runnable (their commands read, not yet queued) add their
/// groups to it. This waits for no commit and no timer, only for tasks ready
/// to run; at `-P 1` with 50 clients it turned one log entry per command into
/// several and raised replicated SET from ~0.48 to ~0.55 of Redis (through a
/// follower, from ~0.36 to ~0.48). A pipelined group is already big enough.
const GATHER_BELOW: usize = 16;
/// See [`GATHER_BELOW`].
const GATHER_YIELDS: usize = 5;
/// Capacity of the channel from connections (each holds one group).
const QUEUE: usize = 4096;
/// Pause between attempts while leadership settles.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Pause after a peer refused to relay (it has no leader either).
const RELAY_PAUSE: Duration = Duration::from_millis(50);
/// How long one relay may take: ample for a peer to pass a batch on and a
/// leader to commit it. Peers whose Raft RPCs fail (the leader this node
/// cannot reach) are asked last.
const RELAY_ATTEMPT: Duration = Duration::from_secs(1);

/// One connection's consecutive writes and where their replies go.
pub struct Group {
    pub cmds: Vec<Op>,
    pub reply: oneshot::Sender<Result<Vec<Reply>, ClusterError>>,
}

#[derive(Debug, Default)]
struct Seqs {
    next: u64,
    in_flight: BTreeSet<u64>,
}

/// The handle connections use to write.
pub struct Proposer {
    tx: mpsc::Sender<Group>,
    /// This node's session id (unique per process).
    pub session: u64,
    seqs: Mutex<Seqs>,
    /// Entries proposed, batches, for INFO.
    pub batches: AtomicU64,
    pub ops: AtomicU64,
    /// Attempts given up because their leader changed, for INFO.
    pub abandoned: AtomicU64,
    /// The peer that last relayed a batch (asked first next time).
    relay_via: Mutex<Option<String>>,
    /// Which peer a batch asks for a relay when none relayed last.
    relay_turn: AtomicUsize,
}

impl Proposer {
    pub fn new() -> (Proposer, mpsc::Receiver<Group>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let proposer = Proposer {
            tx,
            session: rand::random(),
            seqs: Mutex::default(),
            batches: AtomicU64::new(0),
            ops: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            relay_via: Mutex::default(),
            relay_turn: AtomicUsize::new(0),
        };
        (proposer, rx)
    }

    /// Submits a group of writes and waits for their replies.
    pub async fn write(&self, cmds: Vec<Op>) -> Result<Vec<Reply>, ClusterError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Group { cmds, reply: tx }).await.map_err(|_| ClusterError::ShuttingDown)?;
        rx.await.map_err(|_| ClusterError::ShuttingDown)?
    }

    fn begin(&self) -> u64 {
        let mut s = self.seqs.lock().expect("seq lock");
        let seq = s.next;
        s.next += 1;
        s.in_flight.insert(seq);
        seq
    }

    fn end(&self, seq: u64) {
        self.seqs.lock().expect("seq lock").in_flight.remove(&seq);
    }

    /// The lowest sequence number still waiting for its outcome.
    fn ack_below(&self) -> u64 {
        let s = self.seqs.lock().expect("seq lock");
        s.in_flight.first().copied().unwrap_or(s.next)
    }
}

/// Batches groups and submits them; runs until the channel closes.
pub async fn run(cluster: Arc<Cluster>, mut rx: mpsc::Receiver<Group>) {
    while let Some(first) = rx.recv().await {
        let mut ops_count = first.cmds.len();
        let mut groups = vec![first];
        let mut yielded = 0;
        let mut gathered = 0;
        loop {
            while ops_count < MAX_BATCH_OPS {
                match rx.try_recv() {
                    Ok(group) => {
                        ops_count += group.cmds.len();
                        groups.push(group);
                    }
                    Err(_) => break,
                }
            }
            // Another turn only while turns bring groups: a lone client
            // (nothing else runnable) pays for one turn, not five.
            let gained = groups.len() > gathered;
            gathered = groups.len();
            if yielded >= GATHER_YIELDS || ops_count >= GATHER_BELOW || (yielded > 0 && !gained) {
                break;
            }
            yielded += 1;
            tokio::task::yield_now().await;
        }
        let seq = cluster.proposer.begin();
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let sizes: Vec<usize> = groups.iter().map(|g| g.cmds.len()).collect();
            let mut senders = Vec::with_capacity(groups.len());
            let mut ops = Vec::with_capacity(ops_count);
            for group in groups {
                senders.push(group.reply);
                ops.extend(group.cmds);
            }
            cluster.proposer.batches.fetch_add(1, Ordering::Relaxed);
            cluster.proposer.ops.fetch_add(ops.len() as u64, Ordering::Relaxed);
            crate::observe::get().entry_proposed(ops.len());
            let result = submit(&cluster, seq, Arc::new(ops)).await;
            cluster.proposer.end(seq);
            match result {
                Ok(mut replies) => {
                    for (sender, size) in senders.into_iter().zip(sizes).rev() {
                        let rest = replies.split_off(replies.len() - size);
                        let _ = sender.send(Ok(rest));
                    }
                }
                Err(e) => {
                    for sender in senders {
                        let _ = sender.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

/// How one attempt at a batch ended.
pub(super) enum Attempt {
    Done(Vec<Reply>),
    /// Nothing was applied (the receiver refused it before proposing).
    Refused,
    /// It may have been applied.
    Unknown,
    Fatal(ClusterError),
}

/// Where one attempt at a batch goes.
enum Target {
    /// The usable leader (this node or another).
    Leader(Leader),
    /// A peer asked to relay the batch to its leader, until `until`.
    Relay { raft_addr: String, until: Instant },
}

/// Where the next attempt goes: the usable leader, waiting for one while an
/// election may still settle it; after half the longest election timeout
/// without one, a peer to relay through (each in turn: the one that relayed
/// last first, those whose Raft RPCs fail last; each for at most
/// [`RELAY_ATTEMPT`]). Once the node has had no leader for
/// `leaderless_timeout`, one more relay through a peer that answers (a
/// follower cut off from the leader alone is served this way for as long as
/// the partition lasts) and then `NoLeader`, at once if no peer answers;
/// also when `deadline` passed.
async fn route(
    cluster: &Cluster,
    deadline: Instant,
    turn: &mut usize,
    late_relay: &mut bool,
) -> Result<Target, ClusterError> {
    let relay_after = cluster.options.election_timeout_max / 2;
    let (leader, leaderless) = cluster.observe_leader();
    if leader != Leader::Unknown {
        return Ok(Target::Leader(leader));
    }
    if leaderless < relay_after {
        let until = deadline.min(Instant::now() + (relay_after - leaderless));
        match cluster.wait_for_leader(until).await {
            Ok(leader) => return Ok(Target::Leader(leader)),
            Err(ClusterError::NoLeader) => {}
            Err(e) => return Err(e),
        }
    }
    let (leader, leaderless) = cluster.observe_leader();
    if leader != Leader::Unknown {
        return Ok(Target::Leader(leader));
    }
    let to_deadline = deadline.saturating_duration_since(Instant::now());
    if to_deadline.is_zero() {
        return Err(ClusterError::NoLeader);
    }
    let left = to_deadline.min(cluster.options.leaderless_timeout.saturating_sub(leaderless));
    let peers = relay_peers(cluster);
    if left.is_zero() {
        // The peer that relayed last, else the next answering one in the
        // node's own rotation (so that successive batches try each).
        let answering = peers.iter().filter(|p| !p.failing).count();
        if *late_relay || answering == 0 {
            return Err(ClusterError::NoLeader);
        }
        *late_relay = true;
        let via = cluster.proposer.relay_via.lock().expect("relay lock").is_some();
        let turn = cluster.proposer.relay_turn.fetch_add(1, Ordering::Relaxed);
        let raft_addr = peers[if via { 0 } else { turn % answering }].addr.clone();
        let until = Instant::now() + to_deadline.min(RELAY_ATTEMPT);
        return Ok(Target::Relay { raft_addr, until });
    }
    if peers.is_empty() {
        return cluster.wait_for_leader(deadline).await.map(Target::Leader);
    }
    let raft_addr = peers[*turn % peers.len()].addr.clone();
    *turn += 1;
    Ok(Target::Relay { raft_addr, until: Instant::now() + left.min(RELAY_ATTEMPT) })
}

/// A peer that may relay this node's batches.
struct RelayPeer {
    addr: String,
    /// Its last Raft RPC from this node failed.
    failing: bool,
}

/// The peers that may relay this node's batches, in the order to ask them:
/// the one that relayed last, then those that answer Raft RPCs, then the
/// others (by address).
fn relay_peers(cluster: &Cluster) -> Vec<RelayPeer> {
    let mut peers: Vec<RelayPeer> = cluster
        .other_members()
        .into_iter()
        .map(|(id, addr)| RelayPeer { addr, failing: cluster.network.peer_failing(id) })
        .collect();
    peers.sort_unstable_by(|a, b| (a.failing, &a.addr).cmp(&(b.failing, &b.addr)));
    peers.dedup_by(|a, b| a.addr == b.addr);
    let via = cluster.proposer.relay_via.lock().expect("relay lock").clone();
    if let Some(i) = via.and_then(|v| peers.iter().position(|p| p.addr == v && !p.failing)) {
        peers[..=i].rotate_right(1);
    }
    peers
}

/// Submits a batch until it is answered or request-timeout passes.
async fn submit(
    cluster: &Cluster,
    seq: u64,
    ops: Arc<Vec<Op>>,
) -> Result<Vec<Reply>, ClusterError> {
    let deadline = Instant::now() + cluster.options.request_timeout;
    let mut maybe_applied = false;
    let (mut turn, mut late_relay) = (0, false);
    loop {
        let target = match route(cluster, deadline, &mut turn, &mut late_relay).await {
            Ok(target) => target,
            Err(ClusterError::NoLeader) if maybe_applied => return Err(ClusterError::Uncertain),
            Err(e) => return Err(e),
        };
        let origin = Origin {
            session: cluster.proposer.session,
            seq,
            ack_below: cluster.proposer.ack_below(),
        };
        // An attempt is abandoned as soon as the leader it went to is no
        // longer this node's leader (a new term, or this leader cut off from
        // its quorum), and retried with the new one: nothing waits for the
        // answer of a leader that is gone. A relay is abandoned as soon as
        // this node has a leader of its own.
        let leader = match &target {
            Target::Leader(leader) => leader.clone(),
            Target::Relay { .. } => Leader::Unknown,
        };
        let moved = cluster.leader_moved(&leader);
        let attempt = async {
            match &target {
                Target::Leader(Leader::Me) => {
                    propose_local(cluster, origin, ops.clone(), deadline).await
                }
                Target::Leader(Leader::Other { raft_addr, .. }) => {
                    forward_write(cluster, raft_addr, origin, &ops, deadline, false).await
                }
                Target::Leader(Leader::Unknown) => Attempt::Refused,
                Target::Relay { raft_addr, until } => {
                    forward_write(cluster, raft_addr, origin, &ops, *until, true).await
                }
            }
        };
        let (attempt, abandoned) = tokio::select! {
            attempt = attempt => (attempt, false),
            () = moved => (Attempt::Unknown, true),
        };
        let refused = matches!(attempt, Attempt::Refused);
        if let Target::Relay { raft_addr, .. } = &target {
            let mut via = cluster.proposer.relay_via.lock().expect("relay lock");
            match &attempt {
                Attempt::Done(_) => *via = Some(raft_addr.clone()),
                // It has no leader (a relay that timed out may only be slow).
                Attempt::Refused if via.as_ref() == Some(raft_addr) => *via = None,
                _ => {}
            }
        }
        match attempt {
            Attempt::Done(replies) => return Ok(replies),
            Attempt::Fatal(e) => return Err(e),
            Attempt::Refused => {}
            Attempt::Unknown => maybe_applied = true,
        }
        if abandoned {
            cluster.proposer.abandoned.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if Instant::now() >= deadline {
            return Err(if maybe_applied {
                ClusterError::Uncertain
            } else {
                ClusterError::NoLeader
            });
        }
        let relayed = matches!(target, Target::Relay { .. });
        tokio::time::sleep(if relayed && refused { RELAY_PAUSE } else { RETRY_PAUSE }).await;
    }
}

/// Proposes on this node, which believes it leads.
pub(super) async fn propose_local(
    cluster: &Cluster,
    origin: Origin,
    ops: Arc<Vec<Op>>,
    deadline: Instant,
) -> Attempt {
    if cluster.handing_over() {
        // Leadership is being handed over: nothing new may reach the log
        // (see `membership`). Surely not applied; the origin retries.
        return Attempt::Refused;
    }
    let proposal = Proposal { time_ms: now_ms(), seed: rand::random(), origin: Some(origin), ops };
    let left = deadline.saturating_duration_since(Instant::now());
    let outcome = if cluster.options.unsafe_switches.ack_before_commit {
        match ack_before_commit(cluster, proposal, left).await {
            Ok(replies) => return Attempt::Done(replies),
            Err(outcome) => outcome,
        }
    } else {
        tokio::time::timeout(left, cluster.raft().client_write(proposal)).await.ok()
    };
    match outcome {
        None => Attempt::Unknown,
        Some(Ok(response)) => {
            // Clients that cache what they read hear of the change first.
            cluster.tracking.settle(response.log_id.index, cluster).await;
            Attempt::Done(response.data.0)
        }
        // Not the leader when it arrived, or the entry was truncated from the
        // log: either way it will never be applied.
        Some(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => Attempt::Refused,
        Some(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(_)))) => {
            Attempt::Unknown
        }
        // Raft stopped: the node shuts down, or its Raft instance is being
        // replaced (a re-form, see `reform`), after which a retry goes on.
        Some(Err(RaftError::Fatal(_))) if !cluster.stopping() => Attempt::Unknown,
        Some(Err(RaftError::Fatal(_))) => Attempt::Fatal(ClusterError::ShuttingDown),
    }
}

/// What `client_write` answers.
type WriteResult =
    Result<ClientWriteResponse<TypeConfig>, RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>;

/// The test-only switch `ack-before-commit` (see
/// [`crate::settings::UnsafeSwitches`]): proposes the entry, and if it is
/// not committed within [`ACK_BEFORE_COMMIT_AFTER`], answers with the replies
/// the batch gives on a copy of this node's engine as it stands (what a
/// leader that answered from its own log would say: `+OK` for SET, the new
/// length for RPUSH …), while the proposal goes on in the background. The
/// entry is then acknowledged but not committed; if this leader is cut off,
/// the next leader's log overwrites it and the acknowledged write is lost.
/// `Err` carries the real outcome when it came in time (`None`: `left` ran
/// out first).
async fn ack_before_commit(
    cluster: &Cluster,
    proposal: Proposal,
    left: Duration,
) -> Result<Vec<Reply>, Option<WriteResult>> {
    let raft = cluster.raft();
    let copy = proposal.clone();
    let mut write = tokio::spawn(async move { raft.client_write(copy).await });
    match tokio::time::timeout(ACK_BEFORE_COMMIT_AFTER.min(left), &mut write).await {
        Ok(Ok(result)) => Err(Some(result)),
        Ok(Err(_)) => Err(None),
        Err(_) => {
            let machine = cluster.sm.read();
            let index = machine.last_applied.map_or(0, |l| l.index) + 1;
            let mut engine = machine.state.clone();
            drop(machine);
            Ok(engine.apply_proposal(index, &proposal))
        }
    }
}

/// Forwards a batch to the leader at `raft_addr` (with `relay`: to a peer
/// that passes it on to its leader).
async fn forward_write(
    cluster: &Cluster,
    raft_addr: &str,
    origin: Origin,
    ops: &[Op],
    deadline: Instant,
    relay: bool,
) -> Attempt {
    let started = Instant::now();
    match cluster.forwarder.write(cluster, raft_addr, origin, ops, deadline, relay).await {
        Ok(replies) => {
            crate::observe::get().forward_done(started.elapsed());
            Attempt::Done(replies)
        }
        Err(ForwardError::Refused) => Attempt::Refused,
        Err(ForwardError::Unknown) => Attempt::Unknown,
    }
}

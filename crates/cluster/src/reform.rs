//! Re-forming a cluster that has lost its quorum for good, from one node.
//!
//! # The wedge
//! A member that restarts without trustworthy state (every memory-only
//! restart, an unclean stop under `everysec`/`no`, a wiped directory) comes
//! back as a new *incarnation* and asks to join; its old incarnation stays a
//! voter until the leader swaps them, which takes a membership change that a
//! quorum of the current voters must commit. If a majority of the voters are
//! old incarnations of members that came back this way (two of three
//! memory-only nodes crashed together), that quorum can never form again:
//! the old incarnations' state is gone, and they never answer. Raft alone
//! waits forever.
//!
//! # Re-forming
//! [`Cluster::reform`] rewrites this node's membership, as etcd's
//! `--force-new-cluster` does: it stops this node's Raft instance, appends
//! to its log one membership entry naming the voters to keep (this node and
//! the voters that are still themselves), at a new term led by this node,
//! and starts a new Raft instance over the same log and state machine. The
//! node leads the new term at once; the new incarnations then join it as
//! any restarted node does. Nothing in this node's log is lost: entries it
//! held but had not committed are committed with the new term.
//!
//! What can be lost is what this node does not hold: entries that another
//! leader committed after this node's last entry. So:
//!
//! # Automatically, when nothing can be lost
//! The node re-forms by itself only if it can prove it holds every
//! committed entry, that is, that no other node has led since it last did:
//! - it led a term (its *tenure*), and since then it has neither granted its
//!   vote to another node nor accepted entries from another leader (the
//!   peer service reports both, see [`Cluster::supported_another`]);
//! - every voter that is replaced (its member asked to join as a new
//!   incarnation) and that could have helped elect someone else is *certified
//!   dead*: it acknowledged this node as leader during the tenure, and
//!   less than a leader lease later (the longest election timeout, less a
//!   margin) its process was proved gone: its address refused a connection,
//!   or answered as another incarnation of its member. A follower votes for
//!   no one while its lease runs, and a dead process votes for no one: such
//!   a voter never voted after acknowledging this leader;
//! - the voters that are not certified dead (this node excluded: it supports
//!   no one else) cannot make a quorum of some configuration, so no other
//!   node can have been elected.
//!
//! A crash is what produces the certificate: a killed process's port
//! refuses connections at once (or its restarted successor answers there),
//! while a partitioned or paused one does not answer at all. It assumes
//! what the rest of the design assumes: one process per member at a time.
//!
//! # Otherwise, by an operator
//! A node that sees the wedge but cannot prove the above (a follower
//! survived alone; a voter vanished without a refused connection) says so
//! every 30 s in its log and in INFO (`raft_wedged`), with the command that
//! re-forms the cluster from it (`raftcachectl --endpoints <admin>
//! force-new-cluster`) and what that may lose. The admin service's
//! ForceNewCluster runs [`Cluster::reform`] without the proof.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftcache_raft::network::Network;
use raftcache_raft::openraft::storage::RaftLogStorage;
use raftcache_raft::openraft::{
    self, BasicNode, CommittedLeaderId, EntryPayload, LogId, Membership, ServerState, Vote,
};
use raftcache_raft::state_machine::StateMachineStore;
use raftcache_raft::types::{member_of, Entry, NodeId, Raft, ShowId};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::bootstrap::{new_raft, Logs};
use crate::check_quorum::NOBODY;
use crate::Cluster;

/// How recent a join request must be to count as evidence that the
/// member's old incarnation is gone.
const REJOIN_FRESH: Duration = Duration::from_secs(30);
/// How often the node looks for the wedge.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// How long a provably safe wedge must last before the node re-forms.
const SAFE_FOR: Duration = Duration::from_millis(500);
/// How long an unprovable wedge lasts before the node tells the operator,
/// and how often it says it again.
const TELL_AFTER: Duration = Duration::from_secs(5);
const TELL_EVERY: Duration = Duration::from_secs(30);
/// Taken off the leader lease when certifying a voter dead: the time its
/// acknowledgement took to reach this node, and the clocks' drift.
const LEASE_MARGIN: Duration = Duration::from_millis(100);

/// What a Raft instance of this node is made of: the openraft settings and
/// the log store (clones share its data).
pub struct RaftParts {
    pub(crate) config: Arc<openraft::Config>,
    pub(crate) logs: Logs,
}

impl RaftParts {
    /// A new Raft instance of node `me` over the log and `sm`.
    pub(crate) async fn new_raft(
        &self,
        me: NodeId,
        network: &Network,
        sm: &StateMachineStore,
    ) -> anyhow::Result<Raft> {
        new_raft(me, self.config.clone(), network.clone(), self.logs.clone(), sm.clone()).await
    }

    /// The last log id and the vote in the store.
    async fn log_state(&self) -> Result<(Option<LogId<NodeId>>, Option<Vote<NodeId>>), String> {
        let err = |e: raftcache_raft::types::StorageError| e.to_string();
        match self.logs.clone() {
            Logs::Mem(mut log) => Ok((
                log.get_log_state().await.map_err(err)?.last_log_id,
                log.read_vote().await.map_err(err)?,
            )),
            Logs::Sled(mut log) => Ok((
                log.get_log_state().await.map_err(err)?.last_log_id,
                log.read_vote().await.map_err(err)?,
            )),
        }
    }

    async fn force(&self, entry: Entry, vote: Vote<NodeId>) -> Result<(), String> {
        match &self.logs {
            Logs::Mem(log) => {
                log.force(entry, vote);
                Ok(())
            }
            Logs::Sled(log) => log.force(entry, vote).await.map_err(|e| e.to_string()),
        }
    }
}

/// Members that asked to join as a new incarnation, with when.
#[derive(Default)]
pub struct Rejoins(Mutex<HashMap<u32, (NodeId, Instant)>>);

impl Rejoins {
    /// Node `id` asked to join.
    pub fn note(&self, id: NodeId) {
        self.0.lock().expect("rejoins lock").insert(member_of(id), (id, Instant::now()));
    }

    /// Member → the incarnation that asked to join within [`REJOIN_FRESH`].
    fn recent(&self) -> HashMap<u32, NodeId> {
        let rejoins = self.0.lock().expect("rejoins lock");
        rejoins
            .iter()
            .filter(|(_, (_, at))| at.elapsed() < REJOIN_FRESH)
            .map(|(member, (id, _))| (*member, *id))
            .collect()
    }
}

/// This node's last leadership that no one has taken over since (see the
/// module documentation).
#[derive(Default)]
pub struct Tenure {
    led: Mutex<Option<(u64, Instant)>>,
    /// Set when this node grants its vote to, or accepts entries from,
    /// another node; cleared when it leads again.
    supported_another: AtomicBool,
}

/// What this node makes of a wedge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wedge {
    /// The voters whose members rejoined as new incarnations.
    pub replaced: BTreeSet<NodeId>,
    /// The voters to keep when re-forming: the others.
    pub keep: BTreeSet<NodeId>,
    /// `None` if re-forming from this node provably loses nothing; else why
    /// that cannot be proved.
    pub unproved: Option<String>,
}

/// What a re-form did.
#[derive(Debug, Clone)]
pub struct Reformed {
    pub term: u64,
    /// The index of the membership entry written.
    pub index: u64,
    pub voters: BTreeSet<NodeId>,
}

fn quorum(n: usize) -> usize {
    n / 2 + 1
}

impl Cluster {
    /// This node granted its vote to another node, or accepted entries from
    /// another leader: its last tenure may have been followed by another.
    pub fn supported_another(&self) {
        self.tenure.supported_another.store(true, Ordering::Relaxed);
    }

    /// Notes this node's leadership (called every check).
    fn note_tenure(&self) {
        let m = self.metrics();
        if m.state == ServerState::Leader && m.current_leader == Some(self.node_id) {
            let mut led = self.tenure.led.lock().expect("tenure lock");
            if led.is_none_or(|(term, _)| term != m.current_term) {
                *led = Some((m.current_term, Instant::now()));
                self.tenure.supported_another.store(false, Ordering::Relaxed);
            }
        }
    }

    /// Since when this node has led without anyone leading after it.
    fn tenure_since(&self) -> Option<Instant> {
        if self.tenure.supported_another.load(Ordering::Relaxed) {
            return None;
        }
        self.tenure.led.lock().expect("tenure lock").map(|(_, since)| since)
    }

    /// The wedge this node sees, if any: voters replaced by new
    /// incarnations (other members that asked to join again, and this
    /// node's own member's other incarnations) leave some configuration of
    /// the membership without a quorum of voters that can still answer.
    pub fn wedge(&self) -> Option<Wedge> {
        let rejoined = self.rejoins.recent();
        let me = self.node_id;
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let configs = membership.get_joint_config();
        let voters: BTreeSet<NodeId> = configs.iter().flatten().copied().collect();
        let replaced: BTreeSet<NodeId> = voters
            .iter()
            .filter(|v| {
                let member = member_of(**v);
                (member == member_of(me) && **v != me)
                    || rejoined.get(&member).is_some_and(|new| new != *v)
            })
            .copied()
            .collect();
        if replaced.is_empty() {
            return None;
        }
        let stuck = configs
            .iter()
            .any(|c| c.iter().filter(|v| !replaced.contains(v)).count() < quorum(c.len()));
        if !stuck {
            return None;
        }
        let last = configs.last().expect("a membership has a configuration");
        let keep: BTreeSet<NodeId> =
            last.iter().filter(|v| !replaced.contains(v)).copied().chain([me]).collect();
        let unproved = if voters.contains(&me) {
            self.unproved(configs, &replaced)
        } else {
            Some("this node is not a voter: it may lack committed entries".into())
        };
        Some(Wedge { replaced, keep, unproved })
    }

    /// Why re-forming from this node might lose a committed entry, or
    /// `None` if it provably cannot (see the module documentation).
    fn unproved(
        &self,
        configs: &[BTreeSet<NodeId>],
        replaced: &BTreeSet<NodeId>,
    ) -> Option<String> {
        let Some(since) = self.tenure_since() else {
            return Some("this node was not the last leader, or cannot tell that it was".into());
        };
        let lease = self.options.election_timeout_max.saturating_sub(LEASE_MARGIN);
        let mut dead = BTreeSet::new();
        let mut doubts = Vec::new();
        for v in replaced {
            match self.network.health(*v).gone_after_ack() {
                Some(g)
                    if g.last_ack >= since
                        && g.gone.saturating_duration_since(g.last_ack) < lease =>
                {
                    dead.insert(*v);
                }
                Some(g) if g.last_ack >= since => doubts.push(format!(
                    "{} was proved gone {} ms after its last acknowledgement, more than a lease",
                    ShowId(*v),
                    g.gone.saturating_duration_since(g.last_ack).as_millis()
                )),
                _ => doubts.push(format!(
                    "{} went silent without proof that its process was gone (it may have been \
                     cut off, not killed)",
                    ShowId(*v)
                )),
            }
        }
        // Could anyone but this node have gathered a quorum of every
        // configuration from the voters that are not certified dead?
        let electable = configs.iter().all(|c| {
            c.iter().filter(|v| **v != self.node_id && !dead.contains(v)).count() >= quorum(c.len())
        });
        if electable {
            Some(doubts.join("; "))
        } else {
            None
        }
    }

    /// Re-forms the cluster from this node: `keep` (this node among them)
    /// become the only voters, at a new term that this node leads. See the
    /// module documentation for what this may lose when not proved safe.
    pub async fn reform(&self, keep: BTreeSet<NodeId>) -> Result<Reformed, String> {
        let _one = self.reforming.lock().await;
        if !keep.contains(&self.node_id) {
            return Err("this node must be one of the voters kept".into());
        }
        let old = self.raft();
        let m = old.metrics().borrow().clone();
        let mut nodes: BTreeMap<NodeId, BasicNode> = m
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| keep.contains(id))
            .map(|(id, node)| (*id, node.clone()))
            .collect();
        if let std::collections::btree_map::Entry::Vacant(slot) = nodes.entry(self.node_id) {
            // A node waiting to join is in no membership yet.
            let Some(addr) = self.peers.get(&member_of(self.node_id)) else {
                return Err("this node's Raft address is unknown (not in --peers)".into());
            };
            slot.insert(BasicNode::new(addr.clone()));
        }
        if nodes.len() != keep.len() {
            return Err("every voter kept must be a member".into());
        }
        warn!(
            voters = ?keep.iter().map(|v| ShowId(*v).to_string()).collect::<Vec<_>>(),
            "re-forming the cluster from this node: stopping Raft"
        );
        if let Err(e) = old.shutdown().await {
            warn!(error = %e, "stopping Raft for the re-form");
        }
        let (last, vote) = self.parts.log_state().await?;
        let term = vote.map_or(0, |v| v.leader_id().term).max(m.current_term) + 1;
        let index = last.map_or(0, |l| l.index + 1);
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, self.node_id), index),
            payload: EntryPayload::Membership(Membership::new(vec![keep.clone()], nodes)),
        };
        let mut vote = Vote::new(term, self.node_id);
        vote.commit();
        self.parts.force(entry, vote).await?;
        let raft = self
            .parts
            .new_raft(self.node_id, &self.network, &self.sm)
            .await
            .map_err(|e| format!("{e:#}"))?;
        self.raft.store(Arc::new(raft));
        *self.tenure.led.lock().expect("tenure lock") = None;
        // Nothing is wedged any more: say so now, not at the next check.
        *self.wedged.lock().expect("wedged lock") = None;
        self.set_orphaned(false);
        warn!(
            term,
            index, "re-formed the cluster from this node; new incarnations can join it now"
        );
        Ok(Reformed { term, index, voters: keep })
    }

    /// The voters an operator's re-form keeps: this node and the voters
    /// that are neither replaced nor failing to answer.
    pub fn keep_for_operator(&self) -> BTreeSet<NodeId> {
        let replaced = self.wedge().map(|w| w.replaced).unwrap_or_default();
        let m = self.metrics();
        let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
        voters
            .into_iter()
            .filter(|v| !replaced.contains(v) && !self.network.health(*v).failing())
            .filter(|v| member_of(*v) != member_of(self.node_id))
            .chain([self.node_id])
            .collect()
    }
}

/// Runs until `shutdown`: notes this node's tenure, re-forms the cluster
/// when a wedge is provably safe to clear, and tells the operator about one
/// that is not.
pub async fn run(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: Option<(Wedge, Instant)> = None;
    let mut told: Option<Instant> = None;
    let mut pending: Option<(u64, Instant, bool)> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        cluster.note_tenure();
        report_pending_change(&cluster, &mut pending);
        let wedge = cluster.wedge();
        *cluster.wedged.lock().expect("wedged lock") = wedge.clone();
        let Some(wedge) = wedge else {
            seen = None;
            continue;
        };
        let since = match &seen {
            Some((w, since)) if *w == wedge => *since,
            _ => {
                seen = Some((wedge.clone(), Instant::now()));
                Instant::now()
            }
        };
        match &wedge.unproved {
            None if since.elapsed() >= SAFE_FOR => {
                warn!(
                    replaced = ?wedge.replaced.iter().map(|v| ShowId(*v).to_string()).collect::<Vec<_>>(),
                    "no quorum can form: a majority of the voters were replaced by new incarnations, \
                     and this node provably holds every committed entry; re-forming from it"
                );
                match cluster.reform(wedge.keep.clone()).await {
                    Ok(r) => info!(term = r.term, index = r.index, "re-formed"),
                    Err(e) => warn!(error = %e, "re-forming failed; will retry"),
                }
                seen = None;
            }
            Some(why)
                if since.elapsed() >= TELL_AFTER
                    && told.is_none_or(|t| t.elapsed() >= TELL_EVERY) =>
            {
                told = Some(Instant::now());
                warn!(
                    replaced = ?wedge.replaced.iter().map(|v| ShowId(*v).to_string()).collect::<Vec<_>>(),
                    reason = %why,
                    "the cluster cannot commit: a majority of the voters were replaced by new \
                     incarnations. This node cannot prove it holds every committed write. To re-form \
                     the cluster from this node, run `raftcachectl --endpoints {} force-new-cluster`; \
                     writes that were committed without reaching this node are then lost",
                    cluster.admin_addr
                );
            }
            _ => {}
        }
    }
}

/// Says so (once, at WARN) when a membership change has waited
/// [`TELL_AFTER`] to commit, and when it finally does: a configuration change
/// that cannot commit blocks every later one.
fn report_pending_change(cluster: &Cluster, pending: &mut Option<(u64, Instant, bool)>) {
    let m = cluster.metrics();
    let Some(at) = m.membership_config.log_id().map(|l| l.index) else { return };
    let applied = m.last_applied.map_or(0, |l| l.index);
    if at <= applied {
        if let Some((index, since, true)) = pending.take() {
            info!(index, after = ?since.elapsed(), "the membership change committed");
        }
        cluster.set_change_pending(None);
        return;
    }
    let (_, since, told) = pending.get_or_insert((at, Instant::now(), false));
    cluster.set_change_pending(Some(since.elapsed()));
    if !*told && since.elapsed() >= TELL_AFTER {
        *told = true;
        warn!(
            index = at,
            waiting = ?since.elapsed(),
            membership = %m.membership_config.membership(),
            "a membership change is not committing (no quorum of its voters answers); no other \
             change can start until it does (INFO raft_membership_pending_ms)"
        );
    }
}

/// The vote a node that steps down gives (see [`crate::check_quorum`]) is
/// not support for another node.
pub fn supports_another(me: NodeId, candidate: NodeId) -> bool {
    candidate != me && candidate != NOBODY
}

//! Membership changes and leadership transfer: what the admin API's
//! AddMember, PromoteMember, RemoveMember, ReplaceMember and TransferLeader
//! do on the leader.
//!
//! Members are named by their member id; each has one or (briefly, while a
//! restarted memory-only node replaces its old self) two *incarnations*, the
//! Raft node ids `member << 32 | incarnation`. Every change goes through
//! openraft's joint consensus and returns once the final membership is
//! committed. One change runs at a time (`admin_lock`).
//!
//! # Leadership transfer
//! openraft 0.9 has no transfer call, and its followers refuse to vote while
//! their leader lease (the longest election timeout since they last heard
//! from the leader) runs. So the leader makes its followers stop hearing from
//! it: it stops proposing (writes are refused as "not the leader" and their
//! origins retry them, at most once, with the new leader) and stops its
//! heartbeats, waits until the target holds its whole log, and sends it
//! TimeoutNow. The target waits out the lease and stands for election; with
//! the longest log, it wins before any other follower's election timer
//! (lease plus a random election timeout) fires. The old leader then resumes
//! heartbeats and proposals, as a follower.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use raftcache_proto::admin::Member;
use raftcache_proto::raft::{InfoRequest, NodeInfo, TimeoutNowRequest};
use raftcache_raft::openraft::error::{ClientWriteError, RaftError};
use raftcache_raft::openraft::{BasicNode, ChangeMembers, ServerState};
use raftcache_raft::types::{member_of, NodeId, ShowId};
use tonic::Status;
use tracing::info;

use super::{Cluster, Leader};

/// How long a probe (Info) of another node may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How many entries behind the leader a learner may be when it is promoted.
pub const CAUGHT_UP_SLACK: u64 = 100;
/// How long a membership change waits for a new node to catch up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(600);

/// What a removal did.
pub enum Removed {
    /// The member is gone.
    Done,
    /// The member to remove was this node, the leader: it handed leadership
    /// to this node, which must now be asked to remove it.
    HandedOver(NodeId),
}

fn change_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Status {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
            Status::unavailable("this node stopped leading during the change; try again")
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            Status::failed_precondition(e.to_string())
        }
        RaftError::Fatal(e) => Status::unavailable(format!("raft stopped: {e}")),
    }
}

impl Cluster {
    /// True while this node hands leadership over (it proposes nothing).
    pub fn handing_over(&self) -> bool {
        self.handing_over.load(Ordering::Relaxed)
    }

    /// Asks the node at `raft_addr` who it is, and remembers its client and
    /// admin addresses.
    pub async fn probe(&self, raft_addr: &str) -> Result<NodeInfo, Status> {
        let mut client = self
            .network
            .client_for(raft_addr)
            .map_err(|e| Status::invalid_argument(format!("bad address {raft_addr}: {e}")))?;
        let mut request = tonic::Request::new(InfoRequest {});
        request.set_timeout(PROBE_TIMEOUT);
        let info = client
            .info(request)
            .await
            .map_err(|e| {
                Status::failed_precondition(format!("{raft_addr} does not answer: {}", e.message()))
            })?
            .into_inner();
        if info.raft_node_id != 0 {
            let id = info.raft_node_id;
            self.resp_addrs.lock().expect("addr cache").insert(id, info.resp_addr.clone());
            self.admin_addrs.lock().expect("addr cache").insert(id, info.admin_addr.clone());
        }
        Ok(info)
    }

    /// The admin address of node `id` (asking it if not yet known).
    pub async fn admin_addr_of(&self, id: NodeId, raft_addr: &str) -> Option<String> {
        if id == self.node_id {
            return Some(self.admin_addr.clone());
        }
        if let Some(addr) = self.admin_addrs.lock().expect("addr cache").get(&id) {
            return Some(addr.clone());
        }
        self.probe(raft_addr).await.ok().map(|i| i.admin_addr)
    }

    /// The members as this node sees them, each probed for reachability
    /// (at once, at most [`PROBE_TIMEOUT`]); with replication progress when
    /// this node leads.
    pub async fn member_views(&self) -> Vec<Member> {
        let m = self.metrics();
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let last = m.last_log_index.unwrap_or(0);
        let matched = |id: &NodeId| -> Option<u64> {
            if *id == self.node_id {
                return Some(last);
            }
            m.replication.as_ref()?.get(id).map(|l| l.map_or(0, |l| l.index))
        };
        let nodes: Vec<(NodeId, String)> =
            membership.nodes().map(|(id, n)| (*id, n.addr.clone())).collect();
        let probes = nodes.iter().map(|(id, addr)| async move {
            if *id == self.node_id {
                return true;
            }
            matches!(self.probe(addr).await, Ok(info) if info.raft_node_id == *id)
        });
        let reachable = futures::future::join_all(probes).await;
        let resp = self.resp_addrs.lock().expect("addr cache").clone();
        let admin = self.admin_addrs.lock().expect("addr cache").clone();
        nodes
            .into_iter()
            .zip(reachable)
            .map(|((id, raft_addr), reachable)| {
                let (resp_addr, admin_addr) = if id == self.node_id {
                    (self.resp_addr.clone(), self.admin_addr.clone())
                } else {
                    (
                        resp.get(&id).cloned().unwrap_or_default(),
                        admin.get(&id).cloned().unwrap_or_default(),
                    )
                };
                let matched_index = matched(&id).unwrap_or(0);
                Member {
                    member_id: member_of(id),
                    raft_node_id: id,
                    raft_addr,
                    voter: voters.contains(&id),
                    resp_addr,
                    admin_addr,
                    reachable,
                    matched_index,
                    lag: if m.state == ServerState::Leader {
                        last.saturating_sub(matched_index)
                    } else {
                        0
                    },
                    leader: m.current_leader == Some(id),
                }
            })
            .collect()
    }

    /// The Raft node ids of `member`'s incarnations in the membership.
    fn incarnations(&self, member: u32) -> Vec<NodeId> {
        let m = self.metrics();
        let ids = m.membership_config.membership().nodes().map(|(id, _)| *id).collect::<Vec<_>>();
        ids.into_iter().filter(|id| member_of(*id) == member).collect()
    }

    fn voters(&self) -> BTreeSet<NodeId> {
        self.metrics().membership_config.membership().voter_ids().collect()
    }

    /// Fails unless this node leads.
    fn must_lead(&self) -> Result<(), Status> {
        match self.leader() {
            Leader::Me => Ok(()),
            _ => Err(Status::unavailable("this node does not lead (any more); try again")),
        }
    }

    /// Waits until `id` is within `slack` entries of this leader's log.
    async fn wait_caught_up(
        &self,
        id: NodeId,
        slack: u64,
        timeout: Duration,
    ) -> Result<(), Status> {
        let deadline = Instant::now() + timeout;
        loop {
            self.must_lead()?;
            let m = self.metrics();
            let last = m.last_log_index.unwrap_or(0);
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map_or(0, |l| l.index);
            if matched + slack >= last {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Status::deadline_exceeded(format!(
                    "node {} did not catch up (at {matched} of {last})",
                    ShowId(id)
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asks the node at `raft_addr`, which must be running and waiting to be
    /// admitted (or already a learner here), for its Raft node id.
    async fn admissible(&self, member: u32, raft_addr: &str) -> Result<NodeId, Status> {
        if member == 0 {
            return Err(Status::invalid_argument("member ids start at 1"));
        }
        crate::settings::parse_peers(&format!("{member}={raft_addr}"))
            .map_err(|e| Status::invalid_argument(format!("bad address: {e}")))?;
        let info = self.probe(raft_addr).await?;
        if info.member_id != member {
            return Err(Status::invalid_argument(format!(
                "the node at {raft_addr} is member {}, not {member}",
                info.member_id
            )));
        }
        if info.raft_node_id == 0 {
            return Err(Status::failed_precondition(format!(
                "the node at {raft_addr} has not started Raft yet; try again"
            )));
        }
        let known =
            self.metrics().membership_config.membership().get_node(&info.raft_node_id).is_some();
        if info.initialized && !known {
            return Err(Status::failed_precondition(format!(
                "the node at {raft_addr} already belongs to a cluster (start it with an empty data directory and --join)"
            )));
        }
        Ok(info.raft_node_id)
    }

    /// Adds `id` as a learner (if it is not one yet) and waits until it has
    /// caught up.
    async fn add_learner(&self, id: NodeId, raft_addr: &str) -> Result<(), Status> {
        let present = self.metrics().membership_config.membership().get_node(&id).is_some();
        if !present {
            info!(node = %ShowId(id), %raft_addr, "adding a learner");
            self.raft()
                .add_learner(id, BasicNode::new(raft_addr), true)
                .await
                .map_err(change_error)?;
        }
        self.wait_caught_up(id, CAUGHT_UP_SLACK, CATCH_UP_TIMEOUT).await
    }

    /// Makes `voters` the voters (joint consensus), dropping the nodes that
    /// stop being voters, and removes the learners `drop`.
    async fn set_voters(
        &self,
        voters: BTreeSet<NodeId>,
        drop: BTreeSet<NodeId>,
    ) -> Result<(), Status> {
        if voters != self.voters() {
            self.raft()
                .change_membership(ChangeMembers::ReplaceAllVoters(voters), false)
                .await
                .map_err(change_error)?;
        }
        let present: BTreeSet<NodeId> =
            self.metrics().membership_config.membership().nodes().map(|(id, _)| *id).collect();
        let drop: BTreeSet<NodeId> = drop.intersection(&present).copied().collect();
        if !drop.is_empty() {
            self.raft()
                .change_membership(ChangeMembers::RemoveNodes(drop), false)
                .await
                .map_err(change_error)?;
        }
        Ok(())
    }

    /// Admits the node at `raft_addr` as `member`: a learner, then (with
    /// `voter`) a voter once caught up. A new incarnation of a member
    /// replaces the old one.
    pub async fn add_member(
        &self,
        member: u32,
        raft_addr: &str,
        voter: bool,
    ) -> Result<(), Status> {
        let _one = self.admin_lock.lock().await;
        self.must_lead()?;
        let id = self.admissible(member, raft_addr).await?;
        self.admit(member, id, raft_addr, voter).await
    }

    /// A node's own request to be admitted (the peer service's Join).
    pub async fn join_request(
        &self,
        id: NodeId,
        raft_addr: &str,
        voter: bool,
    ) -> Result<(), Status> {
        let _one = self.admin_lock.lock().await;
        self.must_lead()?;
        self.admit(member_of(id), id, raft_addr, voter).await
    }

    /// Adds incarnation `id` of `member`, replacing its other incarnations.
    async fn admit(
        &self,
        member: u32,
        id: NodeId,
        raft_addr: &str,
        voter: bool,
    ) -> Result<(), Status> {
        let old: BTreeSet<NodeId> =
            self.incarnations(member).into_iter().filter(|o| *o != id).collect();
        let voters = self.voters();
        let old_voter = old.iter().any(|o| voters.contains(o));
        if old.contains(&self.node_id) {
            return Err(Status::failed_precondition(format!(
                "member {member} is this leader's own member id; transfer leadership first"
            )));
        }
        self.add_learner(id, raft_addr).await?;
        if voter || old_voter || voters.contains(&id) {
            let next: BTreeSet<NodeId> =
                voters.iter().filter(|v| !old.contains(v)).copied().chain([id]).collect();
            info!(node = %ShowId(id), "making it a voter");
            self.set_voters(next, old).await
        } else {
            self.set_voters(voters, old).await
        }
    }

    /// Makes `member`'s learner a voter once it has caught up.
    pub async fn promote_member(&self, member: u32) -> Result<(), Status> {
        let _one = self.admin_lock.lock().await;
        self.must_lead()?;
        let voters = self.voters();
        let ids = self.incarnations(member);
        if ids.is_empty() {
            return Err(Status::not_found(format!("no member {member} in the cluster")));
        }
        let learners: Vec<NodeId> = ids.iter().filter(|id| !voters.contains(id)).copied().collect();
        let Some(&id) = learners.iter().max() else {
            return Err(Status::failed_precondition(format!("member {member} is already a voter")));
        };
        self.wait_caught_up(id, CAUGHT_UP_SLACK, CATCH_UP_TIMEOUT).await?;
        let old: BTreeSet<NodeId> = ids.into_iter().filter(|o| *o != id).collect();
        let next: BTreeSet<NodeId> =
            voters.iter().filter(|v| !old.contains(v)).copied().chain([id]).collect();
        info!(node = %ShowId(id), "promoting a learner");
        self.set_voters(next, old).await
    }

    /// How many of `voters` answer (this node counts without asking).
    async fn live(&self, voters: &BTreeSet<NodeId>) -> usize {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let probes = voters.iter().map(|id| {
            let addr = membership.get_node(id).map(|n| n.addr.clone());
            async move {
                if *id == self.node_id {
                    return true;
                }
                match addr {
                    Some(addr) => matches!(self.probe(&addr).await, Ok(i) if i.raft_node_id == *id),
                    None => false,
                }
            }
        });
        futures::future::join_all(probes).await.into_iter().filter(|up| *up).count()
    }

    /// Refuses a change of voters from `old` to `new` that cannot commit or
    /// would leave the cluster without a live quorum (unless `force`).
    async fn check_quorum(
        &self,
        old: &BTreeSet<NodeId>,
        new: &BTreeSet<NodeId>,
        force: bool,
    ) -> Result<(), Status> {
        if new.is_empty() {
            return Err(Status::failed_precondition("refusing to remove the last voter"));
        }
        let live_old = self.live(old).await;
        if live_old * 2 <= old.len() {
            return Err(Status::failed_precondition(format!(
                "only {live_old} of {} voters answer: the cluster has no quorum to make the change",
                old.len()
            )));
        }
        let live_new = self.live(new).await;
        if live_new * 2 <= new.len() && !force {
            return Err(Status::failed_precondition(format!(
                "refusing: only {live_new} of the {} remaining voters answer, fewer than a quorum (use force to do it anyway)",
                new.len()
            )));
        }
        Ok(())
    }

    /// Removes `member`. If it is this node, hands leadership to the most
    /// caught-up other live voter first and says so.
    pub async fn remove_member(&self, member: u32, force: bool) -> Result<Removed, Status> {
        let _one = self.admin_lock.lock().await;
        self.must_lead()?;
        let ids: BTreeSet<NodeId> = self.incarnations(member).into_iter().collect();
        if ids.is_empty() {
            return Err(Status::not_found(format!("no member {member} in the cluster")));
        }
        let old = self.voters();
        let new: BTreeSet<NodeId> = old.difference(&ids).copied().collect();
        self.check_quorum(&old, &new, force).await?;
        if ids.contains(&self.node_id) {
            let target = self.best_successor(&new).await?;
            let leader = self.transfer_to(target).await?;
            return Ok(Removed::HandedOver(leader));
        }
        info!(member, "removing a member");
        self.set_voters(new, ids).await?;
        Ok(Removed::Done)
    }

    /// Swaps `old_member` for the node at `raft_addr` (member `new_member`):
    /// adds it as a learner, waits for it, then one change of voters. If the
    /// old member is this node, hands leadership over first.
    pub async fn replace_member(
        &self,
        old_member: u32,
        new_member: u32,
        raft_addr: &str,
    ) -> Result<Removed, Status> {
        let _one = self.admin_lock.lock().await;
        self.must_lead()?;
        let old_ids: BTreeSet<NodeId> = self.incarnations(old_member).into_iter().collect();
        if old_ids.is_empty() {
            return Err(Status::not_found(format!("no member {old_member} in the cluster")));
        }
        let id = self.admissible(new_member, raft_addr).await?;
        if new_member != old_member && !self.incarnations(new_member).is_empty() {
            return Err(Status::already_exists(format!(
                "member {new_member} is already in the cluster"
            )));
        }
        if old_ids.contains(&self.node_id) {
            let others: BTreeSet<NodeId> = self.voters().difference(&old_ids).copied().collect();
            let target = self.best_successor(&others).await?;
            return Ok(Removed::HandedOver(self.transfer_to(target).await?));
        }
        self.add_learner(id, raft_addr).await?;
        let voters = self.voters();
        let next: BTreeSet<NodeId> =
            voters.iter().filter(|v| !old_ids.contains(v)).copied().chain([id]).collect();
        info!(old = old_member, node = %ShowId(id), "replacing a member");
        self.set_voters(next, old_ids).await?;
        Ok(Removed::Done)
    }

    /// The live voter among `candidates` (not this node) that holds the most
    /// of the log.
    async fn best_successor(&self, candidates: &BTreeSet<NodeId>) -> Result<NodeId, Status> {
        let m = self.metrics();
        let matched: BTreeMap<NodeId, u64> = candidates
            .iter()
            .filter(|id| **id != self.node_id)
            .map(|id| {
                let at = m.replication.as_ref().and_then(|r| r.get(id).cloned().flatten());
                (*id, at.map_or(0, |l| l.index))
            })
            .collect();
        let mut best: Option<(u64, NodeId)> = None;
        for (id, at) in matched {
            let single: BTreeSet<NodeId> = [id].into();
            if self.live(&single).await == 1 && best.is_none_or(|(b, _)| at > b) {
                best = Some((at, id));
            }
        }
        best.map(|(_, id)| id)
            .ok_or_else(|| Status::failed_precondition("no other live voter to hand leadership to"))
    }

    /// Hands leadership to `member`'s voter; returns the leader and term.
    pub async fn transfer_leader(&self, member: u32) -> Result<(NodeId, u64), Status> {
        let _one = self.admin_lock.lock().await;
        self.must_lead()?;
        let voters = self.voters();
        let ids: Vec<NodeId> =
            self.incarnations(member).into_iter().filter(|id| voters.contains(id)).collect();
        let [target] = ids[..] else {
            return Err(match ids.len() {
                0 => Status::not_found(format!("member {member} is not a voter of the cluster")),
                _ => Status::failed_precondition(format!(
                    "member {member} is being replaced; try again"
                )),
            });
        };
        if target == self.node_id {
            return Ok((target, self.metrics().current_term));
        }
        let leader = self.transfer_to(target).await?;
        Ok((leader, self.metrics().current_term))
    }

    /// The transfer itself (see the module documentation). Returns the new
    /// leader.
    async fn transfer_to(&self, target: NodeId) -> Result<NodeId, Status> {
        let addr = self
            .metrics()
            .membership_config
            .membership()
            .get_node(&target)
            .map(|n| n.addr.clone())
            .ok_or_else(|| Status::not_found(format!("node {} is not a member", ShowId(target))))?;
        let single: BTreeSet<NodeId> = [target].into();
        if self.live(&single).await == 0 {
            return Err(Status::failed_precondition(format!(
                "member {} does not answer",
                member_of(target)
            )));
        }
        self.wait_caught_up(target, CAUGHT_UP_SLACK, Duration::from_secs(10)).await?;
        info!(to = %ShowId(target), "handing leadership over");
        self.handing_over.store(true, Ordering::Relaxed);
        self.raft().runtime_config().heartbeat(false);
        self.raft().runtime_config().elect(false);
        let result = self.hand_over(target, &addr).await;
        self.raft().runtime_config().heartbeat(true);
        self.raft().runtime_config().elect(true);
        self.handing_over.store(false, Ordering::Relaxed);
        match &result {
            Ok(_) => info!(to = %ShowId(target), "leadership handed over"),
            Err(e) => {
                info!(to = %ShowId(target), reason = %e.message(), "leadership transfer failed")
            }
        }
        result
    }

    async fn hand_over(&self, target: NodeId, addr: &str) -> Result<NodeId, Status> {
        // Writes in flight when proposals stopped: the target must hold them
        // all, or it could not win (and they would be lost to it).
        self.wait_caught_up(target, 0, Duration::from_secs(2)).await?;
        let term = self.metrics().current_term;
        let window = self.options.election_timeout_max * 4;
        let mut client = self
            .network
            .client_for(addr)
            .map_err(|e| Status::internal(format!("peer client: {e}")))?;
        let mut request = tonic::Request::new(TimeoutNowRequest {
            target,
            cluster_id: self.network.cluster_id(),
            term,
        });
        request.set_timeout(window + Duration::from_secs(1));
        let reply = client.timeout_now(request).await;
        // Whatever the answer, the cluster's view decides.
        let deadline = Instant::now() + window;
        loop {
            let m = self.metrics();
            if let Some(leader) =
                m.current_leader.filter(|l| *l != self.node_id && m.current_term > term)
            {
                return Ok(leader);
            }
            if Instant::now() >= deadline {
                let why = match reply {
                    Ok(r) if !r.get_ref().elected => "it was not elected".to_string(),
                    Ok(_) => "no new leader was seen here".to_string(),
                    Err(e) => e.message().to_string(),
                };
                return Err(Status::aborted(format!(
                    "leadership transfer to member {} failed: {why}",
                    member_of(target)
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The target's side of a transfer: waits out the followers' leader
    /// lease, then stands for election until it leads or `window` passes.
    pub async fn campaign(&self, leader_term: u64) -> bool {
        let window = self.options.election_timeout_max * 4;
        let deadline = Instant::now() + window;
        tokio::time::sleep(self.options.election_timeout_max + Duration::from_millis(30)).await;
        loop {
            let m = self.metrics();
            if m.state == ServerState::Leader && m.current_term > leader_term {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            if m.state != ServerState::Candidate && m.current_term <= leader_term + 8 {
                let _ = self.raft().trigger().elect().await;
            }
            let pause = self.options.election_timeout_max / 4;
            tokio::time::sleep(pause).await;
        }
    }
}

//! The admin service (`raftcache.admin.v1.Admin`): status and digest.

use std::sync::Arc;

use raftcache_proto::admin::admin_server::Admin;
use raftcache_proto::admin::{
    AddMemberRequest, DigestReply, DigestRequest, Member, MembersReply, MembersRequest,
    PromoteMemberRequest, RemoveMemberRequest, ReplaceMemberRequest, SnapshotReply,
    SnapshotRequest, StatusEvent, StatusReply, StatusRequest, TransferLeaderReply,
    TransferLeaderRequest, WatchStatusRequest,
};
use raftcache_raft::types::member_of;
use tonic::{Request, Response, Status};

use super::{role_name, Cluster};

/// The admin service of one node.
#[derive(Clone)]
pub struct AdminService {
    pub cluster: Arc<Cluster>,
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        let c = &self.cluster;
        let m = c.metrics();
        let role = role_name(m.state);
        let membership = m.membership_config.membership();
        let members = membership
            .nodes()
            .map(|(id, node)| Member {
                member_id: member_of(*id),
                raft_node_id: *id,
                raft_addr: node.addr.clone(),
                voter: membership.voter_ids().any(|v| v == *id),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(StatusReply {
            member_id: member_of(c.node_id),
            raft_node_id: c.node_id,
            role: role.into(),
            term: m.current_term,
            leader_raft_node_id: m.current_leader.unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            members,
            read_consistency: c.options.read_consistency.name().into(),
            ready: c.ready(),
            quorum_lost: c.quorum_lost(),
            ..Default::default()
        }))
    }

    async fn digest(
        &self,
        _request: Request<DigestRequest>,
    ) -> Result<Response<DigestReply>, Status> {
        Ok(Response::new(self.cluster.digest()))
    }

    async fn snapshot(
        &self,
        _request: Request<SnapshotRequest>,
    ) -> Result<Response<SnapshotReply>, Status> {
        match self.cluster.save(std::time::Duration::from_secs(600)).await {
            Some(index) => Ok(Response::new(SnapshotReply { index })),
            None => Err(Status::deadline_exceeded("the snapshot did not finish in time")),
        }
    }
    async fn members(&self, _r: Request<MembersRequest>) -> Result<Response<MembersReply>, Status> {
        Err(Status::unimplemented("members"))
    }

    async fn add_member(
        &self,
        _r: Request<AddMemberRequest>,
    ) -> Result<Response<MembersReply>, Status> {
        Err(Status::unimplemented("add_member"))
    }

    async fn promote_member(
        &self,
        _r: Request<PromoteMemberRequest>,
    ) -> Result<Response<MembersReply>, Status> {
        Err(Status::unimplemented("promote_member"))
    }

    async fn remove_member(
        &self,
        _r: Request<RemoveMemberRequest>,
    ) -> Result<Response<MembersReply>, Status> {
        Err(Status::unimplemented("remove_member"))
    }

    async fn replace_member(
        &self,
        _r: Request<ReplaceMemberRequest>,
    ) -> Result<Response<MembersReply>, Status> {
        Err(Status::unimplemented("replace_member"))
    }

    async fn transfer_leader(
        &self,
        _r: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderReply>, Status> {
        Err(Status::unimplemented("transfer_leader"))
    }

    type WatchStatusStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<StatusEvent, Status>> + Send>>;

    async fn watch_status(
        &self,
        _r: Request<WatchStatusRequest>,
    ) -> Result<Response<Self::WatchStatusStream>, Status> {
        Err(Status::unimplemented("watch_status"))
    }
}

impl Cluster {
    /// Asks Raft to snapshot now (BGSAVE).
    pub async fn bgsave(&self) -> bool {
        self.raft.trigger().snapshot().await.is_ok()
    }

    /// Snapshots now and waits until the snapshot covers everything applied
    /// when it was asked for (SAVE); returns its index.
    pub async fn save(&self, timeout: std::time::Duration) -> Option<u64> {
        let target = self.metrics().last_applied.map_or(0, |l| l.index);
        if !self.bgsave().await {
            return None;
        }
        let waited = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.snapshot.is_some_and(|s| s.index >= target), "snapshot")
            .await
            .ok()?;
        waited.snapshot.map(|s| s.index)
    }

    /// The engine's digest with the index it was taken at, atomically.
    pub fn digest(&self) -> DigestReply {
        let machine = self.sm.read();
        DigestReply {
            applied_index: machine.last_applied.map_or(0, |l| l.index),
            digest: machine.state.digest_hex(),
            keys: machine.state.dbs().iter().map(|db| db.len() as u64).sum(),
            member_id: member_of(self.node_id),
        }
    }
}

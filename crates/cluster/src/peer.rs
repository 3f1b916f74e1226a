//! The server side of the peer service (`raftcache.raft.v1.Raft`).
//!
//! It starts before the Raft instance exists, because bootstrapping asks peers
//! who they are; until then Info reports the node as not initialized and the
//! Raft RPCs answer UNAVAILABLE. Nodes started together create their Raft
//! instances a few milliseconds apart and the first one asks the others for
//! votes at once, so a Raft RPC that arrives before this node's Raft exists
//! waits for it a while (half the time its sender gives it) instead of failing
//! (which openraft would log as an error on the asking node).

use std::sync::{Arc, OnceLock};

use raftcache_proto::raft::raft_server::Raft as RaftService;
use raftcache_proto::raft::{
    ConfirmReply, ConfirmRequest, ForwardReply, ForwardRequest, InfoRequest, JoinReply,
    JoinRequest, NodeInfo, RaftPayload, ReadIndexReply, ReadIndexRequest, SnapshotChunk,
    TimeoutNowReply, TimeoutNowRequest, TrackingAck, TrackingReport,
};
use raftcache_raft::codec::{decode, encode};
use raftcache_raft::openraft::error::Fatal;
use raftcache_raft::openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest,
};
use raftcache_raft::openraft::Snapshot;
use raftcache_raft::types::{
    member_of, NodeId, ShowId, SnapshotFile, SnapshotMeta, TypeConfig, Vote,
};
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::{Cluster, Leader};

/// The peer service; `cluster` is filled in once Raft runs.
#[derive(Clone)]
pub struct PeerService {
    pub cluster: Arc<OnceLock<Arc<Cluster>>>,
    /// Set while this pristine node waits to initialize with the others.
    pub fresh_intent: Arc<std::sync::atomic::AtomicBool>,
    /// Notified once `cluster` is filled in.
    pub started: Arc<tokio::sync::Notify>,
    /// How long a vote request waits for this node's Raft to start: half the
    /// election timeout, which is the sender's timeout for it.
    pub vote_wait: std::time::Duration,
    /// The same for AppendEntries and snapshots: half a heartbeat.
    pub append_wait: std::time::Duration,
    pub member_id: u32,
    pub resp_addr: String,
    pub admin_addr: String,
}

/// When the last "entries of a newer format" error was logged (ms since the
/// epoch): the leader resends them every heartbeat.
static NEWER_LOGGED: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// True at most once a minute per `last`.
fn once_a_minute(last: &std::sync::atomic::AtomicI64) -> bool {
    let now = crate::clock::now_ms();
    let before = last.load(std::sync::atomic::Ordering::Relaxed);
    now - before >= 60_000
        && last
            .compare_exchange(
                before,
                now,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            )
            .is_ok()
}

fn bad_payload(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("malformed payload: {e}"))
}

impl PeerService {
    fn cluster(&self) -> std::result::Result<&Arc<Cluster>, Status> {
        self.cluster.get().ok_or_else(|| Status::unavailable("raft is starting"))
    }

    /// The cluster, waiting up to `wait` for it.
    async fn cluster_soon(
        &self,
        wait: std::time::Duration,
    ) -> std::result::Result<&Arc<Cluster>, Status> {
        if self.cluster.get().is_none() {
            let started = self.started.notified();
            tokio::pin!(started);
            // Registered before the second look, so a start in between is seen.
            started.as_mut().enable();
            if self.cluster.get().is_none() {
                let _ = tokio::time::timeout(wait, started).await;
            }
        }
        self.cluster()
    }

    /// The cluster, if this message is addressed to this node's Raft id. A
    /// message for another id (an earlier incarnation that lived at this
    /// address) is refused: answering it would speak for a node whose votes
    /// and log are gone.
    async fn addressed(
        &self,
        target: u64,
        cluster_id: u64,
        wait: std::time::Duration,
    ) -> std::result::Result<&Arc<Cluster>, Status> {
        let cluster = self.cluster_soon(wait).await?;
        let mine = cluster.network.cluster_id();
        if cluster_id != 0 && mine != 0 && cluster_id != mine {
            return Err(Status::not_found(format!(
                "this node is in cluster {mine:016x}, not {cluster_id:016x}"
            )));
        }
        if target != cluster.node_id {
            return Err(Status::not_found(format!(
                "this is node {}, not {}",
                ShowId(cluster.node_id),
                ShowId(target)
            )));
        }
        Ok(cluster)
    }
}

impl PeerService {
    /// Answers one AppendEntries (an error status ends the stream).
    async fn append_one(&self, payload: &RaftPayload) -> std::result::Result<RaftPayload, Status> {
        let cluster = self.addressed(payload.target, payload.cluster_id, self.append_wait).await?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(payload).map_err(|e| {
            let text = e.to_string();
            if text.contains(raftcache_sm::format::NEWER_FORMAT) && once_a_minute(&NEWER_LOGGED) {
                // Needs a person: this node is older than the leader's log.
                tracing::error!(error = %text, "the leader sent entries this build cannot apply; upgrade this node");
            }
            bad_payload(e)
        })?;
        let leader = rpc.vote.leader_id().voted_for();
        let result = cluster.raft().append_entries(rpc).await;
        if matches!(&result, Ok(resp) if !matches!(resp, AppendEntriesResponse::HigherVote(_)))
            && leader != Some(cluster.node_id)
        {
            cluster.supported_another();
        }
        Ok(encode(&result))
    }
}

/// The answers of a streaming RPC.
type ReplyStream<T> = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

type RpcResult<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl RaftService for PeerService {
    type AppendEntriesStream = ReplyStream<RaftPayload>;

    async fn append_entries(
        &self,
        request: Request<Streaming<RaftPayload>>,
    ) -> RpcResult<Self::AppendEntriesStream> {
        let service = self.clone();
        // One at a time, in order: the leader sends the next request only
        // after this answer.
        let replies = request.into_inner().then(move |payload| {
            let service = service.clone();
            async move { service.append_one(&payload?).await }
        });
        Ok(Response::new(Box::pin(replies)))
    }

    async fn vote(&self, request: Request<RaftPayload>) -> RpcResult<RaftPayload> {
        let cluster = self
            .addressed(request.get_ref().target, request.get_ref().cluster_id, self.vote_wait)
            .await?;
        let rpc: VoteRequest<NodeId> = decode(request.get_ref()).map_err(bad_payload)?;
        let candidate = rpc.vote.leader_id().voted_for();
        let result = cluster.raft().vote(rpc).await;
        if matches!(&result, Ok(resp) if resp.vote_granted)
            && candidate.is_some_and(|c| crate::reform::supports_another(cluster.node_id, c))
        {
            cluster.supported_another();
        }
        Ok(Response::new(encode(&result)))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> RpcResult<RaftPayload> {
        let mut stream = request.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        let (target, cluster_id) = first.vote.as_ref().map_or((0, 0), |v| (v.target, v.cluster_id));
        let cluster = self.addressed(target, cluster_id, self.append_wait).await?.clone();
        let vote: Vote =
            decode(first.vote.as_ref().ok_or_else(|| Status::invalid_argument("no vote"))?)
                .map_err(bad_payload)?;
        let meta: SnapshotMeta =
            decode(first.meta.as_ref().ok_or_else(|| Status::invalid_argument("no meta"))?)
                .map_err(bad_payload)?;
        let path = cluster.sm.incoming_path();
        let mut file =
            tokio::fs::File::create(&path).await.map_err(|e| Status::internal(e.to_string()))?;
        let write = async {
            file.write_all(&first.data).await?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(std::io::Error::other)?;
                file.write_all(&chunk.data).await?;
            }
            file.sync_all().await
        };
        if let Err(e) = write.await {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(Status::aborted(format!("receiving snapshot: {e}")));
        }
        tracing::info!(snapshot = %meta.snapshot_id, "received snapshot stream");
        let snapshot = Snapshot { meta, snapshot: Box::new(SnapshotFile { path }) };
        let leader = vote.leader_id().voted_for();
        let result: std::result::Result<SnapshotResponse<NodeId>, Fatal<NodeId>> =
            cluster.raft().install_full_snapshot(vote, snapshot).await;
        if result.is_ok() && leader != Some(cluster.node_id) {
            cluster.supported_another();
        }
        Ok(Response::new(encode(&result)))
    }

    type ConfirmLeaderStream = ReplyStream<ConfirmReply>;

    async fn confirm_leader(
        &self,
        request: Request<Streaming<ConfirmRequest>>,
    ) -> RpcResult<Self::ConfirmLeaderStream> {
        let cluster = self.cluster()?.clone();
        let replies = request
            .into_inner()
            .map(move |r| r.map(|r| super::confirm::answer(&cluster, &cluster.vote, &r)));
        Ok(Response::new(Box::pin(replies)))
    }

    type ForwardStream = tokio_stream::wrappers::ReceiverStream<Result<ForwardReply, Status>>;

    async fn forward(
        &self,
        request: Request<Streaming<ForwardRequest>>,
    ) -> RpcResult<Self::ForwardStream> {
        let cluster = self.cluster()?.clone();
        Ok(Response::new(super::forward::serve(cluster, request.into_inner())))
    }

    type ReadIndexStream = ReplyStream<ReadIndexReply>;

    async fn read_index(
        &self,
        request: Request<Streaming<ReadIndexRequest>>,
    ) -> RpcResult<Self::ReadIndexStream> {
        let cluster = self.cluster()?.clone();
        // One at a time, in order (an error ends the stream).
        let replies = request.into_inner().then(move |request| {
            let cluster = cluster.clone();
            async move {
                let index = cluster.serve_read_index(&request?).await?;
                Ok(ReadIndexReply { index })
            }
        });
        Ok(Response::new(Box::pin(replies)))
    }

    type TrackingStream = ReplyStream<TrackingAck>;

    async fn tracking(
        &self,
        request: Request<Streaming<TrackingReport>>,
    ) -> RpcResult<Self::TrackingStream> {
        let cluster = self.cluster()?.clone();
        let acks = request.into_inner().map(move |report| {
            if cluster.tracking.register(&cluster, &report?) {
                Ok(TrackingAck {})
            } else {
                Err(Status::failed_precondition("not the leader of that term"))
            }
        });
        Ok(Response::new(Box::pin(acks)))
    }

    async fn info(&self, _request: Request<InfoRequest>) -> RpcResult<NodeInfo> {
        let mut info = NodeInfo {
            member_id: self.member_id,
            raft_node_id: 0,
            resp_addr: self.resp_addr.clone(),
            admin_addr: self.admin_addr.clone(),
            initialized: false,
            leader_raft_node_id: 0,
            cluster_id: 0,
            fresh_intent: self.fresh_intent.load(std::sync::atomic::Ordering::Relaxed),
            entry_format: u32::from(raftcache_sm::format::ENTRY_FORMAT),
            vote_term: 0,
            last_log_index: 0,
        };
        if let Some(cluster) = self.cluster.get() {
            let m = cluster.metrics();
            info.raft_node_id = cluster.node_id;
            info.initialized = m.membership_config.membership().nodes().next().is_some();
            info.vote_term = m.vote.leader_id().term;
            info.last_log_index = m.last_log_index.unwrap_or(0);
            // A leader names itself only once a quorum has acknowledged it:
            // restarting peers join a cluster that has a leader (see
            // bootstrap's survey), and one restored from its own vote alone
            // may have no live quorum.
            info.leader_raft_node_id = match cluster.leader() {
                Leader::Me if cluster.leads_with_quorum() => cluster.node_id,
                Leader::Me => 0,
                Leader::Other { id, .. } => id,
                Leader::Unknown => 0,
            };
            info.cluster_id = cluster.sm.read().state.cluster_id();
        }
        Ok(Response::new(info))
    }

    async fn join(&self, request: Request<JoinRequest>) -> RpcResult<JoinReply> {
        let cluster = self.cluster()?;
        let JoinRequest { raft_node_id: new_id, raft_addr, stay_learner } = request.into_inner();
        // Evidence, even when this node cannot admit it, that the member's
        // other incarnations are gone (see `reform`).
        if member_of(new_id) != 0 {
            cluster.rejoins.note(new_id);
        }
        if !cluster.leads_with_quorum() {
            return Err(Status::failed_precondition("not the leader (or no quorum yet)"));
        }
        if member_of(new_id) == 0 {
            return Err(Status::invalid_argument("member ids start at 1"));
        }
        let membership = cluster.metrics().membership_config.membership().clone();
        let voter = membership.voter_ids().any(|id| id == new_id);
        let learner = !voter && membership.get_node(&new_id).is_some();
        if voter || (learner && stay_learner) {
            return Ok(Response::new(JoinReply {}));
        }
        tracing::info!(node = %ShowId(new_id), %raft_addr, "a node asks to join");
        cluster.join_request(new_id, &raft_addr, !stay_learner).await?;
        Ok(Response::new(JoinReply {}))
    }

    async fn timeout_now(&self, request: Request<TimeoutNowRequest>) -> RpcResult<TimeoutNowReply> {
        let r = request.into_inner();
        let cluster = self.addressed(r.target, r.cluster_id, self.vote_wait).await?.clone();
        tracing::info!(term = r.term, "asked to take over leadership");
        let elected = cluster.campaign(r.term).await;
        Ok(Response::new(TimeoutNowReply { elected, term: cluster.metrics().current_term }))
    }
}

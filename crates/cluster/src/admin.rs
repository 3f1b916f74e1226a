//! The admin service (`raftcache.admin.v1.Admin`): status, digest,
//! snapshots, membership changes and leadership transfer (passed on to the
//! leader when this node does not lead), and a stream of status changes.

use std::sync::Arc;

use raftcache_proto::admin::admin_server::Admin;
use raftcache_proto::admin::{
    AddMemberRequest, DigestReply, DigestRequest, ForceNewClusterReply, ForceNewClusterRequest,
    Member, MembersReply, MembersRequest, PromoteMemberRequest, RemoveMemberRequest,
    ReplaceMemberRequest, SnapshotReply, SnapshotRequest, StatusEvent, StatusReply, StatusRequest,
    TransferLeaderReply, TransferLeaderRequest, WatchStatusRequest,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use raftcache_proto::admin::admin_client::AdminClient;
use raftcache_proto::admin::status_event::Kind;
use raftcache_raft::types::{member_of, NodeId, ShowId};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use super::membership::Removed;
use super::{role_name, Cluster, Leader};

/// The admin service of one node.
#[derive(Clone)]
pub struct AdminService {
    pub cluster: Arc<Cluster>,
}

/// Metadata marking a call a node passed on to its leader (never passed on
/// again).
const FORWARDED: &str = "x-raftcache-forwarded";

/// Where a membership call is served.
enum Route {
    Here,
    Leader(AdminClient<Channel>),
}

/// Checks the bearer token of every admin call (when one is configured).
#[derive(Clone)]
pub struct TokenCheck {
    pub token: Option<Arc<str>>,
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.token else { return Ok(request) };
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
        match given {
            Some(given) if same(given.as_bytes(), token.as_bytes()) => Ok(request),
            Some(_) => Err(Status::unauthenticated("wrong admin token")),
            None => Err(Status::unauthenticated(
                "this node requires an admin token (authorization: Bearer <token>)",
            )),
        }
    }
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AdminService {
    /// The leader to serve a membership call, waiting up to request-timeout
    /// for one.
    /// A call that was passed on is not passed on again (`handed_over`:
    /// unless this node just handed leadership to the new leader itself).
    async fn route(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        handed_over: bool,
    ) -> Result<Route, Status> {
        let c = &self.cluster;
        let deadline = Instant::now() + c.options.request_timeout;
        match c.wait_for_leader(deadline).await {
            Ok(Leader::Me) => Ok(Route::Here),
            Ok(Leader::Other { .. }) if metadata.contains_key(FORWARDED) && !handed_over => {
                Err(Status::unavailable("passed on to a node that does not lead; try again"))
            }
            Ok(Leader::Other { id, raft_addr }) => {
                let addr = c.admin_addr_of(id, &raft_addr).await.ok_or_else(|| {
                    Status::unavailable(format!("the leader {} does not answer", ShowId(id)))
                })?;
                let channel = Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| Status::internal(e.to_string()))?
                    .connect_timeout(Duration::from_secs(2))
                    .connect()
                    .await
                    .map_err(|e| {
                        Status::unavailable(format!("the leader's admin port {addr}: {e}"))
                    })?;
                Ok(Route::Leader(AdminClient::new(channel)))
            }
            Ok(Leader::Unknown) | Err(_) => Err(Status::unavailable("the cluster has no leader")),
        }
    }

    /// The current membership, as a reply.
    async fn members_reply(&self) -> MembersReply {
        let c = &self.cluster;
        let m = c.metrics();
        MembersReply {
            members: c.member_views().await,
            leader_raft_node_id: m.current_leader.unwrap_or(0),
            log_index: m.membership_config.log_id().map_or(0, |l| l.index),
        }
    }
}

/// `request`'s message with the caller's token, marked as passed on.
fn passed_on<T>(metadata: &tonic::metadata::MetadataMap, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(auth) = metadata.get("authorization") {
        request.metadata_mut().insert("authorization", auth.clone());
    }
    request.metadata_mut().insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    request.set_timeout(Duration::from_secs(900));
    request
}

/// Serves a membership call on the leader: here, or passed on to it.
macro_rules! on_leader {
    ($self:ident, $request:ident, $method:ident, |$msg:ident| $here:expr) => {{
        let (metadata, _, $msg) = $request.into_parts();
        match $self.route(&metadata, false).await? {
            Route::Leader(mut client) => return client.$method(passed_on(&metadata, $msg)).await,
            Route::Here => $here,
        }
    }};
}

/// Serves a change that may remove the leader: when this node, leading,
/// hands leadership over instead (`Removed::HandedOver`), the call goes on to
/// the new leader, which makes the change.
macro_rules! on_leader_handing_over {
    ($self:ident, $request:ident, $method:ident, |$msg:ident| $here:expr) => {{
        let (metadata, _, $msg) = $request.into_parts();
        let mut handed_over = false;
        loop {
            match $self.route(&metadata, handed_over).await? {
                Route::Leader(mut client) => {
                    return client.$method(passed_on(&metadata, $msg)).await
                }
                Route::Here => match $here {
                    Removed::Done => return Ok(Response::new($self.members_reply().await)),
                    Removed::HandedOver(_) => handed_over = true,
                },
            }
        }
    }};
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        Ok(Response::new(self.cluster.status().await))
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
        match self.cluster.save(Duration::from_secs(600)).await {
            Some(index) => Ok(Response::new(SnapshotReply { index })),
            None => Err(Status::deadline_exceeded("the snapshot did not finish in time")),
        }
    }

    async fn force_new_cluster(
        &self,
        _request: Request<ForceNewClusterRequest>,
    ) -> Result<Response<ForceNewClusterReply>, Status> {
        let cluster = &self.cluster;
        let warning = match cluster.wedge() {
            Some(w) => match w.unproved {
                None => "this node provably held every committed entry: nothing was lost".into(),
                Some(why) => format!(
                    "writes committed without reaching this node may have been lost ({why})"
                ),
            },
            None => "writes committed without reaching this node may have been lost (this node \
                     saw no wedge: no majority of the voters had been replaced)"
                .into(),
        };
        let keep = cluster.keep_for_operator();
        tracing::warn!(%warning, "ForceNewCluster asked by an operator");
        let r = cluster.reform(keep).await.map_err(Status::failed_precondition)?;
        Ok(Response::new(ForceNewClusterReply {
            term: r.term,
            index: r.index,
            voters: r.voters.iter().map(|v| ShowId(*v).to_string()).collect(),
            warning,
        }))
    }

    async fn members(
        &self,
        request: Request<MembersRequest>,
    ) -> Result<Response<MembersReply>, Status> {
        on_leader!(self, request, members, |_msg| {});
        Ok(Response::new(self.members_reply().await))
    }

    async fn add_member(
        &self,
        request: Request<AddMemberRequest>,
    ) -> Result<Response<MembersReply>, Status> {
        on_leader!(self, request, add_member, |msg| {
            self.cluster.add_member(msg.member_id, &msg.raft_addr, msg.voter).await?
        });
        Ok(Response::new(self.members_reply().await))
    }

    async fn promote_member(
        &self,
        request: Request<PromoteMemberRequest>,
    ) -> Result<Response<MembersReply>, Status> {
        on_leader!(self, request, promote_member, |msg| {
            self.cluster.promote_member(msg.member_id).await?
        });
        Ok(Response::new(self.members_reply().await))
    }

    async fn remove_member(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Result<Response<MembersReply>, Status> {
        on_leader_handing_over!(self, request, remove_member, |msg| {
            self.cluster.remove_member(msg.member_id, msg.force).await?
        })
    }

    async fn replace_member(
        &self,
        request: Request<ReplaceMemberRequest>,
    ) -> Result<Response<MembersReply>, Status> {
        on_leader_handing_over!(self, request, replace_member, |msg| {
            let (old, new) = (msg.old_member_id, msg.new_member_id);
            self.cluster.replace_member(old, new, &msg.new_raft_addr).await?
        })
    }

    async fn transfer_leader(
        &self,
        request: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderReply>, Status> {
        let (leader, term) = on_leader!(self, request, transfer_leader, |msg| {
            self.cluster.transfer_leader(msg.member_id).await?
        });
        Ok(Response::new(TransferLeaderReply { leader_raft_node_id: leader, term }))
    }

    type WatchStatusStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<StatusEvent, Status>> + Send>>;

    async fn watch_status(
        &self,
        _request: Request<WatchStatusRequest>,
    ) -> Result<Response<Self::WatchStatusStream>, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(watch(self.cluster.clone(), tx));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

/// What a watcher compares between two looks.
#[derive(Clone, PartialEq)]
struct Seen {
    term: u64,
    leader: Option<NodeId>,
    role: &'static str,
    members: Vec<(NodeId, bool)>,
}

fn now_ms() -> u64 {
    crate::clock::now_ms().max(0) as u64
}

/// Feeds one WatchStatus stream until its receiver goes away.
async fn watch(cluster: Arc<Cluster>, tx: tokio::sync::mpsc::Sender<Result<StatusEvent, Status>>) {
    let look = |c: &Cluster| {
        let m = c.metrics();
        let membership = m.membership_config.membership();
        Seen {
            term: m.current_term,
            leader: m.current_leader,
            role: role_name(m.state),
            members: membership
                .nodes()
                .map(|(id, _)| (*id, membership.voter_ids().any(|v| v == *id)))
                .collect(),
        }
    };
    let event = |kind: Kind, seen: &Seen, members: Vec<Member>, member_id: u32, message: String| {
        StatusEvent {
            kind: kind as i32,
            time_ms: now_ms(),
            term: seen.term,
            leader_raft_node_id: seen.leader.unwrap_or(0),
            role: seen.role.into(),
            members,
            member_id,
            message,
        }
    };
    let mut seen = look(&cluster);
    let views = cluster.member_views().await;
    let mut reachable: BTreeMap<NodeId, bool> =
        views.iter().map(|m| (m.raft_node_id, m.reachable)).collect();
    let first = event(Kind::Current, &seen, views, 0, "current state".into());
    if tx.send(Ok(first)).await.is_err() {
        return;
    }
    let mut probe = tokio::time::interval(Duration::from_secs(1));
    let mut metrics = cluster.raft().metrics();
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            _ = probe.tick() => {}
            changed = metrics.changed() => if changed.is_err() {
                if cluster.stopping() { return }
                // The Raft instance was replaced (re-formed): follow the new one.
                tokio::time::sleep(Duration::from_millis(20)).await;
                metrics = cluster.raft().metrics();
            },
        }
        let now = look(&cluster);
        let mut events = Vec::new();
        if now.leader != seen.leader || now.term != seen.term {
            let who = now.leader.map_or("none".to_string(), |l| ShowId(l).to_string());
            events.push(event(
                Kind::LeaderChanged,
                &now,
                vec![],
                0,
                format!("leader {who} in term {}", now.term),
            ));
        }
        if now.role != seen.role {
            events.push(event(
                Kind::RoleChanged,
                &now,
                vec![],
                0,
                format!("this node is now {}", now.role),
            ));
        }
        if now.members != seen.members {
            let views = cluster.member_views().await;
            let names: Vec<String> = views
                .iter()
                .map(|m| {
                    format!("{}{}", ShowId(m.raft_node_id), if m.voter { "" } else { "(learner)" })
                })
                .collect();
            events.push(event(
                Kind::MembershipChanged,
                &now,
                views,
                0,
                format!("members {}", names.join(",")),
            ));
        }
        seen = now;
        if events.is_empty() {
            // A probe round: who answers now.
            for view in cluster.member_views().await {
                let was = reachable.insert(view.raft_node_id, view.reachable);
                if was.is_some_and(|w| w != view.reachable) || (was.is_none() && !view.reachable) {
                    let (kind, what) = if view.reachable {
                        (Kind::MemberReachable, "answers again")
                    } else {
                        (Kind::MemberUnreachable, "does not answer")
                    };
                    let message = format!("member {} {what}", ShowId(view.raft_node_id));
                    events.push(event(kind, &seen, vec![view.clone()], view.member_id, message));
                }
            }
        }
        for e in events {
            if tx.send(Ok(e)).await.is_err() {
                return;
            }
        }
    }
}

/// Bytes in the files under `dir` (0 if it cannot be read).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

impl Cluster {
    /// The admin API's Status.
    pub async fn status(&self) -> StatusReply {
        let members = self.member_views().await;
        let m = self.metrics();
        let (keys, cluster_id) = {
            let machine = self.sm.read();
            let keys = machine.state.dbs().iter().map(|db| db.len() as u64).sum();
            (keys, machine.state.cluster_id())
        };
        let snapshot_age_ms = std::fs::read_dir(self.sm.dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".meta"))
            .filter_map(|e| e.metadata().ok()?.modified().ok())
            .max()
            .and_then(|t| t.elapsed().ok())
            .map_or(0, |age| age.as_millis() as u64);
        StatusReply {
            member_id: member_of(self.node_id),
            raft_node_id: self.node_id,
            role: role_name(m.state).into(),
            term: m.current_term,
            leader_raft_node_id: m.current_leader.unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            members,
            read_consistency: self.options.read_consistency.name().into(),
            ready: self.ready(),
            quorum_lost: self.quorum_lost(),
            wedged: self.stuck(),
            // The leader's view (a majority of every configuration);
            // elsewhere what this node has applied.
            commit_index: self
                .view()
                .commit_index
                .unwrap_or(0)
                .max(m.last_applied.map_or(0, |l| l.index)),
            snapshot_index: m.snapshot.map_or(0, |s| s.index),
            snapshot_bytes: if m.snapshot.is_some() { self.sm.compaction_sizes().1 } else { 0 },
            snapshot_age_ms: if m.snapshot.is_some() { snapshot_age_ms } else { 0 },
            log_bytes: self.data_dir.as_ref().map_or(0, |d| dir_bytes(&d.join("raft"))),
            first_log_index: m.purged.map_or(0, |p| p.index + 1),
            keys,
            memory_bytes: crate::process::rss_bytes(),
            uptime_seconds: self.started.elapsed().as_secs(),
            version: env!("CARGO_PKG_VERSION").into(),
            redis_version: self.options.redis_version.into(),
            appendfsync: self.options.appendfsync.clone(),
            cluster_id: if cluster_id == 0 { String::new() } else { format!("{cluster_id:016x}") },
            resp_addr: self.resp_addr.clone(),
            admin_addr: self.admin_addr.clone(),
            raft_addr: m
                .membership_config
                .membership()
                .get_node(&self.node_id)
                .map(|n| n.addr.clone())
                .unwrap_or_default(),
        }
    }

    /// True when this node can serve: it is a member, knows a usable
    /// leader, and has applied the log it holds (the health service's
    /// SERVING).
    pub fn healthy(&self) -> bool {
        let m = self.metrics();
        let member = m.membership_config.membership().get_node(&self.node_id).is_some();
        let applied = m.last_applied.map_or(0, |l| l.index);
        let caught_up =
            applied + super::membership::CAUGHT_UP_SLACK >= m.last_log_index.unwrap_or(0);
        drop(m);
        member && caught_up && self.usable_leader() != Leader::Unknown
    }

    /// Asks Raft to snapshot now (BGSAVE).
    pub async fn bgsave(&self) -> bool {
        self.raft().trigger().snapshot().await.is_ok()
    }

    /// Snapshots now and waits until the snapshot covers everything applied
    /// when it was asked for (SAVE); returns its index.
    pub async fn save(&self, timeout: std::time::Duration) -> Option<u64> {
        let target = self.metrics().last_applied.map_or(0, |l| l.index);
        if !self.bgsave().await {
            return None;
        }
        let waited = self
            .raft()
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

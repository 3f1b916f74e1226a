//! The client side of the peer transport: openraft's RPCs over gRPC.
//!
//! One HTTP/2 channel per peer address is created lazily and reused by every
//! RPC to that peer (tonic multiplexes them). AppendEntries travel on one
//! long-lived stream per replication target. Each RPC has a deadline from
//! openraft's [`RPCOption`]; a peer that is down or slow only delays the
//! replication stream to that peer, because openraft drives each peer from its
//! own task. Snapshots are streamed from their file in chunks of
//! [`SNAPSHOT_CHUNK`] bytes.
//!
//! A connection to a peer that has not answered for [`RECONNECT_AFTER`] is
//! replaced (see [`Network::reconnect`]): after a partition heals, a TCP
//! connection whose packets were dropped retransmits only when its backed-off
//! retransmission timer fires, seconds later (after a 3 s partition about
//! 3 s), and every RPC multiplexed on it waits that long; a new connection
//! goes through at once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    Fatal, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Snapshot};
use raftcache_proto::raft::raft_client::RaftClient;
use raftcache_proto::raft::{RaftPayload, SnapshotChunk};
use tokio::io::AsyncReadExt;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::codec::{decode, encode, encode_to};
use crate::types::{NodeId, ShowId, TypeConfig, Vote};

/// Size of one snapshot chunk on the wire.
pub const SNAPSHOT_CHUNK: usize = 1 << 20;
/// How long to wait for a TCP connection to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// HTTP/2 keep-alive pings detect a dead peer connection.
const KEEPALIVE: Duration = Duration::from_secs(5);
/// A peer that has answered no Raft RPC for this long gets a new connection
/// (at most once per this interval): longer than a heartbeat, a vote or an
/// AppendEntries take on a healthy link, shorter than the election timeout.
pub const RECONNECT_AFTER: Duration = Duration::from_millis(250);
/// Largest gRPC message accepted (AppendEntries batches can be large).
pub const MAX_MESSAGE: usize = 256 << 20;
/// Largest AppendEntries payload sent with more than one entry. openraft 0.9
/// gives an AppendEntries one heartbeat interval to complete, so a follower
/// far behind must be caught up in batches that fit. The log stores hand
/// openraft batches of at most [`APPEND_BATCH_BYTES`] (`limited_get_log_entries`),
/// so this is only a safety net: a larger batch is answered with
/// `PayloadTooLarge` and openraft retries with fewer entries.
pub const MAX_APPEND_BYTES: usize = 1 << 20;
/// The size of the entries the log stores put in one AppendEntries batch
/// (at least one entry), leaving room for the request's other fields.
pub const APPEND_BATCH_BYTES: u64 = (MAX_APPEND_BYTES as u64) * 3 / 4;

/// A lazily connected gRPC channel to `addr` (`host:port`).
pub fn channel(addr: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE)
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// Called with the round-trip time of every answered AppendEntries (the
/// node's metrics); set once.
static APPEND_OBSERVER: std::sync::OnceLock<fn(Duration)> = std::sync::OnceLock::new();

/// Installs the AppendEntries round-trip observer (later calls are ignored).
pub fn set_append_observer(observe: fn(Duration)) {
    let _ = APPEND_OBSERVER.set(observe);
}

/// The metadata key carrying the peer secret (`--peer-secret`).
pub const PEER_SECRET_HEADER: &str = "x-raftcache-peer-secret";

/// Adds the peer secret, when one is configured, to every request.
#[derive(Clone, Debug, Default)]
pub struct PeerSecret(pub Option<tonic::metadata::AsciiMetadataValue>);

impl tonic::service::Interceptor for PeerSecret {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(secret) = &self.0 {
            request.metadata_mut().insert(PEER_SECRET_HEADER, secret.clone());
        }
        Ok(request)
    }
}

/// A client of a peer's Raft service.
pub type PeerClient = RaftClient<InterceptedService<Channel, PeerSecret>>;

/// A peer client with raised message limits.
pub fn client(channel: Channel, secret: PeerSecret) -> PeerClient {
    RaftClient::with_interceptor(channel, secret)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// A peer failing for this long is reported at WARN (before that, INFO: a
/// peer restarting or a moment's loss is routine).
const WARN_AFTER: Duration = Duration::from_secs(10);
/// A peer that keeps failing is reported again at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Whether a peer answers this node's Raft RPCs, for logs and metrics.
///
/// openraft retries a failed RPC with backoff and logs every failure; those
/// logs are filtered out by the node (see its `main.rs`), and this reports
/// the peer instead: once at INFO when its RPCs start failing, at WARN if
/// they still fail after [`WARN_AFTER`] (then every [`WARN_EVERY`]), and at
/// INFO when it answers again.
#[derive(Debug, Default)]
pub struct PeerHealth {
    failures: AtomicU64,
    failing: AtomicBool,
    state: Mutex<Outage>,
    /// When the peer last accepted an AppendEntries from this node as its
    /// leader, and when, after that, a connection to it was first refused.
    acks: Mutex<Acks>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Acks {
    last_ack: Option<Instant>,
    gone: Option<Instant>,
}

/// How long after it last accepted this node as its leader a peer's
/// process was known to be gone: its last acknowledgement, and the first
/// proof after it (see [`PeerHealth::gone_after_ack`]).
#[derive(Debug, Clone, Copy)]
pub struct GoneAfterAck {
    pub last_ack: Instant,
    pub gone: Instant,
}

#[derive(Debug, Default)]
struct Outage {
    since: Option<Instant>,
    warned: Option<Instant>,
    /// When the connection was last replaced during this outage.
    reconnected: Option<Instant>,
}

impl PeerHealth {
    /// An RPC to `target` failed (unreachable, timed out, broken stream,
    /// an error status from whoever answers at its address). Returns true
    /// when the connection to it should be replaced: the peer has answered
    /// nothing for [`RECONNECT_AFTER`] since the outage began or the
    /// connection was last replaced.
    pub fn failed(&self, target: NodeId, error: &dyn std::fmt::Display) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.failing.store(true, Ordering::Relaxed);
        if proves_gone(&error.to_string(), target) {
            let mut acks = self.acks.lock().expect("peer acks lock");
            if acks.gone.is_none() {
                acks.gone = Some(Instant::now());
            }
        }
        let mut outage = self.state.lock().expect("peer health lock");
        let now = Instant::now();
        let quiet_since = outage.reconnected.or(outage.since).unwrap_or(now);
        let reconnect = now - quiet_since >= RECONNECT_AFTER;
        if reconnect {
            outage.reconnected = Some(now);
        }
        match outage.since {
            None => {
                outage.since = Some(now);
                tracing::info!(peer = %ShowId(target), %error, "peer not answering Raft RPCs; retrying");
            }
            Some(since)
                if now - since >= WARN_AFTER
                    && outage.warned.is_none_or(|at| now - at >= WARN_EVERY) =>
            {
                outage.warned = Some(now);
                tracing::warn!(
                    peer = %ShowId(target),
                    down_for = ?(now - since),
                    failures = self.failures.load(Ordering::Relaxed),
                    %error,
                    "peer still not answering Raft RPCs"
                );
            }
            Some(_) => {}
        }
        reconnect
    }

    /// An RPC to `target` was answered.
    pub fn answered(&self, target: NodeId) {
        if !self.failing.load(Ordering::Relaxed) {
            return;
        }
        self.failing.store(false, Ordering::Relaxed);
        let mut outage = self.state.lock().expect("peer health lock");
        if let Some(since) = outage.since.take() {
            outage.warned = None;
            outage.reconnected = None;
            tracing::info!(peer = %ShowId(target), after = ?since.elapsed(), "peer answering again");
        }
    }

    /// True while this peer's last Raft RPC failed (it has not answered
    /// since).
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// RPCs to this peer that failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The peer accepted an AppendEntries from this node as its leader.
    pub fn acked(&self) {
        let mut acks = self.acks.lock().expect("peer acks lock");
        acks.last_ack = Some(Instant::now());
        acks.gone = None;
    }

    /// The peer's last acknowledgement of this node as leader and the first
    /// failure after it that proves its process gone (a refused connection:
    /// nothing listened on its address any more; or another incarnation of
    /// its member answering there). A peer that merely stops answering is
    /// not evidence of anything (a partition or a paused process looks the
    /// same).
    pub fn gone_after_ack(&self) -> Option<GoneAfterAck> {
        let acks = *self.acks.lock().expect("peer acks lock");
        Some(GoneAfterAck { last_ack: acks.last_ack?, gone: acks.gone? })
    }
}

/// True if a failed RPC to `target` proves that its process is gone: the
/// peer's address refused the connection (nothing listens there), or a
/// process of the same member answered as another incarnation (a member
/// runs one process at a time; see the peer service's target check).
fn proves_gone(error: &str, target: NodeId) -> bool {
    if error.contains("Connection refused") || error.contains("os error 111") {
        return true;
    }
    let Some(rest) = error.split("this is node ").nth(1) else { return false };
    let shown: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let Some((member, incarnation)) = shown.split_once('.') else { return false };
    let (Ok(member), Ok(incarnation)) = (member.parse::<u32>(), incarnation.parse::<u32>()) else {
        return false;
    };
    let answered = crate::types::node_id(member, incarnation);
    crate::types::member_of(answered) == crate::types::member_of(target) && answered != target
}

/// Creates connections to peers, sharing one channel per address.
#[derive(Clone, Debug)]
pub struct Network {
    id: NodeId,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// This node's cluster id (0 until known), sent with every Raft message.
    cluster_id: Arc<std::sync::atomic::AtomicU64>,
    /// The shared secret sent with every peer request.
    secret: PeerSecret,
    /// Each peer's reachability, by Raft node id.
    health: Arc<Mutex<HashMap<NodeId, Arc<PeerHealth>>>>,
}

impl Network {
    /// The network of node `id`.
    pub fn new(id: NodeId) -> Network {
        Network {
            id,
            channels: Arc::default(),
            cluster_id: Arc::default(),
            secret: PeerSecret(None),
            health: Arc::default(),
        }
    }

    /// Sends `secret` with every peer request.
    pub fn with_secret(mut self, secret: PeerSecret) -> Network {
        self.secret = secret;
        self
    }

    /// The reachability record of peer `target`.
    pub fn health(&self, target: NodeId) -> Arc<PeerHealth> {
        self.health.lock().expect("health lock").entry(target).or_default().clone()
    }

    /// True while the last Raft RPC to `target` failed (false for a peer
    /// this node has not called).
    pub fn peer_failing(&self, target: NodeId) -> bool {
        self.health.lock().expect("health lock").get(&target).is_some_and(|h| h.failing())
    }

    /// Failed Raft RPCs so far, by peer.
    pub fn peer_failures(&self) -> Vec<(NodeId, u64)> {
        let health = self.health.lock().expect("health lock");
        health.iter().map(|(id, h)| (*id, h.failures())).collect()
    }

    /// Sets the cluster id sent with every Raft message.
    pub fn set_cluster_id(&self, id: u64) {
        self.cluster_id.store(id, std::sync::atomic::Ordering::Relaxed);
    }

    /// The cluster id this node sends (0 until known).
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drops the channel to `addr`, so that the next client for it opens a
    /// new connection (see the module docs). Streams open on the old one
    /// keep it until they end.
    pub fn reconnect(&self, addr: &str) {
        self.channels.lock().expect("channels lock").remove(addr);
    }

    /// A client for `addr`, reusing its channel.
    pub fn client_for(&self, addr: &str) -> Result<PeerClient, tonic::transport::Error> {
        let mut channels = self.channels.lock().expect("channels lock");
        if let Some(ch) = channels.get(addr) {
            return Ok(client(ch.clone(), self.secret.clone()));
        }
        let ch = channel(addr)?;
        channels.insert(addr.to_string(), ch.clone());
        Ok(client(ch, self.secret.clone()))
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        let client = self.client_for(&node.addr).map_err(|e| e.to_string());
        Connection {
            id: self.id,
            target,
            addr: node.addr.clone(),
            network: self.clone(),
            client,
            cluster_id: self.cluster_id.clone(),
            append_stream: Mutex::new(None),
            health: self.health(target),
        }
    }
}

/// A long-lived gRPC stream used one request at a time: the answer to a
/// request is the next message back. Its user keeps it between requests and
/// drops it after any failure or timeout (a late answer would be taken for the
/// next request's), so the next call opens a new one.
pub struct Exchange<Req, Resp> {
    requests: tokio::sync::mpsc::Sender<Req>,
    replies: tonic::Streaming<Resp>,
}

impl<Req, Resp> Exchange<Req, Resp> {
    /// Sends `request` on `stream`, or on a new stream that `open` starts if
    /// there is none, and waits for the answer.
    pub async fn call<F, Fut>(
        stream: Option<Self>,
        request: Req,
        open: F,
    ) -> Result<(Resp, Self), tonic::Status>
    where
        F: FnOnce(tokio_stream::wrappers::ReceiverStream<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<tonic::Streaming<Resp>>, tonic::Status>>,
    {
        let closed = || tonic::Status::unavailable("stream closed");
        let mut stream = match stream {
            Some(stream) => {
                stream.requests.send(request).await.map_err(|_| closed())?;
                stream
            }
            None => {
                let (requests, rx) = tokio::sync::mpsc::channel(1);
                requests.send(request).await.map_err(|_| closed())?;
                let replies =
                    open(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner();
                Exchange { requests, replies }
            }
        };
        let reply = stream.replies.message().await?.ok_or_else(closed)?;
        Ok((reply, stream))
    }
}

/// The connection openraft uses for one peer.
pub struct Connection {
    id: NodeId,
    target: NodeId,
    /// The target's address, and the network whose channel to it the
    /// client uses (replaced after an outage, see [`Network::reconnect`]).
    addr: String,
    network: Network,
    /// An invalid peer address is reported on every RPC instead of panicking.
    client: Result<PeerClient, String>,
    cluster_id: Arc<std::sync::atomic::AtomicU64>,
    /// The AppendEntries stream to the target, opened on first use (in a
    /// mutex only to make the connection `Sync`; reached through `get_mut`).
    append_stream: Mutex<Option<Exchange<RaftPayload, RaftPayload>>>,
    health: Arc<PeerHealth>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failure(String);

impl Connection {
    fn client(&self) -> Result<PeerClient, Unreachable> {
        self.client
            .clone()
            .map_err(|e| Unreachable::new(&Failure(format!("bad peer address: {e}"))))
    }

    fn cluster(&self) -> u64 {
        self.cluster_id.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn timeout(&self, action: RPCTypes, timeout: Duration) -> Timeout<NodeId> {
        Timeout { action, id: self.id, target: self.target, timeout }
    }

    /// Notes how an RPC to the target ended (see [`PeerHealth`]): a failure
    /// to get any answer, or an answer (even an error the peer sent).
    fn note<T, E: std::error::Error>(
        &mut self,
        result: Result<T, RPCError<NodeId, BasicNode, E>>,
    ) -> Result<T, RPCError<NodeId, BasicNode, E>> {
        match &result {
            Ok(_) | Err(RPCError::RemoteError(_)) | Err(RPCError::PayloadTooLarge(_)) => {
                self.health.answered(self.target)
            }
            Err(e) => {
                if self.health.failed(self.target, e) {
                    self.reconnect();
                }
            }
        }
        result
    }

    /// Moves this connection (and every later user of the network's channel
    /// to the target) to a new TCP connection.
    fn reconnect(&mut self) {
        self.network.reconnect(&self.addr);
        *self.append_stream.get_mut().expect("stream slot") = None;
        if self.client.is_ok() {
            self.client = self.network.client_for(&self.addr).map_err(|e| e.to_string());
        }
    }
}

/// Maps a gRPC failure: connection problems make the peer unreachable (openraft
/// backs off), anything else is a network error (retried at once).
fn status_error<E: std::error::Error>(status: tonic::Status) -> RPCError<NodeId, BasicNode, E> {
    match status.code() {
        tonic::Code::Unavailable
        | tonic::Code::Unknown
        | tonic::Code::Cancelled
        | tonic::Code::NotFound => {
            RPCError::Unreachable(Unreachable::new(&Failure(status.to_string())))
        }
        _ => RPCError::Network(NetworkError::new(&Failure(status.to_string()))),
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let started = std::time::Instant::now();
        let result = self.send_append_entries(rpc, option).await;
        if let Ok(resp) = &result {
            if let Some(observe) = APPEND_OBSERVER.get() {
                observe(started.elapsed());
            }
            if !matches!(resp, AppendEntriesResponse::HigherVote(_)) {
                self.health.acked();
            }
        }
        self.note(result)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let result = self.send_vote(rpc, option).await;
        self.note(result)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let result = self.send_snapshot(vote, snapshot, cancel, option).await;
        match &result {
            Ok(_) | Err(StreamingError::RemoteError(_)) => self.health.answered(self.target),
            Err(StreamingError::Closed(_)) => {}
            Err(e) => {
                if self.health.failed(self.target, e) {
                    self.reconnect();
                }
            }
        }
        result
    }

    fn backoff(&self) -> Backoff {
        // Retry an unreachable peer quickly at first, then every second.
        Backoff::new((1..).map(|n: u64| Duration::from_millis((100 * n).min(1000))))
    }
}

impl Connection {
    async fn send_append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let ttl = option.hard_ttl();
        let entries = rpc.entries.len() as u64;
        let payload = encode_to(&rpc, self.target, self.cluster());
        if entries > 1 && payload.data.len() > MAX_APPEND_BYTES {
            // Ask openraft for a batch that fits: proportionally fewer entries.
            let hint = (entries * MAX_APPEND_BYTES as u64 / payload.data.len() as u64)
                .clamp(1, entries - 1);
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(hint)));
        }
        // The stream is taken while in use: if the exchange fails or times
        // out (a late answer would be taken for the next request's), it is
        // dropped and the next request opens a new one.
        // The client is cloned only to open a stream, not per request.
        let stream = self.append_stream.get_mut().expect("stream slot").take();
        let client = &self.client;
        let call = Exchange::call(stream, payload, |rx| async move {
            let mut client = client
                .clone()
                .map_err(|e| tonic::Status::unavailable(format!("bad peer address: {e}")))?;
            client.append_entries(rx).await
        });
        let reply = match tokio::time::timeout(ttl, call).await {
            Err(_) => return Err(RPCError::Timeout(self.timeout(RPCTypes::AppendEntries, ttl))),
            Ok(Err(status)) => return Err(status_error(status)),
            Ok(Ok((reply, stream))) => {
                *self.append_stream.get_mut().expect("stream slot") = Some(stream);
                reply
            }
        };
        let result: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> =
            decode(&reply).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn send_vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let mut client = self.client()?;
        let ttl = option.hard_ttl();
        let mut request = tonic::Request::new(encode_to(&rpc, self.target, self.cluster()));
        request.set_timeout(ttl);
        let reply = match tokio::time::timeout(ttl, client.vote(request)).await {
            Err(_) => return Err(RPCError::Timeout(self.timeout(RPCTypes::Vote, ttl))),
            Ok(reply) => reply.map_err(status_error)?.into_inner(),
        };
        let result: Result<VoteResponse<NodeId>, RaftError<NodeId>> =
            decode(&reply).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn send_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let mut client = self.client()?;
        let path = snapshot.snapshot.path.clone();
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(4);
        let first = SnapshotChunk {
            vote: Some(encode_to(&vote, self.target, self.cluster())),
            meta: Some(encode(&snapshot.meta)),
            data: Vec::new(),
        };
        // The reader task stops when the stream is dropped (send fails).
        tokio::spawn(async move {
            if tx.send(first).await.is_err() {
                return;
            }
            loop {
                let mut buf = vec![0u8; SNAPSHOT_CHUNK];
                match file.read(&mut buf).await {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx
                            .send(SnapshotChunk { vote: None, meta: None, data: buf })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, path = %path.display(), "reading snapshot to send");
                        return;
                    }
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        // A snapshot of any size must finish within the (generous) snapshot
        // timeout; `cancel` fires when replication to this peer stops.
        let ttl = option.hard_ttl().max(Duration::from_secs(600));
        let call = client.install_snapshot(stream);
        let reply = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = tokio::time::timeout(ttl, call) => match r {
                Err(_) => return Err(StreamingError::Timeout(self.timeout(RPCTypes::InstallSnapshot, ttl))),
                Ok(Err(status)) => return Err(StreamingError::Unreachable(Unreachable::new(&Failure(status.to_string())))),
                Ok(Ok(reply)) => reply.into_inner(),
            },
        };
        let result: Result<SnapshotResponse<NodeId>, Fatal<NodeId>> =
            decode(&reply).map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[cfg(test)]
mod gone_tests {
    use super::proves_gone;
    use crate::types::node_id;

    #[test]
    fn a_refused_connection_or_another_incarnation_proves_a_peer_gone() {
        let target = node_id(2, 0);
        let refused =
            "status: Unavailable, message: \"error trying to connect: tcp connect error: \
                       Connection refused (os error 111)\"";
        assert!(proves_gone(refused, target));
        let replaced = "status: NotFound, message: \"this is node 2.3735928559, not 2.0\"";
        assert!(proves_gone(replaced, target));
        // The same incarnation, another member, or a mere timeout prove nothing.
        assert!(!proves_gone("status: NotFound, message: \"this is node 2.0, not 2.0\"", target));
        assert!(!proves_gone("status: NotFound, message: \"this is node 3.7, not 2.0\"", target));
        assert!(!proves_gone("timeout after 150ms when AppendEntries 1.0->2.0", target));
        assert!(!proves_gone("status: Unavailable, message: \"stream closed\"", target));
    }
}

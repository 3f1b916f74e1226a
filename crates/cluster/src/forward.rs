//! Forwarding writes from a follower to the leader, on one long-lived gRPC
//! stream per leader address.
//!
//! Each forwarded batch gets an id on the stream; a reader task hands each
//! answer to the batch waiting for it, so many batches are in flight at once
//! and answers may come back in any order. A batch that could not be put on a
//! stream was never sent (the caller may retry it anywhere); a batch whose
//! answer never came may or may not have been applied (the caller retries it
//! under the same session and sequence number, which the engine applies at
//! most once).
//!
//! A node that has had no leader for a while may ask a peer to *relay* a
//! batch ([`ForwardRequest::relay`]): a peer that follows a leader passes it
//! on, once, under the origin's session and sequence number. A follower cut
//! off from the leader alone (a bridge partition: it reaches a node that
//! reaches the leader) then keeps serving writes instead of answering
//! `-CLUSTERDOWN` for as long as the partition lasts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftcache_proto::raft::forward_reply::Error as ReplyError;
use raftcache_proto::raft::forward_request::Kind;
use raftcache_proto::raft::{ForwardReply, ForwardRequest};
use raftcache_raft::codec::{decode, decode_bytes, encode};
use raftcache_sm::{Op, Origin, Reply};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::proposer::{propose_local, Attempt};
use super::{Cluster, Leader};

/// Requests queued on one stream before senders wait.
const QUEUE: usize = 1024;
/// How long opening a stream may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(1);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<ForwardReply>>>>;

/// One open stream to a leader.
struct Link {
    requests: mpsc::Sender<ForwardRequest>,
    pending: Pending,
    next_id: AtomicU64,
    /// Cleared when the stream ends; the next forward opens a new one.
    open: Arc<AtomicBool>,
}

/// Where a stream to one address is kept; locked while the stream is
/// opened, so that one address gets one stream.
type LinkSlot = Arc<tokio::sync::Mutex<Option<Arc<Link>>>>;

/// The follower's streams, by leader address.
#[derive(Default)]
pub struct Forwarder {
    /// One slot per address: opening a stream to a leader that does not
    /// answer (cut off, paused) holds only its own slot, never the batches
    /// on their way to another (the new leader).
    links: Mutex<HashMap<String, LinkSlot>>,
}

/// How a forwarded request failed.
pub enum ForwardError {
    /// The receiver did not act on it (not the leader, never sent).
    Refused,
    /// It may have acted on it.
    Unknown,
}

impl Forwarder {
    /// The open stream to `raft_addr`, opening one if needed.
    async fn link(&self, cluster: &Cluster, raft_addr: &str) -> Option<Arc<Link>> {
        let slot: LinkSlot = self
            .links
            .lock()
            .expect("links lock")
            .entry(raft_addr.to_string())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(link) = slot.as_ref() {
            if link.open.load(Ordering::Acquire) {
                return Some(link.clone());
            }
        }
        *slot = None;
        let mut client = cluster.network.client_for(raft_addr).ok()?;
        let (requests, rx) = mpsc::channel(QUEUE);
        let call = client.forward(ReceiverStream::new(rx));
        let mut replies = match tokio::time::timeout(OPEN_TIMEOUT, call).await {
            Ok(Ok(response)) => response.into_inner(),
            _ => return None,
        };
        let link = Arc::new(Link {
            requests,
            pending: Pending::default(),
            next_id: AtomicU64::new(1),
            open: Arc::new(AtomicBool::new(true)),
        });
        let (pending, open) = (link.pending.clone(), link.open.clone());
        tokio::spawn(async move {
            while let Ok(Some(reply)) = replies.message().await {
                if let Some(waiter) = pending.lock().expect("pending lock").remove(&reply.id) {
                    let _ = waiter.send(reply);
                }
            }
            open.store(false, Ordering::Release);
            // Waiters still here never get an answer: dropping their senders
            // tells them the outcome is unknown.
            pending.lock().expect("pending lock").clear();
        });
        *slot = Some(link.clone());
        Some(link)
    }

    /// Forwards a batch of writes to the leader at `raft_addr` (or, with
    /// `relay`, to a peer that passes it on to its leader) and waits for its
    /// replies until `deadline`.
    pub async fn write(
        &self,
        cluster: &Cluster,
        raft_addr: &str,
        origin: Origin,
        ops: &[Op],
        deadline: Instant,
        relay: bool,
    ) -> Result<Vec<Reply>, ForwardError> {
        // Bounded by the deadline: the slot may be held by another batch
        // opening a stream to a peer that does not answer.
        let Ok(Some(link)) =
            tokio::time::timeout_at(deadline.into(), self.link(cluster, raft_addr)).await
        else {
            return Err(ForwardError::Refused);
        };
        let id = link.next_id.fetch_add(1, Ordering::Relaxed);
        let request = ForwardRequest {
            kind: Kind::Write as i32,
            session: origin.session,
            seq: origin.seq,
            ack_below: origin.ack_below,
            commands: to_pb(ops),
            id,
            relay,
        };
        let (tx, rx) = oneshot::channel();
        link.pending.lock().expect("pending lock").insert(id, tx);
        // However this call ends (answered, timed out, or dropped because
        // the caller gave up on this leader), its slot goes.
        let mut slot =
            Slot { link: &link, id, waiting: false, network: &cluster.network, addr: raft_addr };
        let queued = link.open.load(Ordering::Acquire)
            && matches!(
                tokio::time::timeout_at(deadline.into(), link.requests.send(request)).await,
                Ok(Ok(()))
            );
        if !queued {
            // Never handed to the stream (closed, or full until the deadline:
            // the leader is not reading).
            return Err(ForwardError::Refused);
        }
        slot.waiting = true;
        let reply = match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => {
                // The stream ended: the link is closed already.
                slot.waiting = false;
                return Err(ForwardError::Unknown);
            }
            Err(_) => return Err(ForwardError::Unknown),
        };
        slot.waiting = false;
        match ReplyError::try_from(reply.error) {
            Ok(ReplyError::None) => reply
                .replies
                .as_ref()
                .and_then(|r| decode::<Vec<Reply>>(r).ok())
                .ok_or(ForwardError::Unknown),
            Ok(ReplyError::NotLeader) => Err(ForwardError::Refused),
            _ => Err(ForwardError::Unknown),
        }
    }
}

/// A forwarded batch's place in its stream's pending table, freed on drop.
struct Slot<'a> {
    link: &'a Link,
    id: u64,
    /// Sent and not answered yet.
    waiting: bool,
    network: &'a raftcache_raft::network::Network,
    addr: &'a str,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.link.pending.lock().expect("pending lock").remove(&self.id);
        if self.waiting {
            // Given up unanswered (the leader moved, or the deadline passed):
            // the receiver may be gone or its connection stalled (a TCP
            // connection whose packets were dropped in a partition resends
            // only when its backed-off timer fires, seconds after the heal).
            // Later batches to this address go on a new stream over a new
            // connection; answers still due on this one are still taken.
            self.link.open.store(false, Ordering::Release);
            self.network.reconnect(self.addr);
        }
    }
}

/// The batch as it travels: client commands as their arguments, anything
/// else encoded whole.
fn to_pb(ops: &[Op]) -> Vec<raftcache_proto::raft::Command> {
    ops.iter()
        .map(|op| match op {
            Op::Command { db, argv } => {
                raftcache_proto::raft::Command { db: *db, argv: argv.clone(), op: Bytes::new() }
            }
            other => raftcache_proto::raft::Command {
                db: 0,
                argv: Vec::new(),
                op: encode(other).data.into(),
            },
        })
        .collect()
}

/// The operation a forwarded command stands for; `None` if it cannot be
/// decoded (a peer of another version).
fn from_pb(c: raftcache_proto::raft::Command) -> Option<Op> {
    if c.op.is_empty() {
        return Some(Op::Command { db: c.db, argv: c.argv });
    }
    decode_bytes::<Op>(&c.op).ok()
}

/// The leader's side of a follower's stream: each request is proposed in its
/// own task as soon as it arrives and answered when it is done.
pub fn serve(
    cluster: Arc<Cluster>,
    mut requests: tonic::Streaming<ForwardRequest>,
) -> ReceiverStream<Result<ForwardReply, tonic::Status>> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(async move {
        while let Some(Ok(request)) = requests.next().await {
            let (cluster, tx) = (cluster.clone(), tx.clone());
            tokio::spawn(async move {
                let reply = serve_one(&cluster, request).await;
                let _ = tx.send(Ok(reply)).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Proposes one forwarded batch under the origin's session.
async fn serve_one(cluster: &Cluster, request: ForwardRequest) -> ForwardReply {
    let answer =
        |error: ReplyError, replies| ForwardReply { replies, id: request.id, error: error as i32 };
    if Kind::try_from(request.kind) != Ok(Kind::Write) {
        return answer(ReplyError::NotLeader, None);
    }
    let leader = cluster.leader();
    // Not the leader: pass a relay request on to the leader this node
    // follows, if any; refuse anything else.
    let relay_to = match &leader {
        Leader::Me => None,
        Leader::Other { raft_addr, .. } if request.relay => Some(raft_addr.clone()),
        _ => return answer(ReplyError::NotLeader, None),
    };
    let origin =
        Origin { session: request.session, seq: request.seq, ack_below: request.ack_below };
    let Some(ops) = request.commands.into_iter().map(from_pb).collect::<Option<Vec<Op>>>() else {
        // Nothing was proposed: the origin may retry (and fail the same way
        // until the versions agree), but nothing is applied half-understood.
        return answer(ReplyError::NotLeader, None);
    };
    let deadline = Instant::now() + cluster.options.request_timeout;
    if let Some(raft_addr) = relay_to {
        // Once only (the copy is not marked for relaying), under the
        // origin's session and sequence number; given up as soon as this
        // node's leader changes, like a forward of its own.
        let relayed = cluster.forwarder.write(cluster, &raft_addr, origin, &ops, deadline, false);
        return tokio::select! {
            relayed = relayed => match relayed {
                Ok(replies) => answer(ReplyError::None, Some(encode(&replies))),
                Err(ForwardError::Refused) => answer(ReplyError::NotLeader, None),
                Err(ForwardError::Unknown) => answer(ReplyError::Unknown, None),
            },
            () = cluster.leader_moved(&leader) => answer(ReplyError::Unknown, None),
        };
    }
    match propose_local(cluster, origin, Arc::new(ops), deadline).await {
        Attempt::Done(replies) => answer(ReplyError::None, Some(encode(&replies))),
        Attempt::Refused => answer(ReplyError::NotLeader, None),
        Attempt::Unknown => answer(ReplyError::Unknown, None),
        Attempt::Fatal(_) => answer(ReplyError::Unavailable, None),
    }
}

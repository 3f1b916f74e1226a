//! Client-side caching across nodes: a write is acknowledged only once every
//! node whose clients may cache the keys it changes has told them.
//!
//! A client with `CLIENT TRACKING` on caches what it reads and drops a key
//! when its node pushes an invalidation. Every node applies every entry and
//! pushes the invalidations of its own clients, but a node may apply an entry
//! after the leader acknowledged it: a client on that node that reads from its
//! cache right after the writer's reply would see the old value. So:
//!
//! - Each node keeps a *flushed* index: every invalidation caused by entries
//!   up to it has been written to its client's socket. The node's event hub
//!   reports the oldest entry whose invalidations are still on their way
//!   (see `raftcache_node::events`); the flushed index is the applied index
//!   short of that.
//! - A node with tracking clients *registers* with the leader: it reports its
//!   flushed index on a `Tracking` stream whenever it moves, and at least
//!   every [`KEEPALIVE`]. The leader keeps a registration for [`TTL`] after
//!   the last report.
//! - The leader answers a write (its own client's or a forwarded one) only
//!   once its own flushed index and that of every registered node reached
//!   the entry, or the registration ran out ([`Tracking::settle`]).
//! - A read that a tracking client may cache is served only once the node is
//!   registered (a report acknowledged less than [`TTL`] minus [`MARGIN`]
//!   ago, to the current leader): a write acknowledged before the
//!   registration is in the read, one after it waits for this node.
//! - A node whose registration may have run out (no acknowledged report for
//!   `TTL - MARGIN`: it was cut off, paused, or the leader is gone) and a node
//!   whose leader changed tell all their tracking clients to drop their
//!   whole cache (a flush: Redis's `invalidate` with no keys), since writes
//!   may have been acknowledged without waiting for them.
//!
//! What this does not cover: a node paused (or cut off) for longer than
//! [`TTL`] holds up writes for at most that long, after which its clients'
//! caches may be stale until it runs again and flushes them; and a new leader
//! knows no registrations until the nodes hear of it (a heartbeat), so
//! between its first acknowledged write and a tracking node hearing of the
//! new term, that node's clients may read a cached old value. The README
//! states both.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftcache_proto::raft::{TrackingAck, TrackingReport};
use raftcache_raft::network::Exchange;
use raftcache_raft::types::NodeId;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Cluster, Leader};

/// How long the leader keeps a node's registration after its last report.
pub const TTL: Duration = Duration::from_millis(500);
/// A node counts itself unregistered this much before the leader would drop
/// it (the report's trip to the leader, clock rates).
pub const MARGIN: Duration = Duration::from_millis(100);
/// A registered node reports at least this often.
pub const KEEPALIVE: Duration = Duration::from_millis(100);
/// How often a leader waiting for a registered node sends the followers its
/// commit index again.
const NUDGE_EVERY: Duration = Duration::from_millis(2);
/// How long one report may take before the stream is dropped.
const REPORT_TIMEOUT: Duration = Duration::from_millis(400);

/// A registration as the leader keeps it.
#[derive(Clone, Copy, Debug)]
struct Registration {
    flushed: u64,
    until: Instant,
}

/// This node's side of client-side caching across the cluster.
pub struct Tracking {
    /// This node has tracking clients (set by the node).
    active: AtomicBool,
    /// The oldest entry whose invalidations are not all on their sockets
    /// yet (`u64::MAX`: none), set by the node's event hub.
    outstanding: watch::Sender<u64>,
    /// Bumped to ask the node to flush every tracking client's cache.
    flush_all: watch::Sender<u64>,
    /// The leader's side: registered nodes; `reported` is bumped on every
    /// report.
    registered: Mutex<HashMap<NodeId, Registration>>,
    reported: watch::Sender<u64>,
    /// The follower's side: the term of the leader that acknowledged the last
    /// report, and when that report was sent.
    registration: Mutex<Option<(u64, Instant)>>,
    /// Writes whose wait for a node ran out ([`TTL`] with no report that
    /// covers them), for INFO.
    pub timeouts: AtomicU64,
    /// When a timeout was last logged (ms since the epoch).
    warned_ms: std::sync::atomic::AtomicI64,
}

impl Default for Tracking {
    fn default() -> Tracking {
        Tracking {
            active: AtomicBool::new(false),
            outstanding: watch::channel(u64::MAX).0,
            flush_all: watch::channel(0).0,
            registered: Mutex::default(),
            reported: watch::channel(0).0,
            registration: Mutex::default(),
            timeouts: AtomicU64::new(0),
            warned_ms: Default::default(),
        }
    }
}

impl Tracking {
    /// The node has (`true`) or no longer has tracking clients.
    pub fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::Release);
    }

    pub fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// The oldest applied entry whose invalidations are not all on their
    /// sockets yet (`u64::MAX`: none).
    pub fn set_outstanding(&self, oldest: u64) {
        self.outstanding.send_if_modified(|o| std::mem::replace(o, oldest) != oldest);
    }

    /// This node's flushed index. The applied index is read first: every
    /// entry applied by then has registered its invalidations.
    fn flushed(&self, cluster: &Cluster) -> u64 {
        let applied = cluster.sm.read().last_applied.map_or(0, |l| l.index);
        applied.min(self.outstanding.borrow().saturating_sub(1))
    }

    /// Changes each time the node must flush every tracking client's cache.
    pub fn flush_requests(&self) -> watch::Receiver<u64> {
        self.flush_all.subscribe()
    }

    fn request_flush(&self) {
        self.flush_all.send_modify(|n| *n += 1);
        *self.registration.lock().expect("registration lock") = None;
    }

    /// The leader's side of a report from `report.from`.
    pub(crate) fn register(&self, cluster: &Cluster, report: &TrackingReport) -> bool {
        let term = cluster.raft().metrics().borrow().current_term;
        if cluster.leader() != Leader::Me || report.term != term {
            return false;
        }
        let mut registered = self.registered.lock().expect("registered lock");
        if report.active {
            let r = registered
                .entry(report.from)
                .or_insert(Registration { flushed: 0, until: Instant::now() });
            r.flushed = r.flushed.max(report.flushed);
            r.until = Instant::now() + TTL;
        } else {
            registered.remove(&report.from);
        }
        drop(registered);
        self.reported.send_modify(|n| *n += 1);
        true
    }

    /// The leader's side of a write it applied at `index`: waits until this
    /// node's clients and every registered node's have been told of it (or a
    /// registration ran out). While a registered node has yet to catch up,
    /// `cluster`'s Raft sends the followers a heartbeat with the commit index, at once
    /// and every [`NUDGE_EVERY`] (openraft tells a follower whose ack did
    /// not commit the entry only with the next heartbeat, up to 100 ms
    /// later; a nudge that reaches it before the entry does is lost).
    pub async fn settle(&self, index: u64, cluster: &Cluster) {
        if !self.active() && self.registered.lock().expect("registered lock").is_empty() {
            return;
        }
        let mut reported = self.reported.subscribe();
        let mut outstanding = self.outstanding.subscribe();
        let started = Instant::now();
        let mut nudged: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let local = self.active() && *outstanding.borrow_and_update() <= index;
            reported.borrow_and_update();
            let until = {
                let mut registered = self.registered.lock().expect("registered lock");
                registered.retain(|_, r| r.until > now);
                registered.values().filter(|r| r.flushed < index).map(|r| r.until).min()
            };
            if !local && until.is_none() {
                return;
            }
            if until.is_some() && nudged.is_none_or(|at| at.elapsed() >= NUDGE_EVERY) {
                let _ = cluster.raft().trigger().heartbeat().await;
                nudged = Some(Instant::now());
            }
            // Never longer than a registration lasts: a node whose clients
            // do not read their sockets must not stop every write.
            let give_up = until.unwrap_or(started + TTL).min(started + TTL);
            if now >= give_up {
                let timeouts = self.timeouts.fetch_add(1, Ordering::Relaxed);
                let ms = crate::clock::now_ms();
                if ms - self.warned_ms.swap(ms, Ordering::Relaxed) < 1000 {
                    return;
                }
                let waiting: Vec<(NodeId, u64)> = {
                    let registered = self.registered.lock().expect("registered lock");
                    registered.iter().map(|(id, r)| (*id, r.flushed)).collect()
                };
                tracing::warn!(
                    index,
                    local_outstanding = *outstanding.borrow(),
                    ?waiting,
                    timeouts = timeouts + 1,
                    "a write stopped waiting for tracking clients to be told of it"
                );
                return;
            }
            let wake = match nudged {
                Some(at) if until.is_some() => give_up.min(at + NUDGE_EVERY),
                _ => give_up,
            };
            tokio::select! {
                _ = reported.changed() => {}
                _ = outstanding.changed() => {}
                () = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    /// The nodes registered with this leader now.
    pub fn registered_count(&self) -> usize {
        let now = Instant::now();
        self.registered.lock().expect("registered lock").values().filter(|r| r.until > now).count()
    }

    /// True if this node may let its tracking clients cache a read: it leads,
    /// or the leader it follows acknowledged a report of its less than
    /// `TTL - MARGIN` ago.
    fn registered_with(&self, term: u64) -> bool {
        self.registration
            .lock()
            .expect("registration lock")
            .is_some_and(|(t, sent)| t == term && sent.elapsed() < TTL - MARGIN)
    }
}

impl Cluster {
    /// Waits until a read this node serves now may be cached by a tracking
    /// client: this node is registered with the leader (see the module
    /// docs). Gives up after request-timeout (the read then fails as reads
    /// without a leader do).
    pub async fn tracking_ready(&self) -> Result<(), super::ClusterError> {
        let deadline = Instant::now() + self.options.request_timeout;
        let mut stream = None;
        loop {
            let leader = self.wait_for_leader(deadline).await?;
            let term = self.raft().metrics().borrow().current_term;
            match leader {
                Leader::Me => return Ok(()),
                Leader::Other { raft_addr, .. } => {
                    if self.tracking.registered_with(term) {
                        return Ok(());
                    }
                    let (ok, s) = self.report_tracking(stream.take(), &raft_addr, term).await;
                    stream = s;
                    if ok {
                        return Ok(());
                    }
                }
                Leader::Unknown => {}
            }
            if Instant::now() >= deadline {
                return Err(super::ClusterError::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends one report to the leader at `raft_addr` (on `stream` if open)
    /// and records the registration if acknowledged.
    async fn report_tracking(
        &self,
        stream: Option<Exchange<TrackingReport, TrackingAck>>,
        raft_addr: &str,
        term: u64,
    ) -> (bool, Option<Exchange<TrackingReport, TrackingAck>>) {
        let report = TrackingReport {
            from: self.node_id,
            term,
            flushed: self.tracking.flushed(self),
            active: self.tracking.active(),
        };
        let sent = Instant::now();
        let network = self.network.clone();
        let addr = raft_addr.to_string();
        let call = Exchange::call(stream, report, |rx| async move {
            let mut client =
                network.client_for(&addr).map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            client.tracking(rx).await
        });
        match tokio::time::timeout(REPORT_TIMEOUT, call).await {
            Ok(Ok((_, exchange))) => {
                let mut r = self.tracking.registration.lock().expect("registration lock");
                if r.is_none_or(|(t, s)| t != term || s < sent) {
                    *r = Some((term, sent));
                }
                (true, Some(exchange))
            }
            _ => (false, None),
        }
    }
}

/// Keeps this node registered with the leader while it has tracking clients,
/// reporting its flushed index as it moves, and asks the node to flush its
/// clients' caches when its registration may have run out or its leader
/// changed. Runs until `shutdown`.
pub async fn run(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    let mut outstanding = cluster.tracking.outstanding.subscribe();
    let mut metrics = cluster.raft().metrics();
    let mut stream: Option<(String, Exchange<TrackingReport, TrackingAck>)> = None;
    let mut last_term = 0;
    let mut was_active = false;
    // The flushed index last acknowledged by the leader, and when it was
    // sent: the leader hears again when it moves or a keepalive is due, not
    // on every metrics change.
    let mut last_report: Option<(u64, Instant)> = None;
    loop {
        let active = cluster.tracking.active();
        let term = cluster.raft().metrics().borrow().current_term;
        if active && term != last_term && last_term != 0 {
            // Writes of the new leader may not have waited for this node.
            cluster.tracking.request_flush();
        }
        last_term = term;
        let leader = cluster.leader();
        let registered = cluster.tracking.registration.lock().expect("registration lock").is_some();
        if active && registered && !cluster.tracking.registered_with(term) {
            cluster.tracking.request_flush();
        }
        if let (true, Leader::Other { raft_addr, .. }) = (active || was_active, &leader) {
            let flushed = cluster.tracking.flushed(&cluster);
            let open = stream.take().filter(|(a, _)| a == raft_addr).map(|(_, s)| s);
            let current = open.is_some()
                && active == was_active
                && last_report.is_some_and(|(f, at)| f == flushed && at.elapsed() < KEEPALIVE);
            if current {
                stream = open.map(|s| (raft_addr.clone(), s));
            } else {
                let sent = Instant::now();
                let (ok, s) = cluster.report_tracking(open, raft_addr, term).await;
                stream = s.map(|s| (raft_addr.clone(), s));
                last_report = ok.then_some((flushed, sent));
                if ok || !active {
                    was_active = active;
                }
            }
        } else if leader == Leader::Me {
            stream = None;
            was_active = false;
            last_report = None;
        }
        outstanding.borrow_and_update();
        if active {
            // Applies move the flushed index too (a re-form replaces Raft).
            metrics = cluster.raft().metrics();
            metrics.borrow_and_update();
        }
        tokio::select! {
            _ = outstanding.changed(), if active => {}
            _ = metrics.changed(), if active => {}
            () = tokio::time::sleep(KEEPALIVE) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

//! The node's side of the engine's events: who waits for what, and the
//! pushes that tell them.
//!
//! The engine reports events beside its replies (`raftcache_sm::event`);
//! the state machine hands each applied entry's events to [`Hub::dispatch`],
//! in log order, on every node. The hub keeps this node's registry —
//! pub/sub subscriptions of its connections today — and sends each
//! connection what concerns it as a [`Push`] on the connection's channel; the
//! connection writes it between replies.
//!
//! Messages travel through the log (PUBLISH is a write), so the subscribers
//! of a channel on every node see its messages once each, in the same order.
//! A node delivers only messages of entries it applies while they are fresh
//! ([`FRESHNESS`]): a node that was cut off, or restarts and replays its log,
//! does not deliver old messages late (Redis's pub/sub is at-most-once; a
//! subscriber misses what was published while its node could not keep up).
//!
//! Keyspace notifications are messages on `__keyspace@<db>__:<key>` and
//! `__keyevent@<db>__:<event>`, made here from the engine's
//! `Event::Keyspace` as `notify-keyspace-events` asks (`K`, `E`).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use raftcache_raft::state_machine::Applied;
use raftcache_sm::blocked::WaiterId;
use raftcache_sm::event::Notify;
use raftcache_sm::glob;
use raftcache_sm::{Event, Reply};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;

/// Redis's `client-output-buffer-limit pubsub 32mb 8mb 60`: a connection
/// with more than [`HARD_LIMIT`] bytes of pushes waiting, or more than
/// [`SOFT_LIMIT`] for [`SOFT_SECONDS`], is closed (a subscriber that stops
/// reading must not make the node's memory grow without bound).
pub const HARD_LIMIT: usize = 32 << 20;
/// See [`HARD_LIMIT`].
pub const SOFT_LIMIT: usize = 8 << 20;
/// See [`HARD_LIMIT`].
pub const SOFT_SECONDS: i64 = 60;

/// Messages of entries older than this (by the entry's time against this
/// node's clock) are not delivered: they are history, not news.
pub const FRESHNESS_MS: i64 = 5_000;

/// What a connection receives without asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Push {
    /// `message` / `smessage` (`pattern` None) or `pmessage` (with the
    /// pattern that matched). `notification`: a keyspace notification, not
    /// a PUBLISH.
    Message {
        kind: &'static str,
        pattern: Option<Bytes>,
        channel: Bytes,
        payload: Bytes,
        notification: bool,
    },
    /// Client-side caching: these keys changed (`None`: everything, a
    /// flush). A RESP3 `invalidate` push, or in RESP2 a message on
    /// `__redis__:invalidate` for a subscribed connection.
    Invalidate { keys: Option<Vec<Bytes>> },
    /// The client that tracking redirects to is gone (RESP3 only).
    RedirectBroken { to: u64 },
}

impl Push {
    /// Roughly the bytes it takes in an output buffer.
    fn size(&self) -> usize {
        match self {
            Push::Message { pattern, channel, payload, .. } => {
                40 + pattern.as_ref().map_or(0, Bytes::len) + channel.len() + payload.len()
            }
            Push::Invalidate { keys } => {
                24 + keys.iter().flatten().map(|k| k.len() + 16).sum::<usize>()
            }
            Push::RedirectBroken { .. } => 40,
        }
    }
}

/// The pushes waiting for one connection, counted in bytes.
#[derive(Default)]
struct Backlog {
    bytes: AtomicUsize,
    /// When the backlog went over the soft limit (ms; 0: it is not over).
    over_soft_since: AtomicU64,
}

/// A connection's push channel as the hub holds it.
struct Outlet {
    tx: mpsc::UnboundedSender<Push>,
    backlog: Arc<Backlog>,
    /// Closes the connection (set when it starts serving).
    close: Option<CancellationToken>,
    /// Pushes sent so far (the next one's number).
    sent: AtomicU64,
    gate: Arc<Gate>,
}

/// The invalidations a connection holds up the writes that caused them for
/// (see `raftcache_cluster::tracking`): each holds its entry's [`Ticket`]
/// until the connection has written it to the socket, unless the
/// connection is *busy*. A busy connection has read commands whose replies
/// its client waits for; it writes the invalidations waiting for it with
/// those replies, and holding them up would deadlock a connection that
/// waits for its own write to be acknowledged.
#[derive(Default)]
struct Gate {
    busy: AtomicBool,
    count: AtomicUsize,
    /// (push number, ticket), in push order.
    held: Mutex<VecDeque<(u64, Ticket)>>,
}

impl Gate {
    fn hold(&self, seq: u64, ticket: Ticket) {
        let mut held = self.held.lock().expect("gate lock");
        held.push_back((seq, ticket));
        self.count.store(held.len(), Ordering::SeqCst);
        // Paired with `set_busy`: one of the two sees the other.
        if self.busy.load(Ordering::SeqCst) {
            held.clear();
            self.count.store(0, Ordering::SeqCst);
        }
    }

    fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::SeqCst);
        if busy && self.count.load(Ordering::SeqCst) > 0 {
            let mut held = self.held.lock().expect("gate lock");
            held.clear();
            self.count.store(0, Ordering::SeqCst);
        }
    }

    /// Pushes numbered below `written` are on the socket.
    fn release(&self, written: u64) {
        if self.count.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut held = self.held.lock().expect("gate lock");
        while held.front().is_some_and(|(seq, _)| *seq < written) {
            held.pop_front();
        }
        self.count.store(held.len(), Ordering::SeqCst);
    }
}

/// One applied entry's claim on the node's flushed index: while any clone
/// lives (held by a connection's [`Gate`]), some invalidation of that entry
/// is not on its socket yet.
type Ticket = Arc<Pending>;

struct Pending {
    index: u64,
    flushed: Arc<Flushed>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.flushed.done(self.index);
    }
}

/// The entries whose invalidations are on their way, and where the oldest
/// of them is reported (the cluster's tracking, see
/// `raftcache_cluster::tracking`).
#[derive(Default)]
pub struct Flushed {
    pending: Mutex<BTreeSet<u64>>,
    report: std::sync::OnceLock<Box<dyn Fn(u64) + Send + Sync>>,
}

impl Flushed {
    /// Where the oldest pending entry (`u64::MAX`: none) is reported.
    pub fn set_report(&self, report: Box<dyn Fn(u64) + Send + Sync>) {
        let _ = self.report.set(report);
    }

    fn begin(self: &Arc<Self>, index: u64) -> Ticket {
        let mut pending = self.pending.lock().expect("flushed lock");
        pending.insert(index);
        self.report_oldest(&pending);
        Arc::new(Pending { index, flushed: self.clone() })
    }

    fn done(&self, index: u64) {
        let mut pending = self.pending.lock().expect("flushed lock");
        pending.remove(&index);
        self.report_oldest(&pending);
    }

    /// Reports the oldest pending entry (called with the lock held, so that
    /// reports arrive in order).
    fn report_oldest(&self, pending: &BTreeSet<u64>) {
        if let Some(report) = self.report.get() {
            report(pending.first().copied().unwrap_or(u64::MAX));
        }
    }
}

/// A connection's end of its push channel.
pub struct Pushes {
    rx: mpsc::UnboundedReceiver<Push>,
    backlog: Arc<Backlog>,
    /// Pushes taken from the channel so far.
    received: u64,
    gate: Arc<Gate>,
}

impl Pushes {
    fn taken(&mut self, push: &Push) {
        self.received += 1;
        let left = self.backlog.bytes.fetch_sub(push.size(), Ordering::Relaxed) - push.size();
        if left <= SOFT_LIMIT {
            self.backlog.over_soft_since.store(0, Ordering::Relaxed);
        }
    }

    /// Every push taken so far is written to the socket.
    pub fn written(&self) {
        self.gate.release(self.received);
    }

    /// The connection is busy serving commands (`true`) or waits for the
    /// next (see [`Gate`]).
    pub fn set_busy(&self, busy: bool) {
        self.gate.set_busy(busy);
    }

    /// The next push (None once the hub let go of the channel).
    pub async fn recv(&mut self) -> Option<Push> {
        let push = self.rx.recv().await?;
        self.taken(&push);
        Some(push)
    }

    /// A push already waiting, if any.
    pub fn try_recv(&mut self) -> Option<Push> {
        let push = self.rx.try_recv().ok()?;
        self.taken(&push);
        Some(push)
    }
}

/// A connection's CLIENT TRACKING settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tracking {
    /// The client that receives the invalidations (0: this one).
    pub redirect: u64,
    pub bcast: bool,
    pub prefixes: Vec<Bytes>,
    pub optin: bool,
    pub optout: bool,
    pub noloop: bool,
}

/// Which registry a subscription is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Channel,
    Pattern,
    Shard,
}

/// What a blocked connection hears while it waits.
#[derive(Debug)]
pub enum Wakeup {
    /// The engine served it (`served`) or timed it out: `reply` is its
    /// command's answer (see `raftcache_sm::blocked`).
    Unblocked { reply: Reply, served: bool },
    /// CLIENT UNBLOCK: answer with the timeout reply, or (`error`) with
    /// `-UNBLOCKED`.
    Cancel { error: bool },
}

#[derive(Default)]
struct Registry {
    /// Each subscribed connection's push channel.
    conns: HashMap<u64, Outlet>,
    /// Blocked connections of this node: by waiter, and the waiter of each
    /// client id (for CLIENT UNBLOCK).
    waiters: HashMap<WaiterId, mpsc::UnboundedSender<Wakeup>>,
    blocked_clients: HashMap<u64, WaiterId>,
    /// Client-side caching: each tracking client's settings, and the keys
    /// clients in the default mode read (until their next change).
    tracking: HashMap<u64, Tracking>,
    tracked: HashMap<Bytes, BTreeSet<u64>>,
    /// (client, key) changes a NOLOOP client made itself: not reported back.
    own_writes: HashMap<(u64, Bytes), usize>,
    channels: BTreeMap<Bytes, BTreeSet<u64>>,
    patterns: BTreeMap<Bytes, BTreeSet<u64>>,
    shard: BTreeMap<Bytes, BTreeSet<u64>>,
    /// The ticket of the entry being dispatched, while some client tracks.
    ticket: Option<Ticket>,
}

impl Registry {
    fn map(&mut self, kind: Kind) -> &mut BTreeMap<Bytes, BTreeSet<u64>> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard,
        }
    }

    fn send(&self, id: u64, push: Push) {
        let Some(out) = self.conns.get(&id) else { return };
        if out.close.as_ref().is_some_and(CancellationToken::is_cancelled) {
            return;
        }
        let size = push.size();
        let bytes = out.backlog.bytes.fetch_add(size, Ordering::Relaxed) + size;
        let over = if bytes > HARD_LIMIT {
            true
        } else if bytes > SOFT_LIMIT {
            let now = now_ms().max(1) as u64;
            let since = match out.backlog.over_soft_since.compare_exchange(
                0,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => now,
                Err(since) => since,
            };
            now.saturating_sub(since) >= SOFT_SECONDS as u64 * 1000
        } else {
            false
        };
        if over {
            if let Some(close) = &out.close {
                tracing::warn!(
                    client = id,
                    bytes,
                    "client scheduled to be closed ASAP for overcoming of output buffer limits"
                );
                close.cancel();
                return;
            }
        }
        // Held before it is sent: the connection may write it at once.
        // (A send fails only once the connection is gone, and its gate with
        // it.)
        let seq = out.sent.fetch_add(1, Ordering::Relaxed);
        if let (Push::Invalidate { .. }, Some(ticket)) = (&push, &self.ticket) {
            out.gate.hold(seq, ticket.clone());
        }
        let _ = out.tx.send(push);
    }

    /// Delivers a message to this node's subscribers; returns how many
    /// connections received it (PUBLISH's reply, counted here).
    fn deliver(&self, channel: &Bytes, payload: &Bytes, shard: bool, notification: bool) -> usize {
        let mut received = 0;
        let message = |kind, pattern| Push::Message {
            kind,
            pattern,
            channel: channel.clone(),
            payload: payload.clone(),
            notification,
        };
        if shard {
            for &id in self.shard.get(channel).into_iter().flatten() {
                self.send(id, message("smessage", None));
                received += 1;
            }
            return received;
        }
        for &id in self.channels.get(channel).into_iter().flatten() {
            self.send(id, message("message", None));
            received += 1;
        }
        for (pattern, ids) in &self.patterns {
            if glob::matches(pattern, channel) {
                for &id in ids {
                    self.send(id, message("pmessage", Some(pattern.clone())));
                    received += 1;
                }
            }
        }
        received
    }

    /// Sends an invalidation for `client` (to it, or where it redirects).
    fn invalidate(&self, client: u64, keys: Option<Vec<Bytes>>) {
        let Some(t) = self.tracking.get(&client) else { return };
        if t.redirect == 0 {
            self.send_any(client, Push::Invalidate { keys });
        } else if self.conns.contains_key(&t.redirect) {
            self.send_any(t.redirect, Push::Invalidate { keys });
        } else {
            self.send_any(client, Push::RedirectBroken { to: t.redirect });
        }
    }

    /// Every tracking client forgets its cache: an `invalidate` with no keys.
    fn flush_caches(&mut self) {
        self.tracked.clear();
        let ids: Vec<u64> = self.tracking.keys().copied().collect();
        for id in ids {
            self.invalidate(id, None);
        }
    }

    fn send_any(&self, id: u64, push: Push) {
        self.send(id, push);
    }

    /// A key changed: the clients that read it (default mode, one shot) and
    /// the broadcast clients whose prefixes match are told.
    fn key_changed(&mut self, key: Bytes) {
        let mut told: Vec<u64> =
            self.tracked.remove(&key).map(|s| s.into_iter().collect()).unwrap_or_default();
        for (id, t) in &self.tracking {
            if t.bcast && (t.prefixes.is_empty() || t.prefixes.iter().any(|p| key.starts_with(p))) {
                told.push(*id);
            }
        }
        for id in told {
            if let Some(n) = self.own_writes.get_mut(&(id, key.clone())) {
                *n -= 1;
                if *n == 0 {
                    self.own_writes.remove(&(id, key.clone()));
                }
                continue;
            }
            self.invalidate(id, Some(vec![key.clone()]));
        }
    }

    fn receivers(&self, channel: &[u8], shard: bool) -> usize {
        if shard {
            return self.shard.get(channel).map_or(0, BTreeSet::len);
        }
        let direct = self.channels.get(channel).map_or(0, BTreeSet::len);
        let by_pattern: usize = self
            .patterns
            .iter()
            .filter(|(p, _)| glob::matches(p, channel))
            .map(|(_, ids)| ids.len())
            .sum();
        direct + by_pattern
    }
}

/// This node's registry of connections waiting for events.
#[derive(Default)]
pub struct Hub {
    registry: Mutex<Registry>,
    /// Entries whose invalidations are on their way to their sockets.
    pub flushed: Arc<Flushed>,
    /// Numbers this node's waiters (with the proposer's session).
    next_waiter: AtomicU64,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Gives connection `id` a push channel (once, at its first
    /// subscription); the connection reads the receiver.
    pub fn attach(&self, id: u64) -> Pushes {
        let (tx, rx) = mpsc::unbounded_channel();
        let backlog = Arc::new(Backlog::default());
        let gate = Arc::new(Gate::default());
        let outlet = Outlet {
            tx,
            backlog: backlog.clone(),
            close: None,
            sent: AtomicU64::new(0),
            gate: gate.clone(),
        };
        self.lock().conns.insert(id, outlet);
        Pushes { rx, backlog, received: 0, gate }
    }

    /// The token that closes connection `id` if its pushes pile up past the
    /// output buffer limits.
    pub fn set_close(&self, id: u64, close: CancellationToken) {
        if let Some(out) = self.lock().conns.get_mut(&id) {
            out.close = Some(close);
        }
    }

    /// Forgets connection `id` and all its subscriptions.
    pub fn detach(&self, id: u64) {
        let mut guard = self.lock();
        let r = &mut *guard;
        r.tracking.remove(&id);
        r.tracked.retain(|_, ids| {
            ids.remove(&id);
            !ids.is_empty()
        });
        r.own_writes.retain(|(c, _), _| *c != id);
        if r.conns.remove(&id).is_none() {
            return;
        }
        for map in [&mut r.channels, &mut r.patterns, &mut r.shard] {
            map.retain(|_, ids| {
                ids.remove(&id);
                !ids.is_empty()
            });
        }
    }

    /// Subscribes `id` to `name`; false if it already was.
    pub fn subscribe(&self, id: u64, kind: Kind, name: &Bytes) -> bool {
        self.lock().map(kind).entry(name.clone()).or_default().insert(id)
    }

    /// Unsubscribes `id` from `name`; false if it was not subscribed.
    pub fn unsubscribe(&self, id: u64, kind: Kind, name: &[u8]) -> bool {
        let mut r = self.lock();
        let map = r.map(kind);
        let Some(ids) = map.get_mut(name) else { return false };
        let removed = ids.remove(&id);
        if ids.is_empty() {
            map.remove(name);
        }
        removed
    }

    /// How many connections of this node would receive a message on
    /// `channel` (PUBLISH's reply, like Redis Cluster's: this node only).
    pub fn receivers(&self, channel: &[u8], shard: bool) -> usize {
        self.lock().receivers(channel, shard)
    }

    /// PUBSUB CHANNELS / SHARDCHANNELS: channels with subscribers here
    /// matching `pattern` (all without one).
    pub fn channels(&self, kind: Kind, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let mut r = self.lock();
        r.map(kind)
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob::matches(p, c)))
            .cloned()
            .collect()
    }

    /// PUBSUB NUMSUB / SHARDNUMSUB: subscribers here of `name`.
    pub fn count(&self, kind: Kind, name: &[u8]) -> usize {
        self.lock().map(kind).get(name).map_or(0, BTreeSet::len)
    }

    /// PUBSUB NUMPAT: patterns subscribed here (by any number of clients).
    pub fn patterns(&self) -> usize {
        self.lock().patterns.len()
    }

    /// Turns tracking on for `client` (settings already checked), or
    /// changes it. True if any client of this node tracks keys now.
    pub fn track(&self, client: u64, settings: Tracking) -> bool {
        let mut r = self.lock();
        r.tracking.insert(client, settings);
        true
    }

    /// Turns tracking off for `client`; true if some client still tracks.
    pub fn untrack(&self, client: u64) -> bool {
        let mut r = self.lock();
        r.tracking.remove(&client);
        r.tracked.retain(|_, ids| {
            ids.remove(&client);
            !ids.is_empty()
        });
        r.own_writes.retain(|(c, _), _| *c != client);
        !r.tracking.is_empty()
    }

    /// Number of clients of this node that track keys.
    pub fn tracking_count(&self) -> usize {
        self.lock().tracking.len()
    }

    /// Number of clients of this node with a pub/sub subscription.
    pub fn subscribed_count(&self) -> usize {
        let r = self.lock();
        let mut ids: BTreeSet<u64> = BTreeSet::new();
        for map in [&r.channels, &r.patterns, &r.shard] {
            ids.extend(map.values().flatten());
        }
        ids.len()
    }

    /// True if some client of this node tracks keys.
    pub fn tracking(&self) -> bool {
        !self.lock().tracking.is_empty()
    }

    /// True if connection `id` exists here with a push channel or may get
    /// one (a redirect target must be a client of this node).
    pub fn has_push_channel(&self, id: u64) -> bool {
        self.lock().conns.contains_key(&id)
    }

    /// Remembers that `client` read `keys` (default tracking mode): their
    /// next change invalidates them. Call it while the engine's state is
    /// locked for the read, so no change between the read and this is
    /// missed.
    pub fn remember(&self, client: u64, keys: impl IntoIterator<Item = Bytes>) {
        let mut r = self.lock();
        for key in keys {
            r.tracked.entry(key).or_default().insert(client);
        }
    }

    /// A NOLOOP client is about to write `keys`: their next change is its
    /// own and is not reported to it.
    pub fn own_write(&self, client: u64, keys: impl IntoIterator<Item = Bytes>) {
        let mut r = self.lock();
        for key in keys {
            *r.own_writes.entry((client, key)).or_default() += 1;
        }
    }

    /// A new waiter id for a connection of this node that is about to block
    /// (`session`: the node's proposer session), and the channel its
    /// wakeups arrive on. Registered before the `Op::Block` is proposed, so
    /// a serve in the same entry is not missed.
    pub fn block(&self, session: u64, client: u64) -> (WaiterId, mpsc::UnboundedReceiver<Wakeup>) {
        let id = WaiterId { session, seq: self.next_waiter.fetch_add(1, Ordering::Relaxed) };
        let (tx, rx) = mpsc::unbounded_channel();
        let mut r = self.lock();
        r.waiters.insert(id, tx);
        r.blocked_clients.insert(client, id);
        (id, rx)
    }

    /// The connection stopped waiting.
    pub fn unblocked(&self, id: WaiterId, client: u64) {
        let mut r = self.lock();
        r.waiters.remove(&id);
        if r.blocked_clients.get(&client) == Some(&id) {
            r.blocked_clients.remove(&client);
        }
    }

    /// Number of connections of this node blocked now.
    pub fn blocked_count(&self) -> usize {
        self.lock().waiters.len()
    }

    /// CLIENT UNBLOCK: wakes client `client` if it is blocked; false if not.
    pub fn cancel(&self, client: u64, error: bool) -> bool {
        let r = self.lock();
        let Some(id) = r.blocked_clients.get(&client) else { return false };
        r.waiters.get(id).is_some_and(|tx| tx.send(Wakeup::Cancel { error }).is_ok())
    }

    /// Takes the events of one applied entry (called by the state machine,
    /// in log order, while it applies: it only looks up and sends). Returns
    /// the waiters of this node's `session` that were served but whose
    /// connection no longer waits (it timed out, disconnected … and its
    /// `Op::Unblock` did not commit first): the caller gives those back at
    /// once rather than leave them to the pending timeout.
    pub fn dispatch(&self, applied: Applied, session: u64) -> Vec<WaiterId> {
        let mut orphans = Vec::new();
        let notify = applied.notify;
        let fresh = now_ms() - applied.time_ms <= FRESHNESS_MS;
        let mut r = self.lock();
        // While some client tracks keys, the writes of this entry wait for
        // its invalidations to reach their sockets (see `Gate`).
        let ticket = (!r.tracking.is_empty()).then(|| self.flushed.begin(applied.index));
        r.ticket = ticket.clone();
        for event in applied.events {
            match event {
                // Caches must hear of every change, however late.
                Event::Modified { key, .. } => {
                    if !r.tracking.is_empty() {
                        r.key_changed(key);
                    }
                }
                Event::Flushed { .. } => r.flush_caches(),
                // Not news but the answer a blocked client waits for: never
                // dropped for age (a waiter of another node is not here).
                Event::Unblocked { waiter, reply, served } => {
                    let sent = r
                        .waiters
                        .get(&waiter)
                        .is_some_and(|tx| tx.send(Wakeup::Unblocked { reply, served }).is_ok());
                    if !sent && served && waiter.session == session {
                        orphans.push(waiter);
                    }
                }
                _ if !fresh || r.conns.is_empty() => {}
                Event::Message { channel, message, shard } => {
                    r.deliver(&channel, &message, shard, false);
                }
                Event::Keyspace { db, event, key, .. } => {
                    let name = Bytes::from_static(event.as_bytes());
                    if notify.0 & Notify::KEYSPACE != 0 {
                        let mut channel = format!("__keyspace@{db}__:").into_bytes();
                        channel.extend_from_slice(&key);
                        r.deliver(&Bytes::from(channel), &name, false, true);
                    }
                    if notify.0 & Notify::KEYEVENT != 0 {
                        let channel = Bytes::from(format!("__keyevent@{db}__:{event}"));
                        r.deliver(&channel, &key, false, true);
                    }
                }
            }
        }
        r.ticket = None;
        drop(r);
        drop(ticket);
        orphans
    }

    /// Tells every tracking client of this node to drop its whole cache
    /// (the node's writes may have been acknowledged without waiting for
    /// it: see `raftcache_cluster::tracking`).
    pub fn flush_caches(&self) {
        self.lock().flush_caches();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn messages_reach_channel_and_pattern_subscribers_and_are_counted() {
        let hub = Hub::default();
        let mut one = hub.attach(1);
        let mut two = hub.attach(2);
        assert!(hub.subscribe(1, Kind::Channel, &b("news")));
        assert!(!hub.subscribe(1, Kind::Channel, &b("news")));
        assert!(hub.subscribe(2, Kind::Pattern, &b("n*")));
        assert_eq!(hub.receivers(b"news", false), 2);
        let applied = Applied {
            index: 1,
            time_ms: now_ms(),
            events: vec![Event::Message { channel: b("news"), message: b("hi"), shard: false }],
            notify: Notify::default(),
        };
        hub.dispatch(applied, 0);
        assert_eq!(
            one.try_recv().unwrap(),
            Push::Message {
                kind: "message",
                pattern: None,
                channel: b("news"),
                payload: b("hi"),
                notification: false
            }
        );
        assert_eq!(
            two.try_recv().unwrap(),
            Push::Message {
                kind: "pmessage",
                pattern: Some(b("n*")),
                channel: b("news"),
                payload: b("hi"),
                notification: false
            }
        );
        hub.detach(1);
        assert_eq!(hub.receivers(b"news", false), 1);
        assert_eq!(hub.channels(Kind::Channel, None), Vec::<Bytes>::new());
    }

    #[test]
    fn stale_entries_are_not_delivered() {
        let hub = Hub::default();
        let mut rx = hub.attach(1);
        hub.subscribe(1, Kind::Channel, &b("c"));
        let old = Applied {
            index: 1,
            time_ms: now_ms() - FRESHNESS_MS - 1000,
            events: vec![Event::Message { channel: b("c"), message: b("old"), shard: false }],
            notify: Notify::default(),
        };
        hub.dispatch(old, 0);
        assert!(rx.try_recv().is_none());
    }

    /// Entry `index` changed `key`.
    fn changed(index: u64, key: &str) -> Applied {
        Applied {
            index,
            time_ms: now_ms(),
            events: vec![Event::Modified { db: 0, key: b(key) }],
            notify: Notify::default(),
        }
    }

    /// The hub with its oldest pending entry recorded in a cell.
    fn watched_hub() -> (Hub, Arc<AtomicU64>) {
        let hub = Hub::default();
        let oldest = Arc::new(AtomicU64::new(u64::MAX));
        let cell = oldest.clone();
        hub.flushed.set_report(Box::new(move |o| cell.store(o, Ordering::SeqCst)));
        (hub, oldest)
    }

    #[test]
    fn an_invalidation_holds_its_entry_until_the_connection_wrote_it() {
        let (hub, oldest) = watched_hub();
        let mut rx = hub.attach(1);
        hub.track(1, Tracking::default());
        hub.remember(1, [b("k")]);
        hub.dispatch(changed(7, "k"), 0);
        // Pending: sent, not yet taken and written.
        assert_eq!(hub.flushed.pending.lock().unwrap().first(), Some(&7));
        let push = rx.try_recv().unwrap();
        assert_eq!(push, Push::Invalidate { keys: Some(vec![b("k")]) });
        assert_eq!(hub.flushed.pending.lock().unwrap().first(), Some(&7));
        rx.written();
        assert!(hub.flushed.pending.lock().unwrap().is_empty());
        assert_eq!(oldest.load(Ordering::SeqCst), u64::MAX);
        // An entry that tells nobody (the key is no longer tracked) holds
        // nothing.
        hub.dispatch(changed(8, "k"), 0);
        assert!(hub.flushed.pending.lock().unwrap().is_empty());
    }

    #[test]
    fn a_busy_connection_holds_nothing_up() {
        let (hub, _) = watched_hub();
        let mut rx = hub.attach(1);
        hub.track(1, Tracking::default());
        hub.remember(1, [b("a"), b("b")]);
        // Sent while idle, then the connection reads a command: released.
        hub.dispatch(changed(3, "a"), 0);
        assert_eq!(hub.flushed.pending.lock().unwrap().first(), Some(&3));
        rx.set_busy(true);
        assert!(hub.flushed.pending.lock().unwrap().is_empty());
        // Sent while busy: never held.
        hub.dispatch(changed(4, "b"), 0);
        assert!(hub.flushed.pending.lock().unwrap().is_empty());
        assert!(rx.try_recv().is_some() && rx.try_recv().is_some());
    }

    #[test]
    fn entries_are_released_in_any_order_and_the_oldest_is_reported() {
        let (hub, oldest) = watched_hub();
        let mut one = hub.attach(1);
        let mut two = hub.attach(2);
        hub.track(1, Tracking::default());
        hub.track(2, Tracking::default());
        hub.remember(1, [b("x")]);
        hub.remember(2, [b("y")]);
        hub.dispatch(changed(10, "x"), 0);
        hub.dispatch(changed(11, "y"), 0);
        two.try_recv().unwrap();
        two.written();
        // 11 is written but 10 is not: 10 is still the oldest.
        assert_eq!(oldest.load(Ordering::SeqCst), 10);
        one.try_recv().unwrap();
        one.written();
        assert_eq!(oldest.load(Ordering::SeqCst), u64::MAX);
        // A connection that goes away releases what it held.
        hub.remember(1, [b("x")]);
        hub.dispatch(changed(12, "x"), 0);
        assert_eq!(oldest.load(Ordering::SeqCst), 12);
        drop(one);
        hub.detach(1);
        assert_eq!(oldest.load(Ordering::SeqCst), u64::MAX);
    }
}

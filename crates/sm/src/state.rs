//! [`State`]: the whole engine, and the only way to change it, [`State::apply`].
//!
//! # The contract
//!
//! `apply` is a pure function of the current state and its arguments: it reads no
//! clock, draws no randomness and does no I/O. Time, randomness and the log index
//! all come from the [`Stamp`] of the log entry. Feed two engines the same
//! sequence of `(Stamp, Op)` and they hold byte-identical state, which
//! [`State::digest`](crate::snapshot) proves cheaply.
//!
//! Time is monotonic: each entry is applied at `max(stamp.time_ms, clock)`, so a
//! new leader with a slower clock never makes expired keys reappear. TTL accuracy
//! is therefore bounded by the clock skew between nodes.
//!
//! Errors a command returns (WRONGTYPE, syntax, overflow …) are deterministic
//! replies, the same on every node. Nothing in `apply` can fail in a way that
//! differs between nodes.
//!
//! [`State::query`] serves reads with `&self`: a read can never change state,
//! whatever the command, because the type system gives it no way to.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::blocked::{
    Blocked, GiveBack, Pending, Waiter, WaiterId, MAX_WAITERS, PENDING_TIMEOUT_MS,
};
use crate::cmd::blocking;
use crate::cmd::scripting::{Scripts, VmCell};
use crate::command::{self, Kind};
use crate::db::Db;
use crate::encodings::Encodings;
use crate::event::{Class, Event, Notify, Outbox};
use crate::locks::{Locks, LOCK_DB};
use crate::memory::{MemoryConfig, Policy, Stat, Victim};
use crate::reply::Reply;
use crate::session::{Check, Origin, Sessions};
use crate::unsafe_switches::EngineSwitches;

/// Number of logical databases (SELECT 0..15), as Redis's default.
pub const DATABASES: usize = 16;

/// What a log entry supplies besides the operation: its index, the leader's
/// wall-clock time when it was proposed, and a seed for anything random.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub index: u64,
    pub time_ms: i64,
    pub seed: u64,
}

/// An operation carried by a log entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// A client command (its argv as sent) against database `db`.
    Command { db: u32, argv: Vec<Bytes> },
    /// Active expiry: physically removes up to `limit` keys, earliest first,
    /// that are expired at the entry's time. Proposed by the leader's reaper.
    PurgeExpired { limit: u32 },
    /// Does nothing but advance the applied index and the clock.
    Noop,
    /// Names the cluster, once: the first leader proposes a random id, and a
    /// node refuses a data directory written for another cluster.
    SetClusterId { id: u64 },
    /// A transaction (MULTI … EXEC): the queued commands, applied together in
    /// this one entry unless a watched key changed after its mark, in which
    /// case none is and the reply is a null array. The reply is EXEC's array.
    Exec { watches: Vec<Watch>, calls: Vec<Call> },
    /// CONFIG SET of a cluster-wide parameter (`notify-keyspace-events` …):
    /// every replica changes it at the same index. The reply is CONFIG SET's.
    Config { name: String, value: Bytes },
    /// A blocking command (BLPOP …) from a client that may block: served now
    /// if a key has data (the command's reply), else the client is queued
    /// ([`Reply::Blocked`]) until a later entry serves it (see
    /// [`crate::blocked`]).
    Block { waiter: WaiterId, db: u32, argv: Vec<Bytes> },
    /// The waiter's node gives up on it (`gone`: its client left, timed out
    /// or was unblocked): removed from the queues (reply 1), or, if it was
    /// served and not yet confirmed, the element is given back (reply 2);
    /// 0 if neither.
    Unblock { waiter: WaiterId },
    /// The waiter's node confirms it hands the served element to its client:
    /// 1, or 0 if it was given back meanwhile.
    Delivered { waiter: WaiterId },
    /// Keys (database, key) that a node's clients read, recorded as accesses
    /// while an LRU or LFU `maxmemory-policy` is in force, so that reads on
    /// every node count when eviction picks its victims (since entry format
    /// 2). Nothing else changes; the reply is OK.
    Touch { keys: Vec<(u32, Bytes)> },
}

/// A parsed value of a cluster-wide parameter (see [`Op::Config`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicatedConfig {
    Notify(Notify),
    Encodings(Encodings),
    Memory(MemoryConfig),
}

/// True if `argv` names a command that may grow memory (Redis's `denyoom`).
fn may_grow(argv: &[Bytes]) -> bool {
    command::lookup(&argv[0]).is_some_and(|spec| crate::memory::denyoom(spec.name))
}

/// True if `name` is a cluster-wide parameter (set through the log).
pub fn is_replicated_config(name: &str) -> bool {
    name == "notify-keyspace-events" || Encodings::knows(name) || MemoryConfig::knows(name)
}

/// One queued command of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub db: u32,
    pub argv: Vec<Bytes>,
}

/// A WATCHed key: the log index a node had applied when it read the key
/// (`mark`), and whether the key was visible then. EXEC aborts if the key
/// changed after the mark (see [`Db::changed_since`]). A mark from a node that
/// lags only makes a change more likely to count, never less.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    pub db: u32,
    pub key: Bytes,
    pub mark: u64,
    pub seen: bool,
}

/// The payload of one log entry: what the leader proposed, with the time and
/// randomness every replica will use to apply it. Its encoding carries the
/// log-entry format version (see [`crate::format`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Proposal {
    /// The leader's wall-clock time when it proposed the entry (ms).
    pub time_ms: i64,
    /// Seed for anything random in the operations.
    pub seed: u64,
    /// The session and sequence number for duplicate suppression, if the
    /// proposal may be retried.
    pub origin: Option<Origin>,
    /// The operations, applied in order as one unit; one reply each. Shared:
    /// the log, replication and apply each hold the entry, and cloning it
    /// must not copy every argument vector (serialized as a plain sequence).
    pub ops: Arc<Vec<Op>>,
}

/// How often (in log entries) idle sessions are swept.
const SESSION_SWEEP_EVERY: u64 = 1024;

/// A small deterministic PRNG (SplitMix64) seeded from a log entry.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        (self.next_u64() % n as u64) as usize
    }
}

/// What a write handler sees: mutable databases and the entry's stamp.
pub struct Exec<'a> {
    pub dbs: &'a mut [Db],
    /// Where [`Exec::notify`] records events, and which it records.
    pub events: &'a mut Vec<Event>,
    pub notify: Notify,
    /// Record [`Event::Modified`] (some client of this node tracks keys).
    pub track: bool,
    /// The replicated script cache and this node's interpreter.
    pub scripts: &'a mut Scripts,
    pub vm: &'a VmCell,
    /// Locks, and the blocked clients (lock waiters among them).
    pub locks: &'a mut Locks,
    pub blocked: &'a mut Blocked,
    /// The client's selected database.
    pub db: usize,
    /// The entry's effective time (monotonic).
    pub now: i64,
    /// Randomness derived from the entry's seed.
    pub rng: Rng,
    /// The entry's log index (fencing tokens use it).
    pub index: u64,
    /// The cluster-wide memory parameters, and whether memory was still over
    /// `maxmemory` after eviction when the entry's command began (Redis's
    /// `pre_command_oom_state`: a script's `denyoom` calls then fail).
    pub memory: MemoryConfig,
    pub oom: bool,
    /// Keys evicted by this node's engine (INFO `evicted_keys`).
    pub evicted: &'a mut Stat,
    /// Test-only switches (see [`crate::unsafe_switches`]).
    pub unsafe_switches: EngineSwitches,
}

impl Exec<'_> {
    /// Redis's `performEvictions`, before a command: settles the accounting,
    /// then evicts keys chosen by the policy until the used memory is at or
    /// under `maxmemory`. Returns false if it is still over (`noeviction`, or
    /// nothing left that the policy may evict).
    pub fn make_room(&mut self) -> bool {
        let limit = self.memory.maxmemory;
        if limit == 0 {
            return true;
        }
        let mode = self.memory.access_mode();
        let draw = self.rng.next_u64();
        self.dbs.iter_mut().for_each(|db| db.settle(mode, self.now, draw));
        while self.dbs.iter().map(Db::used).sum::<u64>() > limit {
            if self.memory.policy == Policy::NoEviction {
                return false;
            }
            let Some(victim) = self.victim() else { return false };
            self.dbs[victim.db].remove(&victim.key);
            self.modified_in(victim.db, &victim.key);
            self.notify_in(victim.db, Class::Evicted, "evicted", &victim.key);
            self.evicted.0 += 1;
        }
        true
    }

    /// The key the policy evicts next: the best of `maxmemory-samples` keys
    /// sampled from every database with keys (the entry's randomness, so
    /// every replica picks the same one).
    fn victim(&mut self) -> Option<Victim> {
        let policy = self.memory.policy;
        let (now, samples) = (self.now, self.memory.samples as usize);
        if policy == Policy::VolatileTtl {
            return (0..self.dbs.len())
                .filter_map(|db| {
                    let key = self.dbs[db].soonest_expiring(now)?;
                    Some((self.dbs[db].expire_at(key, now)?, db, key.clone()))
                })
                .min()
                .map(|(_, db, key)| Victim { db, key });
        }
        let decay = self.memory.lfu_decay_time;
        let mut best: Option<(i64, Victim)> = None;
        for db in 0..self.dbs.len() {
            let n = if matches!(policy, Policy::AllkeysRandom | Policy::VolatileRandom) {
                1
            } else {
                samples
            };
            let mut rng = Rng::new(self.rng.next_u64());
            for (key, obj) in self.dbs[db].sample(&mut rng, n, policy.volatile(), now) {
                // Larger is a better victim.
                let score = if policy.lfu() {
                    255 - i64::from(crate::memory::lfu_decayed(obj, now, decay))
                } else if policy.lru() {
                    i64::from(crate::memory::seconds(now)) - i64::from(obj.access)
                } else {
                    (rng.next_u64() >> 2) as i64
                };
                if best.as_ref().is_none_or(|(s, _)| score > *s) {
                    best = Some((score, Victim { db, key: key.clone() }));
                }
            }
        }
        best.map(|(_, v)| v)
    }

    /// The selected database.
    #[inline]
    pub fn db(&mut self) -> &mut Db {
        &mut self.dbs[self.db]
    }

    /// Redis's `signalModifiedKey`: the command changed `key` in the selected
    /// database (WATCH sees it; the key's version becomes this entry's index,
    /// or a tombstone records it if the key is gone). Call it wherever Redis
    /// 7.0 calls `signalModifiedKey`, after the change.
    #[inline]
    pub fn modified(&mut self, key: &[u8]) {
        let db = self.db;
        self.modified_in(db, key);
    }

    /// [`Exec::modified`] for a key in database `db`.
    pub fn modified_in(&mut self, db: usize, key: &[u8]) {
        let index = self.index;
        self.dbs[db].touch(key, index);
        if self.track {
            self.events.push(Event::Modified { db: db as u32, key: Bytes::copy_from_slice(key) });
        }
    }

    /// A database (`Some`) or all of them were flushed: tracked keys go.
    pub fn flushed(&mut self, db: Option<usize>) {
        if self.track {
            self.events.push(Event::Flushed { db: db.map(|d| d as u32) });
        }
    }

    /// Redis's `notifyKeyspaceEvent` for a key in the selected database:
    /// records an [`Event::Keyspace`] if `class` is enabled. Call it where
    /// Redis 7.0 calls `notifyKeyspaceEvent`, with Redis's event name.
    #[inline]
    pub fn notify(&mut self, class: Class, event: &'static str, key: &[u8]) {
        let db = self.db;
        self.notify_in(db, class, event, key);
    }

    /// [`Exec::notify`] for a key in database `db`.
    #[inline]
    pub fn notify_in(&mut self, db: usize, class: Class, event: &'static str, key: &[u8]) {
        if self.notify.wants(class) {
            // Keys the command found expired come first, as in Redis (they
            // expire when the command looks them up).
            flush_expired(self.dbs, self.events, self.notify, self.track);
            let key = Bytes::copy_from_slice(key);
            self.events.push(Event::Keyspace { db: db as u32, class, event, key });
        }
    }

    /// A read view of the same state at the same time.
    pub fn as_query(&self) -> Query<'_> {
        Query {
            dbs: self.dbs,
            scripts: self.scripts,
            vm: self.vm,
            locks: self.locks,
            blocked: self.blocked,
            db: self.db,
            now: self.now,
            rng: self.rng.clone(),
            memory: self.memory,
        }
    }
}

/// Turns the keys the databases removed because they expired into
/// `expired` keyspace events and key changes, as far as each is wanted.
fn flush_expired(dbs: &mut [Db], events: &mut Vec<Event>, notify: Notify, track: bool) {
    let keyspace = notify.wants(Class::Expired);
    for (i, db) in dbs.iter_mut().enumerate() {
        for key in db.expired_keys.drain(..) {
            if keyspace {
                events.push(Event::Keyspace {
                    db: i as u32,
                    class: Class::Expired,
                    event: "expired",
                    key: key.clone(),
                });
            }
            if track {
                events.push(Event::Modified { db: i as u32, key });
            }
        }
        // Hashes that lost expired fields: `hexpired`, then `del` if the
        // hash went (Redis's active and lazy field expiry).
        for (key, gone) in db.expired_fields.drain(..) {
            if notify.wants(Class::Hash) {
                events.push(Event::Keyspace {
                    db: i as u32,
                    class: Class::Hash,
                    event: "hexpired",
                    key: key.clone(),
                });
            }
            if gone && notify.wants(Class::Generic) {
                events.push(Event::Keyspace {
                    db: i as u32,
                    class: Class::Generic,
                    event: "del",
                    key: key.clone(),
                });
            }
            if track {
                events.push(Event::Modified { db: i as u32, key });
            }
        }
    }
}

/// What a read handler sees: shared databases and the time of the read.
pub struct Query<'a> {
    pub dbs: &'a [Db],
    pub scripts: &'a Scripts,
    pub vm: &'a VmCell,
    pub locks: &'a Locks,
    pub blocked: &'a Blocked,
    pub db: usize,
    pub now: i64,
    pub rng: Rng,
    /// The memory parameters (OBJECT FREQ/IDLETIME depend on the policy).
    pub memory: MemoryConfig,
}

impl<'a> Query<'a> {
    /// The selected database. The reference lives as long as the data, not
    /// the query, so `q.rng` stays usable while it is held.
    #[inline]
    pub fn db(&self) -> &'a Db {
        &self.dbs[self.db]
    }
}

/// The engine: sixteen databases, the replicated clock and the applied index.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub(crate) dbs: Vec<Db>,
    pub(crate) clock_ms: i64,
    pub(crate) applied_index: u64,
    pub(crate) sessions: Sessions,
    /// The cluster's id (0 until the first leader sets it).
    pub(crate) cluster_id: u64,
    /// Which keyspace events are recorded (`notify-keyspace-events`).
    pub(crate) notify: Notify,
    /// The encoding thresholds (`hash-max-listpack-entries` …).
    pub(crate) encodings: Encodings,
    /// The script cache (EVAL, SCRIPT LOAD): replicated.
    pub(crate) scripts: Scripts,
    /// This node's Lua interpreter: not replicated (see [`VmCell`]).
    pub(crate) vm: VmCell,
    /// Blocked clients and served elements not yet confirmed: replicated.
    pub(crate) blocked: Blocked,
    /// Held locks (LOCK.ACQUIRE): replicated.
    pub(crate) locks: Locks,
    /// Events of the entries applied since the last [`State::take_events`]:
    /// output, not state (see [`crate::event`]).
    pub(crate) events: Outbox,
    /// `maxmemory` and the eviction policy: replicated (see [`crate::memory`]).
    pub(crate) memory: MemoryConfig,
    /// Keys this engine evicted: statistics.
    pub(crate) evicted: Stat,
    /// Test-only switches (see [`crate::unsafe_switches`]): not replicated,
    /// set alike on every node by its flags.
    pub(crate) unsafe_switches: EngineSwitches,
}

impl Default for State {
    fn default() -> Self {
        State {
            dbs: vec![Db::default(); DATABASES],
            clock_ms: 0,
            applied_index: 0,
            sessions: Sessions::default(),
            cluster_id: 0,
            notify: Notify::default(),
            encodings: Encodings::default(),
            scripts: Scripts::default(),
            vm: VmCell::default(),
            blocked: Blocked::default(),
            locks: Locks::default(),
            events: Outbox::default(),
            memory: MemoryConfig::default(),
            evicted: Stat::default(),
            unsafe_switches: EngineSwitches::default(),
        }
    }
}

impl State {
    pub fn new() -> State {
        State::default()
    }

    /// Turns the engine's test-only switches on or off (see
    /// [`crate::unsafe_switches`]): the caller sets the same ones on every
    /// replica, and again on every engine that replaces this one.
    pub fn set_unsafe_switches(&mut self, switches: EngineSwitches) {
        self.unsafe_switches = switches;
    }

    /// The engine's test-only switches.
    pub fn unsafe_switches(&self) -> EngineSwitches {
        self.unsafe_switches
    }

    /// Applies the proposal of the log entry at `index`: one reply per
    /// operation. A duplicate of an applied proposal (same origin session and
    /// sequence number) is not applied again and gets the first replies; a
    /// stale one (its origin gave up on it) is not applied at all.
    pub fn apply_proposal(&mut self, index: u64, p: &Proposal) -> Vec<Reply> {
        self.encodings.enter();
        self.clock_ms = self.clock_ms.max(p.time_ms);
        self.applied_index = index;
        if index.is_multiple_of(SESSION_SWEEP_EVERY) {
            let gone = self.sessions.expire_idle(self.clock_ms);
            if !gone.is_empty() && !self.blocked.is_empty() {
                self.drop_sessions_waiters(&gone, index);
            }
        }
        if let Some(origin) = &p.origin {
            match self.sessions.check(origin, self.clock_ms) {
                Check::Fresh => {}
                Check::Duplicate(replies) => return replies,
                Check::Stale => {
                    let stale =
                        Reply::err("ERR request expired before it was applied; it was not applied");
                    return vec![stale; p.ops.len()];
                }
            }
        }
        let replies: Vec<Reply> = p
            .ops
            .iter()
            .enumerate()
            .map(|(i, op)| {
                let stamp =
                    Stamp { index, time_ms: p.time_ms, seed: p.seed.wrapping_add(i as u64) };
                self.apply(&stamp, op)
            })
            .collect();
        if let Some(origin) = &p.origin {
            self.sessions.record(origin, &replies);
        }
        replies
    }

    /// Applies one operation and returns the client's reply. Pure: see the
    /// module docs. `stamp.index` becomes the applied index.
    pub fn apply(&mut self, stamp: &Stamp, op: &Op) -> Reply {
        self.encodings.enter();
        self.clock_ms = self.clock_ms.max(stamp.time_ms);
        self.applied_index = stamp.index;
        let now = self.clock_ms;
        let reply = self.apply_op(op, now, stamp);
        if !self.blocked.waiters.is_empty() {
            self.serve_ready(now, stamp);
        }
        let mode = self.memory.access_mode();
        let draw = stamp.seed.rotate_left(29) ^ stamp.index;
        self.dbs.iter_mut().for_each(|db| db.settle(mode, now, draw));
        if self.expiry_tracked() {
            flush_expired(&mut self.dbs, &mut self.events.0, self.notify, self.events.1);
        }
        reply
    }

    /// An `Exec` over the whole state for the engine's own work (serving
    /// waiters, giving back), in database `db`.
    fn exec_in(&mut self, db: usize, now: i64, stamp: &Stamp) -> Exec<'_> {
        Exec {
            dbs: &mut self.dbs,
            events: &mut self.events.0,
            notify: self.notify,
            track: self.events.1,
            scripts: &mut self.scripts,
            vm: &self.vm,
            locks: &mut self.locks,
            blocked: &mut self.blocked,
            db,
            now,
            rng: Rng::new(stamp.seed ^ stamp.index.rotate_left(17)),
            index: stamp.index,
            memory: self.memory,
            oom: false,
            evicted: &mut self.evicted,
            unsafe_switches: self.unsafe_switches,
        }
    }

    /// Serves the waiters of keys that commands created, in the order they
    /// blocked, until no key that has waiters has data (Redis's
    /// `handleClientsBlockedOnKeys`; serving may create keys in turn).
    fn serve_ready(&mut self, now: i64, stamp: &Stamp) {
        loop {
            let Some((db, key)) = self.next_ready() else { return };
            while let Some(waiter) = self.blocked.first(db as u32, &key) {
                let Some(w) = self.blocked.waiters.get(&waiter).cloned() else { break };
                let Ok(b) = blocking::parse(&w.argv, now) else {
                    self.blocked.remove(waiter);
                    self.sync_awaited(&w);
                    continue;
                };
                let mut x = self.exec_in(db, now, stamp);
                let Some((reply, give_back)) = blocking::serve_key(&mut x, &b, &key) else {
                    break;
                };
                self.blocked.remove(waiter);
                self.sync_awaited(&w);
                self.blocked.pending.insert(waiter, Pending { at: now, give_back });
                self.events.0.push(Event::Unblocked { waiter, reply, served: true });
            }
        }
    }

    /// The next key marked ready in any database.
    fn next_ready(&mut self) -> Option<(usize, Bytes)> {
        for (i, db) in self.dbs.iter_mut().enumerate() {
            if !db.ready.is_empty() {
                return Some((i, db.ready.remove(0)));
            }
        }
        None
    }

    /// Keeps each database's set of awaited keys equal to the keys that have
    /// waiters, after `w` left its queues.
    fn sync_awaited(&mut self, w: &Waiter) {
        let Some(db) = self.dbs.get_mut(w.db as usize) else { return };
        for key in &w.keys {
            if !self.blocked.has_waiters(w.db, key) {
                db.awaited.remove(key);
            }
        }
    }

    /// `Op::Block`: serves now or queues the client.
    fn apply_block(
        &mut self,
        waiter: WaiterId,
        db: usize,
        argv: &[Bytes],
        now: i64,
        stamp: &Stamp,
    ) -> Reply {
        if db >= self.dbs.len() {
            return Reply::err(crate::reply::errors::DB_INDEX);
        }
        let spec = match command::lookup_checked(argv) {
            Ok(spec) => spec,
            Err(reply) => return reply,
        };
        if !blocking::blocks(spec.name) {
            return self.apply_command(db, argv, now, stamp, true);
        }
        let b = match blocking::parse(argv, now) {
            Ok(b) => b,
            Err(e) => return e,
        };
        if crate::memory::denyoom(spec.name) && !self.make_room(now, stamp) {
            return Reply::err(crate::memory::OOM);
        }
        // A node never reuses a waiter id; if one comes again, the old
        // entry goes first so the queues stay consistent.
        if let Some(old) = self.blocked.remove(waiter) {
            self.sync_awaited(&old);
        }
        let mut x = self.exec_in(db, now, stamp);
        match blocking::try_now(&mut x, &b) {
            Err(e) => e,
            Ok(Some((reply, _))) => reply,
            Ok(None) if self.blocked.waiters.len() >= MAX_WAITERS || b.timeout_ms.is_none() => {
                b.timed_out()
            }
            Ok(None) => {
                let timeout = b.timeout_ms.unwrap_or(0);
                let deadline = if timeout == 0 { 0 } else { now.saturating_add(timeout) };
                let queue_db = if b.is_lock() { LOCK_DB } else { db as u32 };
                if !b.is_lock() {
                    for key in &b.keys {
                        self.dbs[db].awaited.insert(key.clone());
                    }
                }
                let w = Waiter { db: queue_db, argv: argv.to_vec(), keys: b.keys, deadline };
                self.blocked.add(waiter, w);
                Reply::Blocked
            }
        }
    }

    /// `Op::Unblock`: see its docs.
    fn apply_unblock(&mut self, waiter: WaiterId, now: i64, stamp: &Stamp) -> Reply {
        if let Some(w) = self.blocked.remove(waiter) {
            self.sync_awaited(&w);
            return Reply::Int(1);
        }
        if let Some(p) = self.blocked.pending.remove(&waiter) {
            let mut x = self.exec_in(0, now, stamp);
            blocking::give_back(&mut x, &p.give_back);
            return Reply::Int(2);
        }
        Reply::Int(0)
    }

    /// `Op::Delivered`: 1 if the waiter's node may hand the served element
    /// to its client. A lock grant must still be the lock's holder with its
    /// lease running (its lease may have ended while the waiter's node was
    /// paused, and the lock gone to the next waiter); its lease then starts
    /// over from this entry, so the client gets the lease it asked for from
    /// the moment it is told.
    fn apply_delivered(&mut self, waiter: WaiterId, now: i64) -> Reply {
        let Some(p) = self.blocked.pending.remove(&waiter) else { return Reply::Int(0) };
        if let GiveBack::Lock { name, token } = &p.give_back {
            match self.locks.held.get_mut(name) {
                Some(lock) if lock.token == *token && lock.held(now) => {
                    let ttl = lock.expires_at - p.at;
                    lock.expires_at = now.saturating_add(ttl);
                }
                _ => return Reply::Int(0),
            }
        }
        Reply::Int(1)
    }

    /// Times out waiters past their deadline and gives back elements whose
    /// node never confirmed them (the leader's purge entries).
    fn purge_blocked(&mut self, now: i64, stamp: &Stamp) {
        let late: Vec<WaiterId> = self
            .blocked
            .waiters
            .iter()
            .filter(|(_, w)| w.deadline > 0 && w.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for waiter in late {
            if let Some(w) = self.blocked.remove(waiter) {
                self.sync_awaited(&w);
                let reply =
                    blocking::parse(&w.argv, now).map_or(Reply::NilArray, |b| b.timed_out());
                self.events.0.push(Event::Unblocked { waiter, reply, served: false });
            }
        }
        let unconfirmed: Vec<WaiterId> = self
            .blocked
            .pending
            .iter()
            .filter(|(_, p)| p.at + PENDING_TIMEOUT_MS <= now)
            .map(|(id, _)| *id)
            .collect();
        // A node that did not confirm within the pending timeout is likely
        // gone: its other waiters leave the queues first, so the element goes
        // to a live client rather than to each dead one for another timeout.
        // A live node's clients hear `Reply::Blocked` and block again.
        let silent: BTreeSet<u64> = unconfirmed.iter().map(|w| w.session).collect();
        let parked: Vec<WaiterId> =
            self.blocked.waiters.keys().filter(|w| silent.contains(&w.session)).copied().collect();
        for waiter in parked {
            if let Some(w) = self.blocked.remove(waiter) {
                self.sync_awaited(&w);
                self.events.0.push(Event::Unblocked {
                    waiter,
                    reply: Reply::Blocked,
                    served: false,
                });
            }
        }
        for waiter in unconfirmed {
            if let Some(p) = self.blocked.pending.remove(&waiter) {
                let mut x = self.exec_in(0, now, stamp);
                blocking::give_back(&mut x, &p.give_back);
            }
        }
    }

    /// Drops the waiters (and gives back the unconfirmed elements) of origin
    /// sessions the engine forgot.
    fn drop_sessions_waiters(&mut self, sessions: &[u64], index: u64) {
        let stamp = Stamp { index, time_ms: self.clock_ms, seed: index };
        let now = self.clock_ms;
        let mine = |id: &WaiterId| sessions.contains(&id.session);
        let waiters: Vec<WaiterId> =
            self.blocked.waiters.keys().filter(|id| mine(id)).copied().collect();
        for waiter in waiters {
            if let Some(w) = self.blocked.remove(waiter) {
                self.sync_awaited(&w);
            }
        }
        let pending: Vec<WaiterId> =
            self.blocked.pending.keys().filter(|id| mine(id)).copied().collect();
        for waiter in pending {
            if let Some(p) = self.blocked.pending.remove(&waiter) {
                let mut x = self.exec_in(0, now, &stamp);
                blocking::give_back(&mut x, &p.give_back);
            }
        }
    }

    fn apply_op(&mut self, op: &Op, now: i64, stamp: &Stamp) -> Reply {
        match op {
            Op::Command { db, argv } => self.apply_command(*db as usize, argv, now, stamp, true),
            Op::PurgeExpired { limit } => {
                let mut left = *limit as usize;
                let mut removed = 0;
                for db in &mut self.dbs {
                    let n = db.purge_expired(now, left);
                    left -= n;
                    removed += n;
                    let n = db.purge_expired_fields(now, left, stamp.index);
                    left -= n;
                    removed += n;
                }
                if !self.blocked.is_empty() {
                    self.purge_blocked(now, stamp);
                }
                if !self.locks.is_empty() {
                    let mut x = self.exec_in(0, now, stamp);
                    crate::cmd::locks::purge(&mut x);
                }
                Reply::Int(removed as i64)
            }
            Op::Block { waiter, db, argv } => {
                self.apply_block(*waiter, *db as usize, argv, now, stamp)
            }
            Op::Unblock { waiter } => self.apply_unblock(*waiter, now, stamp),
            Op::Delivered { waiter } => self.apply_delivered(*waiter, now),
            Op::Touch { keys } => {
                let mode = self.memory.access_mode();
                if mode != crate::memory::Access::Off {
                    let mut rng = Rng::new(stamp.seed ^ stamp.index.rotate_left(7));
                    for (db, key) in keys {
                        if let Some(db) = self.dbs.get_mut(*db as usize) {
                            db.touch_access(key, mode, now, rng.next_u64());
                        }
                    }
                }
                Reply::Ok
            }
            Op::Exec { watches, calls } => self.apply_exec(watches, calls, now, stamp),
            Op::Config { name, value } => self.apply_config(name, value),
            Op::Noop => Reply::Ok,
            Op::SetClusterId { id } => {
                if self.cluster_id == 0 && *id != 0 {
                    self.cluster_id = *id;
                    Reply::Int(1)
                } else {
                    Reply::Int(0)
                }
            }
        }
    }

    /// Sets a cluster-wide parameter; the checks and error texts are CONFIG
    /// SET's (the node checks first too, so a bad value rarely gets here).
    fn apply_config(&mut self, name: &str, value: &[u8]) -> Reply {
        match self.check_config(name, value) {
            Ok(ReplicatedConfig::Notify(flags)) => {
                self.set_notify(flags);
                Reply::Ok
            }
            Ok(ReplicatedConfig::Encodings(e)) => {
                self.encodings = e;
                e.enter();
                Reply::Ok
            }
            Ok(ReplicatedConfig::Memory(m)) => {
                self.set_memory(m);
                Reply::Ok
            }
            Err(e) => e,
        }
    }

    /// Parses a value of a cluster-wide parameter against this state, with
    /// CONFIG SET's error.
    pub fn check_config(&self, name: &str, value: &[u8]) -> Result<ReplicatedConfig, Reply> {
        let failed = |msg: &str| {
            Reply::error(format!(
                "ERR CONFIG SET failed (possibly related to argument '{name}') - {msg}"
            ))
        };
        match name {
            "notify-keyspace-events" => Notify::parse(value)
                .map(ReplicatedConfig::Notify)
                .ok_or_else(|| failed("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")),
            _ if Encodings::knows(name) => {
                let mut e = self.encodings;
                e.set(name, value).map_err(|msg| failed(&msg))?;
                Ok(ReplicatedConfig::Encodings(e))
            }
            _ if MemoryConfig::knows(name) => {
                let mut m = self.memory;
                m.set(name, value).map_err(|msg| failed(&msg))?;
                Ok(ReplicatedConfig::Memory(m))
            }
            _ => Err(Reply::error(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
            ))),
        }
    }

    /// The value of a cluster-wide parameter as CONFIG GET shows it.
    pub fn config_value(&self, name: &str) -> Option<String> {
        match name {
            "notify-keyspace-events" => Some(self.notify.to_text()),
            _ if MemoryConfig::knows(name) => self.memory.get(name),
            _ => self.encodings.get(name),
        }
    }

    /// The memory parameters in force.
    pub fn memory(&self) -> MemoryConfig {
        self.memory
    }

    /// Changes the memory parameters; access information is dropped when the
    /// new policy keeps none or another kind (LRU times are not LFU counts).
    pub(crate) fn set_memory(&mut self, m: MemoryConfig) {
        let before = self.memory.access_mode();
        self.memory = m;
        let after = m.access_mode();
        if std::mem::discriminant(&before) != std::mem::discriminant(&after) {
            self.dbs.iter_mut().for_each(Db::clear_access);
        }
    }

    /// The bytes the engine accounts for all keys (INFO `used_memory`).
    pub fn used_memory(&self) -> u64 {
        self.dbs.iter().map(Db::used).sum()
    }

    /// The bytes accounted for one key (MEMORY USAGE), if it is visible at
    /// local time `now_ms`.
    pub fn key_memory(&self, db: usize, key: &[u8], now_ms: i64) -> Option<u64> {
        let now = self.read_time(now_ms);
        self.dbs.get(db)?.object(key, now).map(|o| o.mem)
    }

    /// Keys this engine evicted since it started (INFO `evicted_keys`).
    pub fn evicted_keys(&self) -> u64 {
        self.evicted.0
    }

    /// The encoding thresholds in force.
    pub fn encodings(&self) -> Encodings {
        self.encodings
    }

    /// Restores the encoding thresholds from a snapshot.
    pub(crate) fn set_encodings(&mut self, e: Encodings) {
        self.encodings = e;
    }

    /// EXEC: checks the watches, then applies every call in order at the same
    /// index and time; each call gets its own seed.
    fn apply_exec(&mut self, watches: &[Watch], calls: &[Call], now: i64, stamp: &Stamp) -> Reply {
        if self.watch_broken(watches, now) {
            return Reply::NilArray;
        }
        // As Redis's processCommand for EXEC: evict first, and refuse the
        // whole transaction if it has a command that may grow memory and
        // memory is still over the limit.
        let room = self.make_room(now, stamp);
        if !room && calls.iter().any(|c| may_grow(&c.argv)) {
            return Reply::err(crate::memory::OOM);
        }
        let replies = calls
            .iter()
            .enumerate()
            .map(|(i, call)| {
                let stamp = Stamp { seed: stamp.seed.wrapping_add(i as u64 + 1), ..*stamp };
                self.apply_command(call.db as usize, &call.argv, now, &stamp, false)
            })
            .collect();
        Reply::Array(replies)
    }

    /// True if a watched key changed after its mark (EXEC must abort).
    fn watch_broken(&self, watches: &[Watch], now: i64) -> bool {
        watches.iter().any(|w| {
            self.dbs
                .get(w.db as usize)
                .is_none_or(|db| db.changed_since(&w.key, w.mark, w.seen, now))
        })
    }

    /// WATCH: marks for `keys` of database `db`, read at local time
    /// `now_ms` (see [`State::read_time`]) and the applied index.
    pub fn watch_marks(&self, db: usize, keys: &[Bytes], now_ms: i64) -> Vec<Watch> {
        let now = self.read_time(now_ms);
        keys.iter()
            .map(|key| Watch {
                db: db as u32,
                key: key.clone(),
                mark: self.applied_index,
                seen: self.dbs.get(db).is_some_and(|d| d.contains(key, now)),
            })
            .collect()
    }

    /// A transaction of reads only, served without the log: the watches are
    /// checked and every call runs as one read of this state, at local time
    /// `now_ms`. The reply is EXEC's.
    pub fn query_exec(&self, watches: &[Watch], calls: &[Call], now_ms: i64, seed: u64) -> Reply {
        let now = self.read_time(now_ms);
        if self.watch_broken(watches, now) {
            return Reply::NilArray;
        }
        Reply::Array(
            calls
                .iter()
                .enumerate()
                .map(|(i, c)| self.query(c.db as usize, &c.argv, now, seed.wrapping_add(i as u64)))
                .collect(),
        )
    }

    /// Evicts as `maxmemory` requires before a command (see
    /// [`Exec::make_room`]); false if memory is still over the limit.
    fn make_room(&mut self, now: i64, stamp: &Stamp) -> bool {
        if self.memory.maxmemory == 0 {
            return true;
        }
        let stamp = Stamp { seed: stamp.seed ^ 0x5eed_e71c, ..*stamp };
        self.exec_in(0, now, &stamp).make_room()
    }

    /// Applies one command; `top`: the entry's own command, not one queued
    /// in a transaction (eviction runs before top-level writes only, as
    /// Redis's processCommand does).
    fn apply_command(
        &mut self,
        db: usize,
        argv: &[Bytes],
        now: i64,
        stamp: &Stamp,
        top: bool,
    ) -> Reply {
        if db >= self.dbs.len() {
            return Reply::err(crate::reply::errors::DB_INDEX);
        }
        let spec = match command::lookup_checked(argv) {
            Ok(spec) => spec,
            Err(reply) => return reply,
        };
        let rng = Rng::new(stamp.seed ^ stamp.index.rotate_left(32));
        let mut oom = false;
        if top && matches!(spec.kind, Kind::Write(_)) && !self.make_room(now, stamp) {
            if crate::memory::denyoom(spec.name) {
                return Reply::err(crate::memory::OOM);
            }
            oom = true;
        }
        match spec.kind {
            Kind::Write(f) => {
                let mut exec = Exec {
                    dbs: &mut self.dbs,
                    events: &mut self.events.0,
                    notify: self.notify,
                    track: self.events.1,
                    scripts: &mut self.scripts,
                    vm: &self.vm,
                    locks: &mut self.locks,
                    blocked: &mut self.blocked,
                    db,
                    now,
                    rng,
                    index: stamp.index,
                    memory: self.memory,
                    oom,
                    evicted: &mut self.evicted,
                    unsafe_switches: self.unsafe_switches,
                };
                f(&mut exec, argv).unwrap_or_else(|e| e)
            }
            Kind::Read(f) => {
                let mut query = Query {
                    dbs: &self.dbs,
                    scripts: &self.scripts,
                    vm: &self.vm,
                    locks: &self.locks,
                    blocked: &self.blocked,
                    db,
                    now,
                    rng,
                    memory: self.memory,
                };
                f(&mut query, argv).unwrap_or_else(|e| e)
            }
            Kind::Connection => {
                Reply::error(format!("ERR command '{}' cannot be replicated", spec.name))
            }
        }
    }

    /// Serves a read-only command at time `now_ms` (the reader's clock; the
    /// replicated clock is used if it is later). `seed` feeds SRANDMEMBER and
    /// friends. Write commands are refused: they must go through [`State::apply`].
    pub fn query(&self, db: usize, argv: &[Bytes], now_ms: i64, seed: u64) -> Reply {
        self.encodings.enter();
        if db >= self.dbs.len() {
            return Reply::err(crate::reply::errors::DB_INDEX);
        }
        let spec = match command::lookup_checked(argv) {
            Ok(spec) => spec,
            Err(reply) => return reply,
        };
        match spec.kind {
            Kind::Read(f) => {
                let mut query = Query {
                    dbs: &self.dbs,
                    scripts: &self.scripts,
                    vm: &self.vm,
                    locks: &self.locks,
                    blocked: &self.blocked,
                    db,
                    now: self.read_time(now_ms),
                    rng: Rng::new(seed),
                    memory: self.memory,
                };
                f(&mut query, argv).unwrap_or_else(|e| e)
            }
            _ => Reply::error(format!("ERR command '{}' is not a read", spec.name)),
        }
    }

    /// The time a read at local time `local_ms` uses: never before the
    /// replicated clock, so a key the log already expired stays expired.
    pub fn read_time(&self, local_ms: i64) -> i64 {
        local_ms.max(self.clock_ms)
    }

    /// The replicated clock: the largest entry time applied so far.
    pub fn clock_ms(&self) -> i64 {
        self.clock_ms
    }

    /// Index of the last applied entry.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The databases, for INFO keyspace and the like.
    pub fn dbs(&self) -> &[Db] {
        &self.dbs
    }

    /// Sets which keyspace events are recorded (through [`Op::Config`], or
    /// from a snapshot).
    pub(crate) fn set_notify(&mut self, notify: Notify) {
        self.notify = notify;
        self.update_expired_tracking();
    }

    /// Whether key changes are recorded as [`Event::Modified`] (a node sets
    /// it while some client of it tracks keys). Not state: it changes only
    /// which events apply reports.
    pub fn set_tracking(&mut self, on: bool) {
        if self.events.1 != on {
            self.events.1 = on;
            self.update_expired_tracking();
        }
    }

    /// Whether expired keys and hash fields are recorded for events:
    /// `expired` (x), `hexpired` (h), `del` (g), or key changes for tracking.
    fn expiry_tracked(&self) -> bool {
        self.notify.wants(Class::Expired)
            || self.notify.wants(Class::Hash)
            || self.notify.wants(Class::Generic)
            || self.events.1
    }

    fn update_expired_tracking(&mut self) {
        let track = self.expiry_tracked();
        for db in &mut self.dbs {
            db.track_expired = track;
        }
    }

    /// The events of the entries applied since the last call (see
    /// [`crate::event`]).
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events.0)
    }

    /// Which keyspace events are recorded, and to which channels.
    pub fn notify(&self) -> Notify {
        self.notify
    }

    /// The replicated script cache.
    pub fn scripts(&self) -> &Scripts {
        &self.scripts
    }

    /// The cluster's id, 0 if not yet set.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The session table (duplicate suppression).
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The earliest expiry time in any database, for the reaper.
    pub fn next_expiry(&self) -> Option<i64> {
        let keys = self.dbs.iter().filter_map(Db::next_expiry).min();
        keys.into_iter().chain(self.blocked.next_deadline()).chain(self.locks.next_expiry()).min()
    }

    /// The held locks.
    pub fn locks(&self) -> &Locks {
        &self.locks
    }

    /// The blocked clients and unconfirmed served elements.
    pub fn blocked(&self) -> &Blocked {
        &self.blocked
    }

    /// Installs blocked clients read from a snapshot, and the awaited keys
    /// of each database that follow from them.
    pub(crate) fn set_blocked(&mut self, blocked: Blocked) {
        for (db, key) in blocked.queues.keys() {
            // Lock waiters (LOCK_DB) wait on no database.
            if let Some(db) = self.dbs.get_mut(*db as usize) {
                db.awaited.insert(key.clone());
            }
        }
        self.blocked = blocked;
    }
}

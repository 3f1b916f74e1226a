//! Clients blocked on keys (BLPOP, BLMOVE, BZPOPMIN …), as replicated state.
//!
//! A client that blocks on any node is a *waiter* in the engine: the
//! `Op::Block` entry that found its keys empty enqueued it, so the queue of
//! every key is in log order, whichever nodes the clients wait on. When a
//! command makes a key that has waiters exist again, the engine serves them
//! right after that entry's operation, in order, exactly as Redis's
//! `handleClientsBlockedOnKeys` does after a command: the pop happens in
//! apply, so an element goes to exactly one waiter, on every replica alike,
//! and the engine reports it as `Event::Unblocked` for the waiter's node.
//!
//! An element served to a waiter is *pending* until the waiter's node
//! confirms, through the log (`Op::Delivered`), that it hands the element to
//! its client; only then does the node write the reply. If the client went
//! away (it disconnected, its timeout passed, CLIENT UNBLOCK, its node
//! crashed), the node says so (`Op::Unblock { gone: true }`) or, for a node
//! that cannot say anything any more, the pending element times out
//! ([`PENDING_TIMEOUT_MS`] of replicated time); either way the element is
//! given back to the head of the list (or the sorted set) it came from. So an
//! element is never handed to two clients and never vanishes because its
//! client did — with one hazard: if the `Delivered` entry's outcome is
//! unknown (the leader died while confirming it), the node hands a list or
//! sorted-set element over rather than risk losing it, and if that entry was
//! in fact never applied the element is also given back: delivered twice,
//! never lost. A lock grant is never handed over unconfirmed (the client
//! hears UNCERTAIN and the node gives the grant back; if the confirmation was
//! applied after all, the grant stays and the owner re-acquiring gets it).
//! A node that applies a grant to one of its own waiters whose connection no
//! longer waits gives it back at once.
//!
//! Waiters whose timeout passes are also removed by the leader's purge
//! entries (their node normally removes them first), and the waiters of an
//! origin session that the engine forgets (10 minutes without a proposal;
//! nodes with waiters propose a keep-alive) are dropped.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// How long a served element waits for its node's confirmation before it is
/// given back (replicated time).
pub const PENDING_TIMEOUT_MS: i64 = 10_000;

/// Most waiters the engine holds; past it a blocking command answers as if
/// it had timed out (Redis has no limit, but a replica must bound its state).
pub const MAX_WAITERS: usize = 100_000;

/// A blocked client: the node's session and a number the node gave it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct WaiterId {
    pub session: u64,
    pub seq: u64,
}

/// One blocked client: its command (re-parsed when it is served), the keys
/// it waits on, its database and deadline (replicated time; 0 waits
/// forever).
#[derive(Clone, Debug, PartialEq)]
pub struct Waiter {
    pub db: u32,
    pub argv: Vec<Bytes>,
    pub keys: Vec<Bytes>,
    pub deadline: i64,
}

/// What to give back if a served element is not delivered.
#[derive(Clone, Debug, PartialEq)]
pub enum GiveBack {
    /// Elements popped from the head (`left`) or tail of a list, in pop order.
    List { db: u32, key: Bytes, left: bool, items: Vec<Bytes> },
    /// Members popped from a sorted set, with their scores.
    ZSet { db: u32, key: Bytes, items: Vec<(Bytes, f64)> },
    /// A lock granted to a waiter: released (and granted to the next one)
    /// if the waiter never takes it.
    Lock { name: Bytes, token: u64 },
    /// Nothing left the keyspace (BLMOVE moved it to its destination).
    Nothing,
}

/// An element served to a waiter, waiting for its node's confirmation.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    /// Replicated time when it was served.
    pub at: i64,
    pub give_back: GiveBack,
}

/// The waiters and the served elements not yet confirmed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Blocked {
    pub(crate) waiters: BTreeMap<WaiterId, Waiter>,
    /// Per (database, key): the waiters in the order they blocked.
    pub(crate) queues: BTreeMap<(u32, Bytes), VecDeque<WaiterId>>,
    pub(crate) pending: BTreeMap<WaiterId, Pending>,
}

impl Blocked {
    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty() && self.pending.is_empty()
    }

    /// Number of blocked clients.
    pub fn waiters(&self) -> usize {
        self.waiters.len()
    }

    /// Number of served elements not yet confirmed.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Enqueues a waiter on each of its keys.
    pub(crate) fn add(&mut self, id: WaiterId, waiter: Waiter) {
        for key in &waiter.keys {
            let queue = self.queues.entry((waiter.db, key.clone())).or_default();
            if !queue.contains(&id) {
                queue.push_back(id);
            }
        }
        self.waiters.insert(id, waiter);
    }

    /// Removes a waiter from every queue; returns it if it was waiting.
    pub(crate) fn remove(&mut self, id: WaiterId) -> Option<Waiter> {
        let waiter = self.waiters.remove(&id)?;
        for key in &waiter.keys {
            let slot = (waiter.db, key.clone());
            if let Some(queue) = self.queues.get_mut(&slot) {
                queue.retain(|w| *w != id);
                if queue.is_empty() {
                    self.queues.remove(&slot);
                }
            }
        }
        Some(waiter)
    }

    /// The first waiter on `key` of database `db`.
    pub(crate) fn first(&self, db: u32, key: &[u8]) -> Option<WaiterId> {
        self.queues.get(&(db, Bytes::copy_from_slice(key))).and_then(|q| q.front().copied())
    }

    /// True if some client waits on `key` of database `db`.
    pub fn has_waiters(&self, db: u32, key: &[u8]) -> bool {
        self.queues.contains_key(&(db, Bytes::copy_from_slice(key)))
    }

    /// Removes a waiter and keeps the databases' awaited keys equal to the
    /// keys that still have waiters.
    pub(crate) fn remove_synced(
        &mut self,
        id: WaiterId,
        dbs: &mut [crate::db::Db],
    ) -> Option<Waiter> {
        let w = self.remove(id)?;
        if let Some(db) = dbs.get_mut(w.db as usize) {
            for key in &w.keys {
                if !self.has_waiters(w.db, key) {
                    db.awaited.remove(key);
                }
            }
        }
        Some(w)
    }

    /// The earliest time something here times out (a waiter's deadline, a
    /// pending element's confirmation), for the leader's purge.
    pub fn next_deadline(&self) -> Option<i64> {
        let waiter = self.waiters.values().map(|w| w.deadline).filter(|&d| d > 0).min();
        let pending = self.pending.values().map(|p| p.at + PENDING_TIMEOUT_MS).min();
        waiter.into_iter().chain(pending).min()
    }
}

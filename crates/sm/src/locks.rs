//! First-class locks with fencing tokens (LOCK.ACQUIRE and friends), as
//! replicated state.
//!
//! A lock is a name (its own namespace, not a key) held by an owner (any
//! string the client chooses, e.g. a UUID) until a deadline in replicated
//! time. Every grant gets a *fencing token*: the log index of the entry that
//! granted it (one more than the previous token if that entry granted one
//! already), so tokens strictly increase across grants of any lock, leader
//! changes, restarts and snapshot installs, and a resource that remembers the
//! highest token it has seen can refuse a late writer (Kleppmann's answer to
//! Redlock; etcd's revision plays the same part). Re-acquiring by the owner
//! extends the lease and keeps the token.
//!
//! Waiting is fair and needs no polling: `LOCK.ACQUIRE … WAIT ms` queues the
//! client with the blocked clients (`crate::blocked`, same queue rules: log
//! order, whichever node), and a release or an expiry grants the lock to the
//! first waiter in the same apply. A grant to a waiter whose client is gone is
//! released at once (the give-back of a lock is its release). A grant still
//! waiting for its waiter's confirmation is taken by its owner acquiring or
//! renewing the lock some other way (say, through another node after the
//! first connection broke), and is then no longer given back.
//!
//! Leases end by replicated time only. A lock past its deadline is free to
//! every command at once (as an expired key is invisible), and the leader's
//! purge entries free it for good and grant it to the next waiter, so every
//! replica does so at the same index.

use std::collections::BTreeMap;

use bytes::Bytes;

/// The waiters' queues hold locks under this database number (locks are not
/// keys of any database).
pub const LOCK_DB: u32 = u32::MAX;

/// One held lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lock {
    pub owner: Bytes,
    /// The log index of the entry that granted it.
    pub token: u64,
    /// Replicated time at which the lease ends.
    pub expires_at: i64,
}

impl Lock {
    /// True while the lease runs at `now`.
    pub fn held(&self, now: i64) -> bool {
        now < self.expires_at
    }
}

/// Every held lock, by name, and the last token granted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Locks {
    pub(crate) held: BTreeMap<Bytes, Lock>,
    pub(crate) last_token: u64,
}

impl Locks {
    /// The lock `name` if its lease runs at `now`.
    pub fn get(&self, name: &[u8], now: i64) -> Option<&Lock> {
        self.held.get(name).filter(|l| l.held(now))
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// True if no lock is held and none was ever granted.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty() && self.last_token == 0
    }

    /// The token of a grant made by the entry at `index`: the index itself,
    /// or one more than the last token if that entry already granted one
    /// (two locks in one transaction), so tokens strictly increase.
    pub(crate) fn next_token(&mut self, index: u64) -> u64 {
        self.last_token = index.max(self.last_token + 1);
        self.last_token
    }

    /// The earliest lease end, for the leader's purge.
    pub fn next_expiry(&self) -> Option<i64> {
        self.held.values().map(|l| l.expires_at).min()
    }

    /// Names whose lease ended at `now`.
    pub(crate) fn expired(&self, now: i64) -> Vec<Bytes> {
        self.held.iter().filter(|(_, l)| !l.held(now)).map(|(n, _)| n.clone()).collect()
    }
}

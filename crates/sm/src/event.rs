//! Events: what applying an entry tells the node besides the replies.
//!
//! Apply is pure, and its replies go to the one client that sent each
//! command. Some effects concern other clients: keyspace notifications, a
//! list that became non-empty for a blocked client, a lock granted to a
//! waiter, a tracked key to invalidate. The engine reports them as [`Event`]s,
//! a deterministic output of the entry like its replies (every replica
//! produces the same events at the same index); the node drains them after
//! each apply ([`State::take_events`](crate::State::take_events)) and turns
//! them into pushes to the connections that wait for them. Events are not
//! state: they are in neither the snapshot nor the digest.
//!
//! Handlers produce them through [`Exec::notify`](crate::state::Exec::notify)
//! (Redis's `notifyKeyspaceEvent`), which records an event only for the
//! classes enabled in [`Notify`] (`notify-keyspace-events`, off by default),
//! so a command costs nothing extra when no one listens.

use bytes::Bytes;

/// A keyspace event class, as a letter of `notify-keyspace-events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// `g`: DEL, EXPIRE, RENAME … (type-independent commands)
    Generic,
    /// `$`: string commands
    String,
    /// `l`: list commands
    List,
    /// `s`: set commands
    Set,
    /// `h`: hash commands
    Hash,
    /// `z`: sorted-set commands
    ZSet,
    /// `x`: a key expired (from the purge entries, so at the same index everywhere)
    Expired,
    /// `e`: a key evicted under maxmemory
    Evicted,
    /// `n`: a key created (not part of `A`)
    New,
}

impl Class {
    /// The bit of this class in [`Notify`].
    pub const fn bit(self) -> u32 {
        match self {
            Class::Generic => 1 << 2,
            Class::String => 1 << 3,
            Class::List => 1 << 4,
            Class::Set => 1 << 5,
            Class::Hash => 1 << 6,
            Class::ZSet => 1 << 7,
            Class::Expired => 1 << 8,
            Class::Evicted => 1 << 9,
            Class::New => 1 << 12,
        }
    }
}

/// The enabled classes and channels (`notify-keyspace-events`), as bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notify(pub u32);

impl Notify {
    /// `K`: publish to `__keyspace@<db>__:<key>`.
    pub const KEYSPACE: u32 = 1 << 0;
    /// `E`: publish to `__keyevent@<db>__:<event>`.
    pub const KEYEVENT: u32 = 1 << 1;

    /// True if an event of `class` is published anywhere.
    #[inline]
    pub fn wants(self, class: Class) -> bool {
        self.0 & class.bit() != 0 && self.0 & (Notify::KEYSPACE | Notify::KEYEVENT) != 0
    }
}

/// One event of an applied entry.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A keyspace notification: `event` (Redis's name, e.g. "set", "lpush",
    /// "expired") happened to `key` in database `db`.
    Keyspace { db: u32, class: Class, event: &'static str, key: Bytes },
}

/// The events waiting to be drained. Output, not state: equal to any other
/// outbox and cloned empty, so it takes no part in comparing or copying a
/// [`State`](crate::State).
#[derive(Debug, Default)]
pub struct Outbox(pub Vec<Event>);

impl Clone for Outbox {
    fn clone(&self) -> Self {
        Outbox::default()
    }
}

impl PartialEq for Outbox {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

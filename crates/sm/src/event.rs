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
//! PUBLISH is a write: the message travels through the log, so every node
//! delivers the messages of a channel in the same order (the log's), and the
//! node connected to the publisher counts its own receivers for the reply.
//!
//! Handlers produce them through [`Exec::notify`](crate::state::Exec::notify)
//! (Redis's `notifyKeyspaceEvent`), which records an event only for the
//! classes enabled in [`Notify`] (`notify-keyspace-events`, off by default),
//! so a command costs nothing extra when no one listens.

use bytes::Bytes;

use crate::blocked::WaiterId;
use crate::reply::Reply;

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
    /// The bit of this class in [`Notify`] (Redis's `NOTIFY_*` values).
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
            Class::New => 1 << 14,
        }
    }
}

/// The enabled classes and channels (`notify-keyspace-events`), as Redis's
/// bits. Replicated configuration: set through the log, so every replica
/// records the same events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notify(pub u32);

impl Notify {
    /// `K`: publish to `__keyspace@<db>__:<key>`.
    pub const KEYSPACE: u32 = 1 << 0;
    /// `E`: publish to `__keyevent@<db>__:<event>`.
    pub const KEYEVENT: u32 = 1 << 1;
    const STREAM: u32 = 1 << 10;
    const KEY_MISS: u32 = 1 << 11;
    const MODULE: u32 = 1 << 13;
    /// `A`: every class but `m` (key miss) and `n` (new).
    const ALL: u32 = (1 << 2)
        | (1 << 3)
        | (1 << 4)
        | (1 << 5)
        | (1 << 6)
        | (1 << 7)
        | (1 << 8)
        | (1 << 9)
        | Notify::STREAM
        | Notify::MODULE;

    /// True if an event of `class` is published anywhere.
    #[inline]
    pub fn wants(self, class: Class) -> bool {
        self.0 & class.bit() != 0 && self.0 & (Notify::KEYSPACE | Notify::KEYEVENT) != 0
    }

    /// Parses a `notify-keyspace-events` value (Redis's
    /// `keyspaceEventsStringToFlags`); `None` for an unknown letter.
    pub fn parse(text: &[u8]) -> Option<Notify> {
        let mut flags = 0;
        for &c in text {
            flags |= match c {
                b'A' => Notify::ALL,
                b'g' => Class::Generic.bit(),
                b'$' => Class::String.bit(),
                b'l' => Class::List.bit(),
                b's' => Class::Set.bit(),
                b'h' => Class::Hash.bit(),
                b'z' => Class::ZSet.bit(),
                b'x' => Class::Expired.bit(),
                b'e' => Class::Evicted.bit(),
                b'K' => Notify::KEYSPACE,
                b'E' => Notify::KEYEVENT,
                b't' => Notify::STREAM,
                b'm' => Notify::KEY_MISS,
                b'd' => Notify::MODULE,
                b'n' => Class::New.bit(),
                _ => return None,
            };
        }
        Some(Notify(flags))
    }

    /// The value CONFIG GET shows (Redis's `keyspaceEventsFlagsToString`).
    pub fn to_text(self) -> String {
        let f = self.0;
        let mut out = String::new();
        if f & Notify::ALL == Notify::ALL {
            out.push('A');
        } else {
            let letters = [
                (Class::Generic.bit(), 'g'),
                (Class::String.bit(), '$'),
                (Class::List.bit(), 'l'),
                (Class::Set.bit(), 's'),
                (Class::Hash.bit(), 'h'),
                (Class::ZSet.bit(), 'z'),
                (Class::Expired.bit(), 'x'),
                (Class::Evicted.bit(), 'e'),
                (Notify::STREAM, 't'),
                (Notify::MODULE, 'd'),
                (Class::New.bit(), 'n'),
            ];
            out.extend(letters.iter().filter(|(bit, _)| f & bit != 0).map(|(_, c)| *c));
        }
        for (bit, c) in [(Notify::KEYSPACE, 'K'), (Notify::KEYEVENT, 'E'), (Notify::KEY_MISS, 'm')]
        {
            if f & bit != 0 {
                out.push(c);
            }
        }
        out
    }
}

/// One event of an applied entry.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A keyspace notification: `event` (Redis's name, e.g. "set", "lpush",
    /// "expired") happened to `key` in database `db`. The node publishes it
    /// to `__keyspace@<db>__:<key>` and `__keyevent@<db>__:<event>` as the
    /// flags ask (`K`, `E`).
    Keyspace { db: u32, class: Class, event: &'static str, key: Bytes },
    /// PUBLISH (or SPUBLISH, `shard`): a message for the subscribers of
    /// `channel` on every node.
    Message { channel: Bytes, message: Bytes, shard: bool },
    /// A blocked client was served (`reply` is what its command answers) or
    /// timed out by the leader's purge; its node delivers it after
    /// confirming (see [`crate::blocked`]).
    Unblocked { waiter: WaiterId, reply: Reply, served: bool },
    /// A key changed (Redis's `signalModifiedKey`), for client-side caching
    /// (invalidation). Recorded only while the node asks for it
    /// ([`State::set_tracking`](crate::State::set_tracking)).
    Modified { db: u32, key: Bytes },
    /// A whole database (`Some`) or every database was flushed.
    Flushed { db: Option<u32> },
}

/// The events waiting to be drained, and whether key changes are wanted.
/// Output, not state: equal to any other outbox and cloned empty, so it
/// takes no part in comparing or copying a [`State`](crate::State).
#[derive(Debug, Default)]
pub struct Outbox(pub Vec<Event>, pub bool);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_flags_round_trip_like_redis() {
        // Pairs checked against redis-server 7.0.15 (CONFIG SET then GET).
        for (set, get) in [("KEA", "AKE"), ("gK", "gK"), ("", ""), ("Kx", "xK"), ("En$", "$nE")] {
            let flags = Notify::parse(set.as_bytes()).expect("valid");
            assert_eq!(flags.to_text(), get, "CONFIG SET notify-keyspace-events {set}");
        }
        assert_eq!(Notify::parse(b"Q"), None);
        assert!(!Notify::parse(b"g").unwrap().wants(Class::Generic), "no K or E: nothing");
        assert!(Notify::parse(b"gK").unwrap().wants(Class::Generic));
        assert!(!Notify::parse(b"AK").unwrap().wants(Class::New), "A does not include n");
    }
}

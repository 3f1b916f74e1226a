//! Client sessions: applying a retried proposal at most once.
//!
//! A node that accepts a client's write (the *origin*) gives it a sequence
//! number in the origin's session and keeps it until it has the reply. If the
//! leader dies with the outcome unknown, the origin proposes the same
//! `(session, seq)` again through the new leader. The engine remembers the
//! replies of applied `(session, seq)` pairs, so the retry gets the first reply
//! back instead of running the command twice (a retried INCR counts once).
//!
//! Memory stays bounded the way the Raft dissertation (§6.3) describes: every
//! proposal also carries `ack_below`, the origin's lowest sequence number
//! still waiting for a reply. Replies below it are forgotten; a proposal below
//! it is stale (its origin gave up on it and told its client the outcome was
//! unknown) and is not applied. Sessions idle for [`SESSION_IDLE_MS`] of
//! replicated time are dropped, all at the same log index on every replica.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::reply::Reply;

/// Sessions unused for this long (replicated time) are forgotten.
pub const SESSION_IDLE_MS: i64 = 10 * 60 * 1000;

/// Where a proposal comes from, for duplicate suppression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The origin's session: unique per node process.
    pub session: u64,
    /// The proposal's sequence number within the session.
    pub seq: u64,
    /// The origin's lowest sequence number still waiting for a reply.
    pub ack_below: u64,
}

/// What the session table says about a proposal.
#[derive(Debug, PartialEq)]
pub enum Check {
    /// Not seen before: apply it.
    Fresh,
    /// Applied before: here is its reply.
    Duplicate(Vec<Reply>),
    /// Below the origin's acknowledged mark: the origin gave up on it.
    Stale,
}

/// One origin's session.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Session {
    /// Replies of applied proposals at or above `ack_below`.
    pub replies: BTreeMap<u64, Vec<Reply>>,
    pub ack_below: u64,
    pub last_seen_ms: i64,
}

/// All sessions, keyed by session id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sessions {
    pub(crate) map: BTreeMap<u64, Session>,
}

impl Sessions {
    /// Classifies a proposal, and advances the session's acknowledged mark.
    pub fn check(&mut self, origin: &Origin, now: i64) -> Check {
        let session = self.map.entry(origin.session).or_default();
        session.last_seen_ms = now;
        if origin.ack_below > session.ack_below {
            session.ack_below = origin.ack_below;
            session.replies = session.replies.split_off(&origin.ack_below);
        }
        if origin.seq < session.ack_below {
            return Check::Stale;
        }
        match session.replies.get(&origin.seq) {
            Some(replies) => Check::Duplicate(replies.clone()),
            None => Check::Fresh,
        }
    }

    /// Remembers the replies of an applied proposal.
    pub fn record(&mut self, origin: &Origin, replies: &[Reply]) {
        if let Some(session) = self.map.get_mut(&origin.session) {
            session.replies.insert(origin.seq, replies.to_vec());
        }
    }

    /// Drops sessions idle since before `now - SESSION_IDLE_MS`.
    pub fn expire_idle(&mut self, now: i64) -> Vec<u64> {
        let mut gone = Vec::new();
        self.map.retain(|id, s| {
            let keep = s.last_seen_ms > now.saturating_sub(SESSION_IDLE_MS);
            if !keep {
                gone.push(*id);
            }
            keep
        });
        gone
    }

    /// True if the session is known (its origin proposed within the idle time).
    pub fn contains(&self, session: u64) -> bool {
        self.map.contains_key(&session)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Cached replies across all sessions (INFO, tests).
    pub fn cached_replies(&self) -> usize {
        self.map.values().map(|s| s.replies.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(seq: u64, ack_below: u64) -> Origin {
        Origin { session: 7, seq, ack_below }
    }

    #[test]
    fn duplicates_get_the_first_reply_and_acks_free_memory() {
        let mut s = Sessions::default();
        assert_eq!(s.check(&origin(0, 0), 1), Check::Fresh);
        s.record(&origin(0, 0), &[Reply::Int(1)]);
        assert_eq!(s.check(&origin(1, 0), 2), Check::Fresh);
        s.record(&origin(1, 0), &[Reply::Int(2)]);
        assert_eq!(s.check(&origin(0, 0), 3), Check::Duplicate(vec![Reply::Int(1)]));
        assert_eq!(s.cached_replies(), 2);
        // The origin got reply 0: it is forgotten, and a late copy is stale.
        assert_eq!(s.check(&origin(2, 1), 4), Check::Fresh);
        assert_eq!(s.cached_replies(), 1);
        assert_eq!(s.check(&origin(0, 1), 5), Check::Stale);
        // Idle sessions go away.
        s.expire_idle(5 + SESSION_IDLE_MS);
        assert!(s.is_empty());
    }
}

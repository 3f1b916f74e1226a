//! Lock safety: mutual exclusion in real time, and fencing tokens.
//!
//! A client that was granted a lock *believes* it holds it from the moment
//! the grant reached it (the acquire's completion) until the first of:
//!
//! * the invoke of its release of that grant (it stops relying on the lock
//!   when it asks to release it, whatever the reply), and
//! * the end of its lease, counted from the acquire's *invoke* (a careful
//!   client cannot know when the server started the lease, so it must assume
//!   the earliest moment).
//!
//! A grant with no lease and no release holds until the end of the history.
//! Acquires with an unknown outcome grant nothing the client relies on. Two
//! such belief intervals of one lock must never overlap (touching is fine):
//! that would be two holders at once, which is what a lock exists to prevent.
//!
//! Fencing tokens (Kleppmann's "How to do distributed locking") must grow in
//! grant order: if one grant's acquire completed before another's was invoked,
//! the later grant carries a strictly larger token; and no two grants share a
//! token.

use std::collections::HashMap;

use super::{keys_of, CompletedBefore, Workload};
use crate::history::{Call, History, LockGrant, Nanos, Op, Val};
use crate::verdict::{Findings, Report, Violation};

/// A grant and the interval during which its client relied on it.
#[derive(Debug, Clone, Copy)]
struct Hold<'a> {
    acquire: &'a Op,
    grant: LockGrant,
    start: Nanos,
    /// `u64::MAX`: until the end of the history.
    end: Nanos,
    release: Option<&'a Op>,
}

fn owner(op: &Op) -> Option<&str> {
    match &op.call {
        Call::LockAcquire { owner } | Call::LockRelease { owner, .. } => Some(owner),
        _ => None,
    }
}

fn holds<'a>(ops: &[&'a Op]) -> Vec<Hold<'a>> {
    let mut out = Vec::new();
    for (i, &op) in ops.iter().enumerate() {
        let (Call::LockAcquire { owner: who }, Some(Val::Lock(grant)), Some(start)) =
            (&op.call, op.result(), op.complete)
        else {
            continue;
        };
        // The first release by the same owner (of this token, if it names
        // one) invoked after the grant arrived.
        let release = ops[i + 1..].iter().copied().find(|r| match &r.call {
            Call::LockRelease { owner: o, token } => {
                o == who
                    && r.invoke >= start
                    && token.is_none_or(|t| grant.token.is_none_or(|g| g == t))
            }
            _ => false,
        });
        let lease_end = grant.lease_ns.map_or(u64::MAX, |l| op.invoke.saturating_add(l));
        let end = release.map_or(u64::MAX, |r| r.invoke).min(lease_end);
        out.push(Hold { acquire: op, grant: *grant, start, end, release });
    }
    out
}

fn show_token(g: &LockGrant) -> String {
    match g.token {
        Some(t) => format!("token {t}"),
        None => "no token".to_string(),
    }
}

fn show_end(h: &Hold) -> String {
    if h.end == u64::MAX {
        return "the end of the history".to_string();
    }
    match h.release {
        Some(r) if r.invoke == h.end => format!("{} (release #{} invoked)", h.end, r.id),
        _ => format!("{} (lease expired)", h.end),
    }
}

fn check_key(key: &str, ops: &[&Op], findings: &mut Findings) {
    let mut holds = holds(ops);
    holds.sort_by_key(|h| (h.start, h.acquire.id));

    // Mutual exclusion: sweep by start, remembering the hold that ends last.
    let mut latest: Option<Hold> = None;
    for h in holds.iter().filter(|h| h.start < h.end) {
        if let Some(prev) = latest {
            if h.start < prev.end {
                let mut window = vec![prev.acquire, h.acquire];
                window.extend(prev.release);
                window.extend(h.release);
                findings.violation(Violation::new(
                    "two-holders",
                    key,
                    format!(
                        "{} (owner {:?}, {}) held the lock from {} to {}, and {} (owner \
                         {:?}, {}) got it at {}, while the first still held it",
                        format_args!("#{}", prev.acquire.id),
                        owner(prev.acquire).unwrap_or("?"),
                        show_token(&prev.grant),
                        prev.start,
                        show_end(&prev),
                        format_args!("#{}", h.acquire.id),
                        owner(h.acquire).unwrap_or("?"),
                        show_token(&h.grant),
                        h.start,
                    ),
                    &window,
                ));
            }
        }
        if latest.is_none_or(|p| h.end > p.end) {
            latest = Some(*h);
        }
    }

    // Fencing tokens: unique, and growing with real-time order (grants
    // without a token, as `SET NX PX` makes, have nothing to check here).
    let fenced: Vec<(&Hold, u64)> =
        holds.iter().filter_map(|h| h.grant.token.map(|t| (h, t))).collect();
    let mut by_token: HashMap<u64, &Op> = HashMap::new();
    for &(h, token) in &fenced {
        if let Some(other) = by_token.insert(token, h.acquire) {
            findings.violation(Violation::new(
                "duplicate-token",
                key,
                format!("#{} and #{} were both granted token {token}", other.id, h.acquire.id),
                &[other, h.acquire],
            ));
        }
    }
    let granted = CompletedBefore::new(fenced.iter().map(|&(h, t)| (h.start, t, h.acquire)));
    for &(h, mine) in &fenced {
        if let Some((token, prior)) = granted.max_before(h.acquire.invoke) {
            if token >= mine {
                findings.violation(Violation::new(
                    "token-not-increasing",
                    key,
                    format!(
                        "#{} was granted token {token} before #{} asked, yet #{} got token {mine}: \
                         fencing tokens must increase in grant order",
                        prior.id, h.acquire.id, h.acquire.id
                    ),
                    &[prior, h.acquire],
                ));
            }
        }
    }
}

/// Checks every lock key.
pub fn check(history: &History) -> Report {
    let keys = keys_of(history, Workload::Lock);
    let mut findings = Findings::default();
    for (key, ops) in &keys {
        check_key(key, ops, &mut findings);
    }
    Report { checker: "lock", keys: keys.len(), verdict: findings.verdict() }
}

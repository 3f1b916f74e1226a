//! Keys that expire (SET key value PX ttl with unique values, read with GET).
//!
//! How expiry works here (ARCHITECTURE.md, "Time and expiry"): the leader
//! stamps each entry with its clock when it proposes it, which is between
//! the SET's invoke and its completion; the key expires at stamp + ttl, in
//! replicated time, which never goes backwards; a read on any node treats
//! the key as gone once `max(its own clock, the replicated clock)` reaches
//! that, whether or not a purge entry has removed it yet. The nodes of a
//! `raftcache-chaos run` share the host's clock with the harness, so:
//!
//! * **expired reads**: a read invoked later than [`EXPIRY_BOUND_NS`] after
//!   an acknowledged SET's completion plus its ttl must not return its value
//!   (the entry's stamp is at most the completion, so the key had expired
//!   before the read began). Only acknowledged SETs give a deadline: one
//!   with an unknown outcome may be applied, and stamped, at any later time.
//! * **keys that vanish early**: a read invoked after an acknowledged SET
//!   completed, and completed more than [`EXPIRY_BOUND_NS`] before that SET's
//!   invoke plus the shortest ttl any SET of the key asked for, must not
//!   return nil: whatever SET the key held then was stamped after that SET's
//!   invoke, so nothing on the key could have expired yet (the workload never
//!   deletes). Nil there means an acknowledged write was lost.
//! * **phantom values**: a read may return only a value some SET wrote: not
//!   one never written, one whose SET failed, or one whose SET started only
//!   after the read completed.
//!
//! The bound covers what separates the harness's clock from the nodes' on
//! one host: whole milliseconds (the stamp and the read's clock are
//! truncated to them) and drift between the harness's monotonic clock and
//! the system clock the nodes read over a run. Across hosts the nodes' clock
//! skew adds to it (ARCHITECTURE.md: TTL accuracy is bounded by clock skew).

use std::collections::HashMap;

use super::{keys_of, Workload};
use crate::check::register::read_value;
use crate::history::{Call, History, Nanos, Op, Outcome};
use crate::verdict::{Findings, Report, Violation};

/// How much later than its deadline a key may still be read, and how much
/// earlier than its earliest possible expiry it may be gone: 25 ms.
pub const EXPIRY_BOUND_NS: Nanos = 25_000_000;

fn ms(ns: Nanos) -> f64 {
    ns as f64 / 1e6
}

fn check_key(key: &str, ops: &[&Op], findings: &mut Findings) {
    let mut writes: HashMap<&str, &Op> = HashMap::new();
    for &op in ops {
        if let Call::WriteTtl { value, .. } = &op.call {
            if let Some(first) = writes.insert(value.as_str(), op) {
                findings.unknown(format!(
                    "key {key:?}: #{} and #{} both write {value:?}; the ttl checker needs unique \
                     values per key",
                    first.id, op.id
                ));
                return;
            }
        }
    }
    let ttl_of = |op: &Op| match op.call {
        Call::WriteTtl { ttl_ms, .. } => ttl_ms.saturating_mul(1_000_000),
        _ => 0,
    };
    let Some(shortest) = writes.values().map(|op| ttl_of(op)).min() else { return };
    let mut acked: Vec<&Op> = writes.values().copied().filter(|op| op.is_ok()).collect();
    acked.sort_by_key(|op| op.id);

    for &read in ops.iter().filter(|op| matches!(op.call, Call::Read) && op.is_ok()) {
        let Some(done) = read.complete else { continue };
        match read.result().and_then(read_value) {
            Some(value) => {
                let Some(&w) = writes.get(value.as_str()) else {
                    findings.violation(Violation::new(
                        "phantom-value",
                        key,
                        format!("#{} returned {value:?}, which no SET wrote", read.id),
                        &[read],
                    ));
                    continue;
                };
                if w.outcome == Outcome::Fail || done < w.invoke {
                    let why = if w.outcome == Outcome::Fail {
                        "failed, so surely was not applied"
                    } else {
                        "started only after the read completed"
                    };
                    findings.violation(Violation::new(
                        "phantom-value",
                        key,
                        format!("#{} returned {value:?}, but its SET #{} {why}", read.id, w.id),
                        &[w, read],
                    ));
                    continue;
                }
                let Some(w_done) = w.effective_complete() else { continue };
                let deadline = w_done.saturating_add(ttl_of(w)).saturating_add(EXPIRY_BOUND_NS);
                if read.invoke > deadline {
                    findings.violation(Violation::new(
                        "expired-read",
                        key,
                        format!(
                            "#{} returned {value:?} {:.1} ms after #{} had set it with a ttl of \
                             {:.0} ms (acknowledged at {w_done}): the key had expired {:.1} ms \
                             before the read began, beyond the {:.0} ms bound",
                            read.id,
                            ms(read.invoke - w_done),
                            w.id,
                            ms(ttl_of(w)),
                            ms(read.invoke - (deadline - EXPIRY_BOUND_NS)),
                            ms(EXPIRY_BOUND_NS),
                        ),
                        &[w, read],
                    ));
                }
            }
            None => {
                // The latest-invoked acknowledged SET that completed before
                // the read began gives the tightest bound.
                let Some(w) = acked
                    .iter()
                    .copied()
                    .filter(|w| w.complete.is_some_and(|c| c < read.invoke))
                    .max_by_key(|w| w.invoke)
                else {
                    continue;
                };
                let alive_until = w.invoke.saturating_add(shortest);
                if done.saturating_add(EXPIRY_BOUND_NS) < alive_until {
                    findings.violation(Violation::new(
                        "vanished",
                        key,
                        format!(
                            "#{} returned nil, but #{} had set the key before the read began, \
                             and no SET of it asked for less than {:.0} ms: nothing on the key \
                             could expire before {alive_until}, and the read completed at \
                             {done}; an acknowledged write was lost (or the read was stale)",
                            read.id,
                            w.id,
                            ms(shortest),
                        ),
                        &[w, read],
                    ));
                }
            }
        }
    }
}

/// Checks every key written with a ttl.
pub fn check(history: &History) -> Report {
    let keys = keys_of(history, Workload::Ttl);
    let mut findings = Findings::default();
    for (key, ops) in &keys {
        check_key(key, ops, &mut findings);
    }
    Report { checker: "ttl", keys: keys.len(), verdict: findings.verdict() }
}

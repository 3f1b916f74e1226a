//! Lost acknowledged writes, from the final reads of register keys.
//!
//! The linearizability checker already rejects a history whose final read
//! misses an acknowledged write; this check says so in plain words, and
//! needs no search. For each register key, the *final reads* are the
//! acknowledged reads invoked after every acknowledged mutation of the key
//! completed. Such a read must return the value of one of the *surviving*
//! mutations:
//!
//! * an acknowledged write / delete / successful compare-and-set that no other
//!   acknowledged mutation followed in real time (started after it
//!   completed): concurrent last writes may land in either order;
//! * any mutation with an unknown outcome (it may land at any time, even
//!   after the last acknowledged one);
//! * nil, if no mutation was acknowledged at all (keys start absent).
//!
//! Anything else means an acknowledged write was lost (or a value came from
//! nowhere).

use super::{keys_of, Workload};
use crate::check::register::read_value;
use crate::history::{Call, History, Op, Outcome, Val};
use crate::verdict::{Findings, Report, Violation};

/// What a mutation leaves in the register; `None` for ops that are not
/// mutations (or a compare-and-set that did not swap).
fn written(op: &Op) -> Option<Option<String>> {
    match (&op.call, &op.outcome) {
        (_, Outcome::Fail) => None,
        (Call::Write { value }, _) => Some(Some(value.clone())),
        (Call::Delete, _) => Some(None),
        (Call::Cas { value, .. }, Outcome::Unknown) => Some(Some(value.clone())),
        (Call::Cas { value, .. }, Outcome::Ok(v)) => {
            matches!(v, Val::Bool(true) | Val::Int(1)).then(|| Some(value.clone()))
        }
        _ => None,
    }
}

/// The value a write or compare-and-set tries to leave, whatever its outcome.
fn written_value(op: &Op) -> Option<String> {
    match &op.call {
        Call::Write { value } | Call::Cas { value, .. } => Some(value.clone()),
        _ => None,
    }
}

fn show(v: &Option<String>) -> String {
    match v {
        Some(s) => format!("{s:?}"),
        None => "nil".to_string(),
    }
}

fn check_key(key: &str, ops: &[&Op], findings: &mut Findings) -> bool {
    let acked: Vec<(&Op, Option<String>)> =
        ops.iter().filter(|op| op.is_ok()).filter_map(|&op| written(op).map(|w| (op, w))).collect();
    let last_ack = acked.iter().filter_map(|(op, _)| op.complete).max().unwrap_or(0);
    let finals: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|op| matches!(op.call, Call::Read) && op.is_ok() && op.invoke > last_ack)
        .collect();
    if finals.is_empty() {
        return false;
    }
    // Surviving acknowledged mutations: none acknowledged started after them.
    let last_invoke = acked.iter().map(|(op, _)| op.invoke).max().unwrap_or(0);
    let surviving: Vec<&(&Op, Option<String>)> =
        acked.iter().filter(|(op, _)| op.complete.is_some_and(|c| c >= last_invoke)).collect();
    let mut allowed: Vec<Option<String>> = surviving.iter().map(|(_, v)| v.clone()).collect();
    allowed.extend(
        ops.iter().filter(|op| op.outcome == Outcome::Unknown).filter_map(|&op| written(op)),
    );
    if acked.is_empty() {
        allowed.push(None);
    }
    for read in finals {
        let got = read.result().and_then(read_value);
        if allowed.contains(&got) {
            continue;
        }
        let mut window: Vec<&Op> = vec![read];
        window.extend(surviving.iter().map(|(op, _)| *op));
        let source = acked.iter().find(|(_, v)| *v == got).map(|(op, _)| *op);
        let origin = match source {
            Some(op) => {
                window.push(op);
                format!(
                    "{} was written by #{}, which a later acknowledged write overwrote",
                    show(&got),
                    op.id
                )
            }
            None if got.is_none() => "nil: the key vanished".to_string(),
            None => match ops.iter().find(|op| written_value(op) == got) {
                Some(op) => {
                    window.push(op);
                    format!("{} was written only by #{}, which failed", show(&got), op.id)
                }
                None => format!("{} was never written", show(&got)),
            },
        };
        let expected: Vec<String> = allowed.iter().map(show).collect();
        let lost: Vec<String> = surviving.iter().map(|(op, _)| format!("#{}", op.id)).collect();
        findings.violation(Violation::new(
            "lost-write",
            key,
            format!(
                "final read #{} returned {}, but it started after every acknowledged write \
                 completed, so it must see one of {} (the acknowledged write{} {} not \
                 overwritten, or an unknown one); {origin}",
                read.id,
                show(&got),
                expected.join(", "),
                if lost.len() == 1 { "" } else { "s" },
                lost.join(", "),
            ),
            &window,
        ));
    }
    true
}

/// Checks the final reads of every register key.
pub fn check(history: &History) -> Report {
    let keys = keys_of(history, Workload::Register);
    let mut findings = Findings::default();
    let mut checked = 0;
    for (key, ops) in &keys {
        if check_key(key, ops, &mut findings) {
            checked += 1;
        }
    }
    Report { checker: "lost-writes", keys: checked, verdict: findings.verdict() }
}

//! Counters (INCR / INCRBY with positive amounts, read with GET).
//!
//! A counter history is judged without a search, by bounds in the style of
//! Jepsen's counter checker, extended with the values INCR returns:
//!
//! * **unique values**: two acknowledged increments cannot return the same
//!   value (the counter only grows), so a repeated value means an increment
//!   was applied twice or one was lost and its value handed out again;
//! * **bounds**: an observation (a read, or an increment's reply) must lie
//!   between the sum of the increments acknowledged before it was invoked and
//!   the sum of the increments attempted (acknowledged or unknown) before it
//!   completed. Below the lower bound an acknowledged increment was lost; above
//!   the upper one an increment was counted that never happened (or twice). A
//!   final read, made after all increments completed, thus checks that
//!   acked ≤ final ≤ attempted;
//! * **monotonicity**: an observation invoked after another completed cannot
//!   see a smaller value (an increment's reply must even be larger).
//!
//! A nil read counts as 0; a string read must parse as an integer.

use std::collections::HashMap;

use super::{keys_of, CompletedBefore, SumsByTime, Workload};
use crate::history::{Call, History, Op, Outcome, Val};
use crate::verdict::{Findings, Report, Violation};

/// A value seen by a client: a read or an increment's reply.
#[derive(Debug, Clone, Copy)]
struct Observation<'a> {
    op: &'a Op,
    value: i64,
    /// For an increment: its amount.
    by: Option<i64>,
}

fn observation(op: &Op) -> Result<Option<Observation<'_>>, String> {
    let Outcome::Ok(reply) = &op.outcome else { return Ok(None) };
    let by = match op.call {
        Call::Incr { by } => Some(by),
        Call::Read => None,
        _ => return Ok(None),
    };
    let value = match reply {
        Val::Nil => 0,
        Val::Int(i) => *i,
        Val::Str(s) => s.parse().map_err(|_| format!("{s:?} is not an integer"))?,
        other => return Err(format!("{other} is not an integer")),
    };
    Ok(Some(Observation { op, value, by }))
}

fn check_key(key: &str, ops: &[&Op], findings: &mut Findings) {
    let mut observations = Vec::new();
    for &op in ops {
        match observation(op) {
            Ok(Some(o)) => observations.push(o),
            Ok(None) => {}
            Err(why) => findings.violation(Violation::new(
                "bad-counter-value",
                key,
                format!("#{} read a counter as {why}", op.id),
                &[op],
            )),
        }
    }
    let incrs = || {
        ops.iter().filter_map(|&op| match op.call {
            Call::Incr { by } if op.outcome != Outcome::Fail => Some((op, by)),
            _ => None,
        })
    };
    let acked =
        SumsByTime::new(incrs().filter_map(|(op, by)| op.effective_complete().map(|c| (c, by))));
    let attempted = SumsByTime::new(incrs().map(|(op, by)| (op.invoke, by)));
    let n_acked = incrs().filter(|(op, _)| op.is_ok()).count();
    let n_attempted = incrs().count();
    let last_ack = incrs().filter_map(|(op, _)| op.effective_complete()).max().unwrap_or(0);

    // Unique increment values.
    let mut seen: HashMap<i64, &Op> = HashMap::new();
    for o in observations.iter().filter(|o| o.by.is_some()) {
        if let Some(first) = seen.insert(o.value, o.op) {
            findings.violation(Violation::new(
                "duplicate-increment",
                key,
                format!(
                    "#{} and #{} were both acknowledged with value {}: one increment was \
                     applied twice, or one was lost and its value handed out again",
                    first.id, o.op.id, o.value
                ),
                &[first, o.op],
            ));
        }
    }

    // Bounds.
    for o in &observations {
        let Some(done) = o.op.complete else { continue };
        let lower = acked.before(o.op.invoke) + i128::from(o.by.unwrap_or(0));
        let upper = attempted.up_to(done);
        let value = i128::from(o.value);
        let is_final = o.by.is_none() && o.op.invoke > last_ack;
        if value < lower {
            let what = if is_final {
                format!(
                    "final read #{} returned {}, but {} increment(s) were acknowledged \
                     (summing to {lower}) before it started: an acknowledged increment was lost",
                    o.op.id, o.value, n_acked
                )
            } else {
                format!(
                    "#{} saw {}, but the increments acknowledged before it started already \
                     sum to {lower}: an acknowledged increment was lost (or the read is stale)",
                    o.op.id, o.value
                )
            };
            findings.violation(Violation::new("lost-increment", key, what, &[o.op]));
        } else if value > upper {
            let what = format!(
                "#{} saw {}, but the increments attempted before it completed sum to only \
                 {upper} ({} attempted in all, unknown ones included): an increment was \
                 counted that never happened, or counted twice",
                o.op.id, o.value, n_attempted
            );
            findings.violation(Violation::new("phantom-increment", key, what, &[o.op]));
        }
    }

    // Monotonicity in real time.
    let before = CompletedBefore::new(
        observations.iter().filter_map(|o| o.op.complete.map(|c| (c, o.value, o.op))),
    );
    for o in &observations {
        let Some((max, prior)) = before.max_before(o.op.invoke) else { continue };
        let backwards = if o.by.is_some() { o.value <= max } else { o.value < max };
        if backwards {
            findings.violation(Violation::new(
                "counter-went-backwards",
                key,
                format!(
                    "#{} saw {} after #{} had already seen {max} (it completed before #{} \
                     started); a counter only grows",
                    o.op.id, o.value, prior.id, o.op.id
                ),
                &[prior, o.op],
            ));
        }
    }
}

/// Checks every counter key.
pub fn check(history: &History) -> Report {
    let keys = keys_of(history, Workload::Counter);
    let mut findings = Findings::default();
    for (key, ops) in &keys {
        check_key(key, ops, &mut findings);
    }
    Report { checker: "counter", keys: keys.len(), verdict: findings.verdict() }
}

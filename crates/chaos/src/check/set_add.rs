//! Grow-only sets (SADD key value, read with SMEMBERS key).
//!
//! Like Jepsen's set-full checker, this relies on added values being unique
//! per key, so that each member names the SADD that added it, and on sets
//! only growing (the workload never removes). Judged per key, without a
//! search:
//!
//! * **phantom members**: a read holds a value no SADD attempted, one whose
//!   SADD failed (surely not applied), or one whose SADD started only after
//!   the read had completed;
//! * **duplicate members**: a read lists a member twice;
//! * **lost adds**: a SADD acknowledged before a read was invoked must be in
//!   that read (and in every later one);
//! * **stale reads**: a member that one read saw must be in every read
//!   invoked after that read completed; this is how an add with an unknown
//!   outcome is held to account once it shows, and how a replica that went
//!   back in time shows;
//! * **duplicate adds**: SADD of a new member replies 1; an acknowledged
//!   reply of 0 says the member was already there, so the add was applied
//!   twice (or another add wrote the same value).
//!
//! An add with an unknown outcome may show up at any time after its invoke,
//! or never; once a read saw it, it must stay.

use std::collections::{HashMap, HashSet};

use super::{keys_of, Workload};
use crate::history::{Call, History, Nanos, Op, Outcome, Val};
use crate::verdict::{Findings, Report, Violation};

/// Since when a member must be in every read: from the completion of its
/// acknowledged add, or of the first read that saw it, whichever is first.
#[derive(Debug, Clone, Copy)]
struct Known<'a> {
    since: Nanos,
    /// The acknowledged add or the read that established it.
    by: &'a Op,
    acked: bool,
}

fn check_key(key: &str, ops: &[&Op], findings: &mut Findings) {
    let mut adds: HashMap<&str, &Op> = HashMap::new();
    for &op in ops {
        if let Call::Add { value } = &op.call {
            if let Some(first) = adds.insert(value.as_str(), op) {
                findings.unknown(format!(
                    "key {key:?}: #{} and #{} both add {value:?}; set-add needs unique values \
                     per key",
                    first.id, op.id
                ));
                return;
            }
        }
    }
    let empty: Vec<String> = Vec::new();
    let reads: Vec<(&Op, &Vec<String>)> = ops
        .iter()
        .filter(|op| matches!(op.call, Call::Read))
        .filter_map(|&op| match op.result() {
            Some(Val::List(members)) => Some((op, members)),
            Some(Val::Nil) => Some((op, &empty)),
            _ => None,
        })
        .collect();

    // Replies of SADD: 1 for a member that was new.
    for &op in adds.values() {
        if let (Call::Add { value }, Some(Val::Int(0))) = (&op.call, op.result()) {
            findings.violation(Violation::new(
                "duplicate-add",
                key,
                format!(
                    "#{} added {value:?}, a value nothing else adds, and was told it was already a \
                     member: the add was applied twice",
                    op.id
                ),
                &[op],
            ));
        }
    }

    // Phantoms and duplicates, read by read.
    let mut known: HashMap<&str, Known> = HashMap::new();
    for &op in adds.values() {
        if let (true, Some(done)) = (op.is_ok(), op.complete) {
            known.insert(op_value(op), Known { since: done, by: op, acked: true });
        }
    }
    for &(read, members) in &reads {
        let mut seen = HashSet::new();
        for m in members {
            let add = adds.get(m.as_str()).copied();
            if !seen.insert(m.as_str()) {
                let mut window = vec![read];
                window.extend(add);
                findings.violation(Violation::new(
                    "duplicate-element",
                    key,
                    format!("#{} lists {m:?} more than once: a set holds a member once", read.id),
                    &window,
                ));
                continue;
            }
            let why = match add {
                None => Some("no SADD added it".to_string()),
                Some(a) if a.outcome == Outcome::Fail => {
                    Some(format!("its SADD #{} failed, so surely was not applied", a.id))
                }
                Some(a) if read.complete.is_some_and(|c| c < a.invoke) => {
                    Some(format!("its SADD #{} started only after the read completed", a.id))
                }
                Some(_) => None,
            };
            if let Some(why) = why {
                let mut window = vec![read];
                window.extend(add);
                findings.violation(Violation::new(
                    "phantom-element",
                    key,
                    format!("#{} holds {m:?}, but {why}", read.id),
                    &window,
                ));
                continue;
            }
            let Some(done) = read.complete else { continue };
            let k =
                known.entry(m.as_str()).or_insert(Known { since: done, by: read, acked: false });
            if done < k.since {
                *k = Known { since: done, by: read, acked: false };
            }
        }
    }

    // Lost adds and stale reads: every member known before a read was
    // invoked must be in it. One violation per read, naming the first
    // member missing.
    let mut by_since: Vec<(&str, Known)> = known.into_iter().collect();
    by_since.sort_by_key(|(m, k)| (k.since, k.by.id, *m));
    for &(read, members) in &reads {
        let present: HashSet<&str> = members.iter().map(String::as_str).collect();
        let due = by_since.partition_point(|(_, k)| k.since < read.invoke);
        let missing: Vec<&(&str, Known)> =
            by_since[..due].iter().filter(|(m, _)| !present.contains(m)).collect();
        let Some(&&(first, k)) = missing.first() else { continue };
        let others = match missing.len() {
            1 => String::new(),
            n => format!(" ({} more member(s) known by then are missing too)", n - 1),
        };
        let (anomaly, how) = if k.acked {
            (
                "lost-add",
                format!("its SADD #{} was acknowledged before #{} started", k.by.id, read.id),
            )
        } else {
            ("stale-read", format!("#{} had already seen it before #{} started", k.by.id, read.id))
        };
        let mut window = vec![k.by, read];
        if !k.acked {
            window.extend(adds.get(first).copied());
        }
        findings.violation(Violation::new(
            anomaly,
            key,
            format!("#{} lacks {first:?}, but {how}: a member once added stays{others}", read.id),
            &window,
        ));
    }
}

fn op_value(op: &Op) -> &str {
    match &op.call {
        Call::Add { value } => value,
        _ => "",
    }
}

/// Checks every set key.
pub fn check(history: &History) -> Report {
    let keys = keys_of(history, Workload::Set);
    let mut findings = Findings::default();
    for (key, ops) in &keys {
        check_key(key, ops, &mut findings);
    }
    Report { checker: "set-add", keys: keys.len(), verdict: findings.verdict() }
}

//! Append-only lists (RPUSH key value, read with LRANGE key 0 -1).
//!
//! Like Jepsen's Elle list-append workload, this relies on appended values
//! being unique per key: each element then names the append that wrote it, and
//! since a list only grows at its tail, every read of a key must be a prefix of
//! one final order (Elle's "traceability" and "recoverability"). Judged
//! without a search, per key:
//!
//! * **duplicates**: an element appears twice in one read;
//! * **phantoms**: a read holds a value no append attempted, one whose append
//!   failed (surely not applied), or one whose append started only after the
//!   read had completed;
//! * **incompatible orders**: every read must be a prefix of the longest read;
//!   a read that disagrees with it at some position saw the elements in
//!   another order;
//! * **stale reads**: a read invoked after another completed cannot be shorter;
//! * **lost appends**: an acknowledged append must be in every read invoked
//!   after it completed;
//! * **real-time order**: an append invoked after another was acknowledged must
//!   come after it in the list;
//! * **reported length**: RPUSH's reply (the new length) must match the
//!   element's position in the list.

use std::collections::{HashMap, HashSet};

use super::{keys_of, CompletedBefore, Workload};
use crate::history::{Call, History, Op, Outcome, Val};
use crate::verdict::{Findings, Report, Violation};

/// A successful read: the op and the list it returned.
struct Read<'a> {
    op: &'a Op,
    list: &'a [String],
}

fn check_key(key: &str, ops: &[&Op], findings: &mut Findings) {
    let mut appends: HashMap<&str, &Op> = HashMap::new();
    for &op in ops {
        if let Call::Append { value } = &op.call {
            if let Some(first) = appends.insert(value.as_str(), op) {
                findings.unknown(format!(
                    "key {key:?}: #{} and #{} both append {value:?}; list-append needs \
                     unique values per key",
                    first.id, op.id
                ));
                return;
            }
        }
    }
    let empty: &[String] = &[];
    let reads: Vec<Read> = ops
        .iter()
        .filter(|op| matches!(op.call, Call::Read))
        .filter_map(|&op| match op.result() {
            Some(Val::List(l)) => Some(Read { op, list: l.as_slice() }),
            Some(Val::Nil) => Some(Read { op, list: empty }),
            _ => None,
        })
        .collect();

    // Duplicates and phantoms: reads that show them are left out of the
    // order checks, which assume neither.
    let mut sound: Vec<&Read> = Vec::new();
    for read in &reads {
        let mut ok = true;
        let mut seen = HashSet::new();
        for v in read.list {
            let append = appends.get(v.as_str()).copied();
            if !seen.insert(v.as_str()) {
                ok = false;
                let mut window = vec![read.op];
                window.extend(append);
                findings.violation(Violation::new(
                    "duplicate-element",
                    key,
                    format!(
                        "#{} holds {v:?} more than once: an append was applied twice",
                        read.op.id
                    ),
                    &window,
                ));
                continue;
            }
            let why = match append {
                None => Some("no append wrote it".to_string()),
                Some(a) if a.outcome == Outcome::Fail => {
                    Some(format!("its append #{} failed, so surely was not applied", a.id))
                }
                Some(a) if read.op.complete.is_some_and(|c| c < a.invoke) => {
                    Some(format!("its append #{} started only after the read completed", a.id))
                }
                Some(_) => None,
            };
            if let Some(why) = why {
                ok = false;
                let mut window = vec![read.op];
                window.extend(append);
                findings.violation(Violation::new(
                    "phantom-element",
                    key,
                    format!("#{} holds {v:?}, but {why}", read.op.id),
                    &window,
                ));
            }
        }
        if ok {
            sound.push(read);
        }
    }

    // Incompatible orders: every read must be a prefix of the longest.
    let Some(longest) =
        sound.iter().copied().max_by_key(|r| (r.list.len(), std::cmp::Reverse(r.op.id)))
    else {
        return;
    };
    let mut ordered: Vec<&Read> = Vec::new();
    for &read in &sound {
        match read.list.iter().zip(longest.list).position(|(a, b)| a != b) {
            None => ordered.push(read),
            Some(i) => findings.violation(Violation::new(
                "incompatible-order",
                key,
                format!(
                    "#{} and #{} disagree at position {i} ({:?} vs {:?}): an append-only list \
                     read twice must show one order, one read a prefix of the other",
                    read.op.id, longest.op.id, read.list[i], longest.list[i]
                ),
                &[read.op, longest.op],
            )),
        }
    }
    let position: HashMap<&str, usize> =
        longest.list.iter().enumerate().map(|(i, v)| (v.as_str(), i)).collect();

    // Stale reads: a later read may not be shorter.
    let lengths = CompletedBefore::new(
        ordered.iter().filter_map(|r| r.op.complete.map(|c| (c, r.list.len(), r.op))),
    );
    for read in &ordered {
        if let Some((len, prior)) = lengths.max_before(read.op.invoke) {
            if read.list.len() < len {
                findings.violation(Violation::new(
                    "stale-read",
                    key,
                    format!(
                        "#{} saw {} element(s) after #{} had seen {len} (it completed before \
                         #{} started): the list went back in time",
                        read.op.id,
                        read.list.len(),
                        prior.id,
                        read.op.id
                    ),
                    &[prior, read.op],
                ));
            }
        }
    }

    // Lost appends: acknowledged appends, by completion, with their position
    // in the final order (absent: past the end).
    let mut acked: Vec<&Op> = appends.values().copied().filter(|op| op.is_ok()).collect();
    acked.sort_by_key(|op| op.id);
    let pos_of = |op: &Op| match &op.call {
        Call::Append { value } => position.get(value.as_str()).copied().unwrap_or(usize::MAX),
        _ => usize::MAX,
    };
    let acked_pos = CompletedBefore::new(
        acked.iter().filter_map(|&op| op.complete.map(|c| (c, pos_of(op), op))),
    );
    for read in &ordered {
        if let Some((pos, append)) = acked_pos.max_before(read.op.invoke) {
            if pos >= read.list.len() {
                let value = match &append.call {
                    Call::Append { value } => value.as_str(),
                    _ => "",
                };
                findings.violation(Violation::new(
                    "lost-append",
                    key,
                    format!(
                        "#{} was acknowledged before #{} started, but {value:?} is missing \
                         from what #{} read",
                        append.id, read.op.id, read.op.id
                    ),
                    &[append, read.op],
                ));
            }
        }
    }

    // Real-time order of appends present in the list.
    for (p, v) in longest.list.iter().enumerate() {
        let Some(&b) = appends.get(v.as_str()) else { continue };
        if let Some((pa, a)) = acked_pos.max_before(b.invoke) {
            if pa > p {
                let how = if pa == usize::MAX {
                    format!("is missing from #{}, which holds #{}'s element", longest.op.id, b.id)
                } else {
                    format!("comes after {v:?} in #{} (position {pa} against {p})", longest.op.id)
                };
                findings.violation(Violation::new(
                    "reordered-append",
                    key,
                    format!(
                        "#{} was acknowledged before #{} started, but its element {how}",
                        a.id, b.id
                    ),
                    &[a, b, longest.op],
                ));
            }
        }
    }

    // RPUSH's reply: the new length.
    for &op in &acked {
        let (Some(Val::Int(len)), Some(&p)) = (
            op.result(),
            match &op.call {
                Call::Append { value } => position.get(value.as_str()),
                _ => None,
            },
        ) else {
            continue;
        };
        if usize::try_from(*len).ok() != Some(p + 1) {
            findings.violation(Violation::new(
                "wrong-length",
                key,
                format!(
                    "#{} was told the list's new length is {len}, but its element is at \
                     position {p} of #{}: the list changed under it",
                    op.id, longest.op.id
                ),
                &[op, longest.op],
            ));
        }
    }
}

/// Checks every list key.
pub fn check(history: &History) -> Report {
    let keys = keys_of(history, Workload::List);
    let mut findings = Findings::default();
    for (key, ops) in &keys {
        check_key(key, ops, &mut findings);
    }
    Report { checker: "list-append", keys: keys.len(), verdict: findings.verdict() }
}

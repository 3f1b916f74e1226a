//! Per-key linearizability of registers (GET / SET / DEL / compare-and-set).
//!
//! Each register key is searched alone with the [WGL search](super::wgl)
//! (P-compositionality: a history is linearizable iff each key's is). Values
//! are interned per key so the model state is a small integer (0 = nil).
//!
//! * Failed operations are left out: they surely did not happen.
//! * Reads with an unknown outcome are left out: they changed nothing and told
//!   nothing.
//! * Writes, deletes and compare-and-sets with an unknown outcome may take
//!   effect at any point after their invoke, or never: they enter the search
//!   with no return and an unconstrained output, after the rewrites of
//!   [`super::unknown_ops`] dropped those that cannot matter and bounded those
//!   that a read observed.
//!
//! When a key is not linearizable the violation shows the furthest point the
//! search reached (as Porcupine's visualisation does): the longest partial
//! linearization, the register's value there, the operation whose return could
//! not be passed, and the operations concurrent with it. That window is the
//! smallest set that needs looking at: no ordering of those candidates explains
//! the blocked operation's output from that state.

use std::collections::HashMap;

use super::wgl::{self, Entry, Model, Search};
use super::{keys_of, unknown_ops, Budget, Workload};
use crate::history::{Call, History, Op, Outcome, Val};
use crate::verdict::{Findings, Report, Violation};

/// A register operation, with values interned (0 = nil).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegOp {
    Read(u32),
    Write(u32),
    /// `Some(true)` if the reply said a key was removed.
    Delete(Option<bool>),
    /// `swapped`: the reply, `None` when unknown.
    Cas {
        expected: u32,
        new: u32,
        swapped: Option<bool>,
    },
}

/// The sequential register.
#[derive(Debug, Default, Clone, Copy)]
pub struct RegisterModel;

impl Model for RegisterModel {
    type State = u32;
    type Op = RegOp;

    fn step(&self, &state: &u32, op: &RegOp) -> Option<u32> {
        match *op {
            RegOp::Read(v) => (v == state).then_some(state),
            RegOp::Write(v) => Some(v),
            RegOp::Delete(removed) => match removed {
                Some(r) if r != (state != 0) => None,
                _ => Some(0),
            },
            RegOp::Cas { expected, new, swapped } => {
                let swaps = state == expected;
                match swapped {
                    Some(s) if s != swaps => None,
                    _ => Some(if swaps { new } else { state }),
                }
            }
        }
    }
}

/// Value interning for one key.
#[derive(Debug, Default)]
struct Values {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Values {
    fn id(&mut self, v: Option<&str>) -> u32 {
        let Some(v) = v else { return 0 };
        if let Some(&id) = self.ids.get(v) {
            return id;
        }
        self.names.push(v.to_string());
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.ids.insert(v.to_string(), id);
        id
    }

    fn show(&self, id: u32) -> String {
        match id.checked_sub(1).and_then(|i| self.names.get(i as usize)) {
            Some(s) => format!("{s:?}"),
            None => "nil".to_string(),
        }
    }
}

/// The value a read returned, as a register sees it.
pub(crate) fn read_value(v: &Val) -> Option<String> {
    match v {
        Val::Str(s) => Some(s.clone()),
        Val::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn reply_bool(v: &Val) -> Option<bool> {
    match v {
        Val::Bool(b) => Some(*b),
        Val::Int(i) => Some(*i != 0),
        _ => None,
    }
}

/// The value `op` would write, if it writes one already interned (failed
/// and unknown operations included: this is for explanations).
fn writes(op: &Op, values: &Values) -> Option<u32> {
    let v = match &op.call {
        Call::Write { value } | Call::Cas { value, .. } => value,
        _ => return None,
    };
    values.ids.get(v.as_str()).copied()
}

/// Turns one key's operations into search entries (and the ops they came from).
fn entries<'a>(ops: &[&'a Op], values: &mut Values) -> (Vec<Entry<RegOp>>, Vec<&'a Op>) {
    let mut entries = Vec::with_capacity(ops.len());
    let mut origin = Vec::with_capacity(ops.len());
    for &op in ops {
        let reply = match &op.outcome {
            Outcome::Fail => continue,
            Outcome::Unknown => None,
            Outcome::Ok(v) => Some(v),
        };
        let reg = match &op.call {
            Call::Read => match reply {
                Some(v) => RegOp::Read(values.id(read_value(v).as_deref())),
                None => continue,
            },
            Call::Write { value } => RegOp::Write(values.id(Some(value))),
            Call::Delete => RegOp::Delete(reply.and_then(|v| match v {
                Val::Int(n) => Some(*n > 0),
                _ => None,
            })),
            Call::Cas { expected, value } => RegOp::Cas {
                expected: values.id(expected.as_deref()),
                new: values.id(Some(value)),
                swapped: reply.and_then(reply_bool),
            },
            _ => continue,
        };
        entries.push(Entry { op: reg, invoke: op.invoke, complete: op.effective_complete() });
        origin.push(op);
    }
    (entries, origin)
}

/// Checks one key's operations.
fn check_key(key: &str, ops: &[&Op], budget: &Budget, findings: &mut Findings) {
    let mut values = Values::default();
    let (entries, origin) = entries(ops, &mut values);
    let (entries, origin) = unknown_ops::tighten(entries, origin);
    match wgl::search(&RegisterModel, 0, &entries, budget) {
        Search::Linearizable(_) => {}
        Search::OutOfBudget { steps, deepest } => findings.unknown(format!(
            "key {key:?}: search budget ran out after {steps} steps \
             ({deepest} of {} operations linearized at best)",
            entries.len()
        )),
        Search::NotLinearizable(stuck) => {
            let blocked = origin[stuck.blocked];
            let last_write = stuck
                .linearized
                .iter()
                .rev()
                .copied()
                .find(|&i| !matches!(entries[i].op, RegOp::Read(_)))
                .map(|i| origin[i]);
            let mut window: Vec<&Op> = stuck.candidates.iter().map(|&i| origin[i]).collect();
            window.extend(last_write);
            // Where the value a blocked read saw came from, if anywhere.
            let mut source = String::new();
            if let RegOp::Read(v) = entries[stuck.blocked].op {
                let writers: Vec<&Op> = ops
                    .iter()
                    .copied()
                    .filter(|op| writes(op, &values) == Some(v))
                    .take(3)
                    .collect();
                source = match writers.as_slice() {
                    [] if v == 0 => String::new(),
                    [] => format!("; no operation wrote {}", values.show(v)),
                    ws => {
                        let ids: Vec<String> = ws.iter().map(|w| format!("#{}", w.id)).collect();
                        format!("; {} was written by {}", values.show(v), ids.join(", "))
                    }
                };
                window.extend(writers);
            }
            let others: Vec<String> = stuck
                .candidates
                .iter()
                .filter(|&&i| i != stuck.blocked)
                .map(|&i| format!("#{}", origin[i].id))
                .collect();
            let from = match last_write {
                Some(w) => format!(" (last set by #{})", w.id),
                None => String::new(),
            };
            let anomaly = match entries[stuck.blocked].op {
                RegOp::Read(_) => "non-linearizable-read",
                _ => "non-linearizable",
            };
            let explanation = format!(
                "no linearization: the longest partial linearization orders {} of {} \
                 operations and leaves the register at {}{from}; from there #{} cannot \
                 take effect before it returned, whichever of the operations concurrent \
                 with it ({}) go first{source}",
                stuck.linearized.len(),
                entries.len(),
                values.show(stuck.state),
                blocked.id,
                if others.is_empty() { "none".to_string() } else { others.join(", ") },
            );
            findings.violation(Violation::new(anomaly, key, explanation, &window));
        }
    }
}

/// Checks every register key for linearizability.
pub fn check(history: &History, budget: &Budget) -> Report {
    let keys = keys_of(history, Workload::Register);
    let mut findings = Findings::default();
    for (key, ops) in &keys {
        check_key(key, ops, budget, &mut findings);
    }
    Report { checker: "linearizable", keys: keys.len(), verdict: findings.verdict() }
}

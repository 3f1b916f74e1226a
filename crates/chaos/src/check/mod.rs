//! The checkers.
//!
//! Every key belongs to one workload, told by the operations it sees
//! ([`classify`]): a key that is incremented is a counter, one that is
//! appended to is a list, one added to is a set, one written with a ttl
//! expires, one that is locked is a lock, and any other key is a
//! register. A key seen only by reads is a list if a read returned a list, a
//! counter if one returned an integer, else a register. Each checker judges
//! the keys of its workload, each key alone (the histories of distinct keys
//! are independent: this is the P-compositionality that Porcupine and
//! Horn & Kroening rely on, and it holds for every property checked here).
//!
//! Every key starts absent: the harness uses fresh keys for each run.

pub mod counter;
pub mod list_append;
pub mod lock;
pub mod lost_writes;
pub mod register;
pub mod set_add;
pub mod ttl;
mod unknown_ops;
pub mod wgl;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::history::{Call, History, Nanos, Op, Val};
use crate::verdict::Report;

/// How much searching the linearizability checker may do before answering
/// Unknown.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Search steps allowed for one key.
    pub max_steps_per_key: u64,
    /// Wall-clock time for the whole check.
    pub deadline: Option<Instant>,
}

impl Budget {
    pub const DEFAULT_STEPS_PER_KEY: u64 = 5_000_000;

    pub fn new(max_steps_per_key: u64, timeout: Option<Duration>) -> Self {
        Budget { max_steps_per_key, deadline: timeout.map(|t| Instant::now() + t) }
    }

    pub fn out_of_time(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget { max_steps_per_key: Self::DEFAULT_STEPS_PER_KEY, deadline: None }
    }
}

/// The workload a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    Register,
    Counter,
    List,
    Lock,
    /// Grow-only sets (SADD + SMEMBERS).
    Set,
    /// Registers written with a ttl (SET PX + GET).
    Ttl,
}

impl Workload {
    fn of_call(call: &Call) -> Option<Workload> {
        match call {
            Call::Read => None,
            Call::Write { .. } | Call::Delete | Call::Cas { .. } => Some(Workload::Register),
            Call::Incr { .. } => Some(Workload::Counter),
            Call::Append { .. } => Some(Workload::List),
            Call::Add { .. } => Some(Workload::Set),
            Call::WriteTtl { .. } => Some(Workload::Ttl),
            Call::LockAcquire { .. } | Call::LockRelease { .. } => Some(Workload::Lock),
        }
    }

    fn of_read(result: &Val) -> Option<Workload> {
        match result {
            Val::List(_) => Some(Workload::List),
            Val::Int(_) => Some(Workload::Counter),
            Val::Str(_) => Some(Workload::Register),
            _ => None,
        }
    }
}

/// A key whose operations belong to more than one workload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key {key:?} mixes workloads ({first:?} by op #{first_op}, {second:?} by op #{second_op})")]
pub struct MixedKey {
    pub key: String,
    pub first: Workload,
    pub first_op: usize,
    pub second: Workload,
    pub second_op: usize,
}

/// The workload of every key, or the first key that mixes workloads.
pub fn classify(history: &History) -> Result<BTreeMap<&str, Workload>, MixedKey> {
    let mut first: BTreeMap<&str, (Workload, usize)> = BTreeMap::new();
    for op in &history.ops {
        let Some(w) = Workload::of_call(&op.call) else { continue };
        match first.get(op.key.as_str()) {
            Some(&(f, first_op)) if f != w => {
                return Err(MixedKey {
                    key: op.key.clone(),
                    first: f,
                    first_op,
                    second: w,
                    second_op: op.id,
                })
            }
            Some(_) => {}
            None => {
                first.insert(&op.key, (w, op.id));
            }
        }
    }
    Ok(workloads(history))
}

/// The workload of every key: that of its first mutation, else that told by
/// its reads (a list or an integer says more than a string or nil).
fn workloads(history: &History) -> BTreeMap<&str, Workload> {
    let mut by_call: BTreeMap<&str, Workload> = BTreeMap::new();
    let mut by_read: BTreeMap<&str, Workload> = BTreeMap::new();
    for op in &history.ops {
        if let Some(w) = Workload::of_call(&op.call) {
            by_call.entry(&op.key).or_insert(w);
        } else if let Some(w) = op.result().and_then(Workload::of_read) {
            let e = by_read.entry(&op.key).or_insert(w);
            if w != Workload::Register {
                *e = w;
            }
        }
    }
    history
        .ops
        .iter()
        .map(|op| {
            let key = op.key.as_str();
            let w = by_call
                .get(key)
                .or_else(|| by_read.get(key))
                .copied()
                .unwrap_or(Workload::Register);
            (key, w)
        })
        .collect()
}

/// The operations of each key of `workload`, in history order. A key that
/// mixes workloads goes with its first mutation (see [`check_all`], which
/// refuses such histories).
pub fn keys_of(history: &History, workload: Workload) -> BTreeMap<&str, Vec<&Op>> {
    let workloads = workloads(history);
    let mut out: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in &history.ops {
        if workloads.get(op.key.as_str()) == Some(&workload) {
            out.entry(&op.key).or_default().push(op);
        }
    }
    out
}

/// The names of the checkers, in the order [`check_all`] runs them.
pub const CHECKERS: [&str; 7] =
    ["linearizable", "lost-writes", "counter", "list-append", "set-add", "ttl", "lock"];

/// Runs one checker by name; `None` for an unknown name.
pub fn run_checker(name: &str, history: &History, budget: &Budget) -> Option<Report> {
    Some(match name {
        "linearizable" => register::check(history, budget),
        "lost-writes" => lost_writes::check(history),
        "counter" => counter::check(history),
        "list-append" => list_append::check(history),
        "set-add" => set_add::check(history),
        "ttl" => ttl::check(history),
        "lock" => lock::check(history),
        _ => return None,
    })
}

/// Runs every checker.
pub fn check_all(history: &History, budget: &Budget) -> Result<Vec<Report>, MixedKey> {
    classify(history)?;
    Ok(CHECKERS.iter().filter_map(|name| run_checker(name, history, budget)).collect())
}

/// Answers "of the operations that completed before time t, which has the
/// largest value?" in O(log n), for the real-time-order checks: if x
/// completed before y was invoked, x precedes y in any linearization.
#[derive(Debug)]
pub(crate) struct CompletedBefore<'a, V: Ord + Copy> {
    /// (completion, running maximum value, the op that holds it), by completion.
    entries: Vec<(Nanos, V, &'a Op)>,
}

impl<'a, V: Ord + Copy> CompletedBefore<'a, V> {
    pub(crate) fn new(items: impl IntoIterator<Item = (Nanos, V, &'a Op)>) -> Self {
        let mut entries: Vec<(Nanos, V, &'a Op)> = items.into_iter().collect();
        entries.sort_by_key(|&(c, _, op)| (c, op.id));
        for i in 1..entries.len() {
            if entries[i - 1].1 > entries[i].1 {
                entries[i].1 = entries[i - 1].1;
                entries[i].2 = entries[i - 1].2;
            }
        }
        CompletedBefore { entries }
    }

    /// The largest value among entries that completed strictly before `t`.
    pub(crate) fn max_before(&self, t: Nanos) -> Option<(V, &'a Op)> {
        let n = self.entries.partition_point(|&(c, _, _)| c < t);
        n.checked_sub(1).map(|i| (self.entries[i].1, self.entries[i].2))
    }
}

/// Sums of values (e.g. increments) by time, for "how much was done before t".
#[derive(Debug, Default)]
pub(crate) struct SumsByTime {
    /// (time, running sum), by time.
    entries: Vec<(Nanos, i128)>,
}

impl SumsByTime {
    pub(crate) fn new(items: impl IntoIterator<Item = (Nanos, i64)>) -> Self {
        let mut entries: Vec<(Nanos, i128)> =
            items.into_iter().map(|(t, v)| (t, i128::from(v))).collect();
        entries.sort_by_key(|&(t, _)| t);
        for i in 1..entries.len() {
            entries[i].1 += entries[i - 1].1;
        }
        SumsByTime { entries }
    }

    /// The sum of the values at times strictly before `t`.
    pub(crate) fn before(&self, t: Nanos) -> i128 {
        let n = self.entries.partition_point(|&(at, _)| at < t);
        n.checked_sub(1).map_or(0, |i| self.entries[i].1)
    }

    /// The sum of the values at times at or before `t`.
    pub(crate) fn up_to(&self, t: Nanos) -> i128 {
        let n = self.entries.partition_point(|&(at, _)| at <= t);
        n.checked_sub(1).map_or(0, |i| self.entries[i].1)
    }
}

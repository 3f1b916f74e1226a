//! Taming unknown-outcome operations before the register search.
//!
//! An operation with an unknown outcome has no return event: the WGL search
//! may linearize it at any point after its invoke, or never. With *k* of them
//! pending, an invalid history makes the search try up to 2^k subsets of them
//! at every point before the violation, which is the classic blow-up of
//! Knossos and Porcupine on histories with many `:info` operations. Two
//! rewrites, each keeping exactly the histories' verdicts, remove most of it:
//!
//! * **Unobserved writes are dropped.** An unknown write of value *v* that no
//!   read returned and no compare-and-set expected, on a key where no
//!   operation's reply tells "the register was not nil" or "was not *e*"
//!   (an acknowledged DEL that removed a key, a completed compare-and-set
//!   that did not surely swap),
//!   cannot explain any reply: in any linearization that applies it, the
//!   operations until the next write cannot be reads (they would return
//!   *v*), so removing it changes no reply, except that of an unknown
//!   compare-and-set, which then may swap where it did not, and is itself
//!   taken to have never happened.
//! * **Observed writes get a deadline.** When the only operation that could
//!   write *v* (by SET or compare-and-set) has an unknown outcome and some
//!   read returned *v*, every linearization applies it before the first such
//!   read completes: that completion becomes its return, so it stops being
//!   pending forever.
//!
//! The harness's register workloads write unique values, which makes both
//! rules apply to nearly every unknown write.

use std::collections::{HashMap, HashSet};

use super::register::RegOp;
use super::wgl::Entry;
use crate::history::Nanos;

/// The value `op` writes when it takes effect (compare-and-set: if it swaps).
fn written(op: &RegOp) -> Option<u32> {
    match *op {
        RegOp::Write(v) => Some(v),
        RegOp::Cas { new, .. } => Some(new),
        _ => None,
    }
}

/// Drops unobserved unknown writes and bounds observed ones, keeping
/// `origin` aligned with the entries.
pub(crate) fn tighten<T>(
    entries: Vec<Entry<RegOp>>,
    origin: Vec<T>,
) -> (Vec<Entry<RegOp>>, Vec<T>) {
    let mut observed: HashSet<u32> = HashSet::new();
    let mut first_read_done: HashMap<u32, Nanos> = HashMap::new();
    let mut writers: HashMap<u32, usize> = HashMap::new();
    let mut weak_observers = false;
    for e in &entries {
        match e.op {
            RegOp::Read(v) => {
                observed.insert(v);
                if let Some(c) = e.complete {
                    let first = first_read_done.entry(v).or_insert(c);
                    *first = (*first).min(c);
                }
            }
            RegOp::Cas { expected, swapped, .. } => {
                observed.insert(expected);
                // A completed compare-and-set that did not surely swap: its
                // reply (or effect) depends on the register not holding
                // `expected`.
                weak_observers |= e.complete.is_some() && swapped != Some(true);
            }
            RegOp::Delete(removed) => weak_observers |= removed == Some(true),
            RegOp::Write(_) => {}
        }
        if let Some(v) = written(&e.op) {
            *writers.entry(v).or_default() += 1;
        }
    }
    let mut kept = Vec::with_capacity(entries.len());
    let mut kept_origin = Vec::with_capacity(origin.len());
    for (mut e, op) in entries.into_iter().zip(origin) {
        if e.complete.is_none() {
            if let Some(v) = written(&e.op) {
                if !observed.contains(&v) {
                    if !weak_observers && matches!(e.op, RegOp::Write(_)) {
                        continue;
                    }
                } else if writers.get(&v) == Some(&1) {
                    if let Some(&done) = first_read_done.get(&v) {
                        e.complete = Some(done.max(e.invoke));
                    }
                }
            }
        }
        kept.push(e);
        kept_origin.push(op);
    }
    (kept, kept_origin)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::check::register::RegisterModel;
    use crate::check::wgl::{search, Search};
    use crate::check::Budget;

    fn reg_op() -> impl Strategy<Value = RegOp> {
        prop_oneof![
            (0u32..3).prop_map(RegOp::Read),
            (1u32..3).prop_map(RegOp::Write),
            prop::option::of(any::<bool>()).prop_map(RegOp::Delete),
            (0u32..3, 1u32..3, prop::option::of(any::<bool>()))
                .prop_map(|(expected, new, swapped)| RegOp::Cas { expected, new, swapped }),
        ]
    }

    /// Random (mostly invalid) histories: reads return arbitrary values.
    fn history() -> impl Strategy<Value = Vec<Entry<RegOp>>> {
        prop::collection::vec(
            (reg_op(), 0u64..30, 0u64..15, 0u8..4).prop_map(|(op, invoke, dur, fate)| {
                let unknown = fate == 0 && !matches!(op, RegOp::Read(_));
                let op = match op {
                    RegOp::Delete(_) if unknown => RegOp::Delete(None),
                    RegOp::Cas { expected, new, .. } if unknown => {
                        RegOp::Cas { expected, new, swapped: None }
                    }
                    op => op,
                };
                Entry { op, invoke, complete: (!unknown).then_some(invoke + dur) }
            }),
            0..12,
        )
    }

    fn linearizable(entries: &[Entry<RegOp>]) -> bool {
        match search(&RegisterModel, 0, entries, &Budget::default()) {
            Search::Linearizable(_) => true,
            Search::NotLinearizable(_) => false,
            Search::OutOfBudget { .. } => panic!("tiny histories fit the budget"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        /// The rewrites never change a verdict.
        #[test]
        fn tightening_keeps_the_verdict(entries in history()) {
            let origin = vec![(); entries.len()];
            let (tight, _) = tighten(entries.clone(), origin);
            prop_assert_eq!(linearizable(&entries), linearizable(&tight), "{:?}", entries);
        }
    }
}

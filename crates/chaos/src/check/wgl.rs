//! A bounded linearizability search: the Wing & Gong algorithm with Lowe's
//! just-in-time linearization and memoization ("WGL"), as in Porcupine and
//! Jepsen's Knossos (`knossos.wgl`).
//!
//! The history of one key becomes a doubly linked list of call and return
//! events sorted by time (a call before a return at the same instant, so
//! operations that merely touch count as concurrent). The search walks the
//! list from its head:
//!
//! * at a **call**, it tries to linearize that operation now: if the model
//!   accepts it from the current state and the pair (set of linearized
//!   operations, new state) was never seen before, the operation's call and
//!   return are lifted out of the list, the old state is pushed on a stack, and
//!   the walk restarts at the head; otherwise it moves to the next event;
//! * at a **return**, the operation returning has not been linearized yet,
//!   and every order that puts it later is wrong: the search backtracks by
//!   popping the last linearized operation, putting its events back, and
//!   moving past its call.
//!
//! The history is linearizable when no return is left; when the stack is
//! empty at a return, it is not. The memo (Lowe's improvement) keys on a
//! bitset of linearized operations plus the model state: two paths reaching
//! the same pair have the same futures, so the second is cut.
//!
//! Operations with an unknown outcome have no return event (their completion
//! is +infinity, as in Knossos and Porcupine): they may be linearized anywhere
//! after their call, and the search succeeds once every operation *with* a
//! return is linearized, leaving the unknown ones either never applied or
//! applied at the end, which a model must always accept for them (their output
//! is unconstrained).
//!
//! The search is bounded by a step count and a deadline, so it always ends;
//! when the budget runs out the answer is [`Search::OutOfBudget`].

use std::collections::HashSet;
use std::hash::Hash;

use crate::check::Budget;
use crate::history::Nanos;

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash;
    type Op;
    /// The state after applying `op` in `state`, or `None` if `op`'s recorded
    /// output is impossible there.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
}

/// One operation to linearize.
#[derive(Debug, Clone)]
pub struct Entry<O> {
    pub op: O,
    pub invoke: Nanos,
    /// `None`: never returned (unknown outcome).
    pub complete: Option<Nanos>,
}

/// Where the search got stuck furthest: the longest partial linearization.
#[derive(Debug, Clone)]
pub struct Stuck<S> {
    /// Entry indices, in linearization order.
    pub linearized: Vec<usize>,
    /// The state after them.
    pub state: S,
    /// The operation whose return the search could not pass.
    pub blocked: usize,
    /// The operations that could have been linearized next (invoked before
    /// `blocked` returned and not linearized), `blocked` among them.
    pub candidates: Vec<usize>,
}

/// The result of a search.
#[derive(Debug, Clone)]
pub enum Search<S> {
    /// Entry indices in a valid linearization order (unknown operations left
    /// out are taken to have never happened).
    Linearizable(Vec<usize>),
    NotLinearizable(Stuck<S>),
    OutOfBudget {
        steps: u64,
        deepest: usize,
    },
}

const NIL: usize = usize::MAX;

/// The event list: node 0 is the head sentinel, node `1 + 2i` the call of
/// entry `i`, node `2 + 2i` its return (unlinked from the start when the entry
/// never returned).
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
}

fn call_node(i: usize) -> usize {
    1 + 2 * i
}

fn ret_node(i: usize) -> usize {
    2 + 2 * i
}

/// The entry a node belongs to, and whether it is a call.
fn node_entry(node: usize) -> (usize, bool) {
    ((node - 1) / 2, node % 2 == 1)
}

impl Events {
    fn new<O>(entries: &[Entry<O>]) -> Self {
        // (time, 0 for call / 1 for return, entry) sorts calls before returns
        // at the same instant.
        let mut events: Vec<(Nanos, u8, usize)> = Vec::with_capacity(entries.len() * 2);
        for (i, e) in entries.iter().enumerate() {
            events.push((e.invoke, 0, i));
            if let Some(c) = e.complete {
                events.push((c, 1, i));
            }
        }
        events.sort_unstable();
        let n = 1 + 2 * entries.len();
        let mut next = vec![NIL; n];
        let mut prev = vec![NIL; n];
        let mut last = 0;
        for &(_, kind, i) in &events {
            let node = if kind == 0 { call_node(i) } else { ret_node(i) };
            next[last] = node;
            prev[node] = last;
            last = node;
        }
        Events { next, prev }
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        if n != NIL {
            self.prev[n] = node;
        }
    }

    /// Removes entry `i`'s events (dancing links: put back in reverse order).
    fn lift(&mut self, i: usize, returns: bool) {
        self.unlink(call_node(i));
        if returns {
            self.unlink(ret_node(i));
        }
    }

    fn unlift(&mut self, i: usize, returns: bool) {
        if returns {
            self.relink(ret_node(i));
        }
        self.relink(call_node(i));
    }

    /// The entries whose calls come before `node`.
    fn calls_before(&self, node: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = self.next[0];
        while at != NIL && at != node {
            let (i, is_call) = node_entry(at);
            if is_call {
                out.push(i);
            }
            at = self.next[at];
        }
        out
    }
}

/// Searches for a linearization of `entries` from `init`.
pub fn search<M: Model>(
    model: &M,
    init: M::State,
    entries: &[Entry<M::Op>],
    budget: &Budget,
) -> Search<M::State> {
    let mut events = Events::new(entries);
    let returns: Vec<bool> = entries.iter().map(|e| e.complete.is_some()).collect();
    let mut remaining = returns.iter().filter(|&&r| r).count();
    let words = entries.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut memo: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = init;
    let mut stuck: Option<Stuck<M::State>> = None;
    let mut steps: u64 = 0;
    let mut deepest = 0;
    let mut node = events.next[0];

    while remaining > 0 {
        steps += 1;
        if steps > budget.max_steps_per_key || (steps.is_multiple_of(4096) && budget.out_of_time())
        {
            return Search::OutOfBudget { steps, deepest };
        }
        let at_return = node == NIL || !node_entry(node).1;
        if !at_return {
            let (i, _) = node_entry(node);
            if let Some(new_state) = model.step(&state, &entries[i].op) {
                linearized[i / 64] |= 1 << (i % 64);
                if memo.insert((linearized.clone(), new_state.clone())) {
                    stack.push((i, std::mem::replace(&mut state, new_state)));
                    deepest = deepest.max(stack.len());
                    events.lift(i, returns[i]);
                    if returns[i] {
                        remaining -= 1;
                    }
                    node = events.next[0];
                    continue;
                }
                linearized[i / 64] &= !(1 << (i % 64));
            }
            node = events.next[node];
            continue;
        }
        // A return: its operation cannot be linearized after what is on the
        // stack. Remember the furthest point for the explanation.
        if node != NIL && stuck.as_ref().is_none_or(|s| stack.len() > s.linearized.len()) {
            stuck = Some(Stuck {
                linearized: stack.iter().map(|&(i, _)| i).collect(),
                state: state.clone(),
                blocked: node_entry(node).0,
                candidates: events.calls_before(node),
            });
        }
        let Some((i, old)) = stack.pop() else {
            break;
        };
        linearized[i / 64] &= !(1 << (i % 64));
        state = old;
        events.unlift(i, returns[i]);
        if returns[i] {
            remaining += 1;
        }
        node = events.next[call_node(i)];
    }
    if remaining == 0 {
        return Search::Linearizable(stack.into_iter().map(|(i, _)| i).collect());
    }
    match stuck {
        Some(s) => Search::NotLinearizable(s),
        // Unreachable: the loop only gives up at a return, which sets `stuck`.
        None => Search::OutOfBudget { steps, deepest },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register of small integers: (write?, value).
    struct Reg;
    impl Model for Reg {
        type State = u8;
        type Op = (bool, u8);
        fn step(&self, s: &u8, op: &(bool, u8)) -> Option<u8> {
            match op {
                (true, v) => Some(*v),
                (false, v) if v == s => Some(*s),
                _ => None,
            }
        }
    }

    fn e(write: bool, v: u8, invoke: Nanos, complete: Option<Nanos>) -> Entry<(bool, u8)> {
        Entry { op: (write, v), invoke, complete }
    }

    #[test]
    fn overlapping_write_and_read() {
        let h = [e(true, 1, 0, Some(10)), e(false, 1, 5, Some(6)), e(false, 0, 1, Some(2))];
        assert!(matches!(search(&Reg, 0, &h, &Budget::default()), Search::Linearizable(_)));
    }

    #[test]
    fn stale_read() {
        let h = [e(true, 1, 0, Some(10)), e(false, 0, 11, Some(12))];
        match search(&Reg, 0, &h, &Budget::default()) {
            Search::NotLinearizable(s) => {
                assert_eq!(s.blocked, 1);
                assert_eq!(s.linearized, vec![0]);
                assert_eq!(s.state, 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_write_may_apply_late_or_never() {
        let later = [e(true, 1, 0, None), e(false, 0, 5, Some(6)), e(false, 1, 7, Some(8))];
        assert!(matches!(search(&Reg, 0, &later, &Budget::default()), Search::Linearizable(_)));
        let never = [e(true, 1, 0, None), e(false, 0, 5, Some(6))];
        assert!(matches!(search(&Reg, 0, &never, &Budget::default()), Search::Linearizable(_)));
        let before_invoke = [e(false, 1, 0, Some(1)), e(true, 1, 5, None)];
        assert!(matches!(
            search(&Reg, 0, &before_invoke, &Budget::default()),
            Search::NotLinearizable(_)
        ));
    }

    #[test]
    fn budget_bounds_the_search() {
        let h: Vec<_> = (0..40).map(|i| e(i % 2 == 0, (i % 7) as u8, 0, Some(100))).collect();
        let tiny = Budget { max_steps_per_key: 10, deadline: None };
        assert!(matches!(search(&Reg, 0, &h, &tiny), Search::OutOfBudget { .. }));
    }
}

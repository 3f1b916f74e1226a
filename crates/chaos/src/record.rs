//! Recording a history from live clients.
//!
//! Workers call [`Recorder::invoke`] just before writing a request and
//! [`Pending::ok`], [`Pending::fail`] or [`Pending::unknown`] when they know how
//! it ended; [`Recorder::finish`] closes whatever is still in flight as unknown
//! and returns the history ordered by invoke time. Times come from one
//! monotonic clock started with the recorder, so they are comparable across
//! clients (the checkers compare real-time order between processes).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::history::{Call, History, Nanos, NemesisEvent, Op, Outcome, Phase, Val};

#[derive(Debug, Default)]
struct Inner {
    /// Operations by recording slot; unknown with no completion while in
    /// flight.
    ops: Vec<Op>,
    /// Faults' starts and ends, in recording order.
    nemesis: Vec<NemesisEvent>,
}

/// A thread-safe history recorder.
#[derive(Debug, Clone)]
pub struct Recorder {
    start: Instant,
    inner: Arc<Mutex<Inner>>,
}

/// An invoked operation waiting for its outcome. Dropping it without an
/// outcome leaves the operation in flight (unknown at [`Recorder::finish`]).
#[must_use = "record the operation's outcome"]
#[derive(Debug)]
pub struct Pending {
    recorder: Recorder,
    slot: usize,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder whose time zero is now.
    pub fn new() -> Self {
        Recorder { start: Instant::now(), inner: Arc::default() }
    }

    /// Nanoseconds since the recorder started.
    pub fn now(&self) -> Nanos {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A worker that panicked while holding the lock cannot have left the
        // Vec half-updated in a way that matters to us.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the invocation of `call` on `key` by `process`.
    pub fn invoke(&self, process: u64, key: impl Into<String>, call: Call) -> Pending {
        let invoke = self.now();
        let op = Op {
            id: 0,
            process,
            key: key.into(),
            call,
            invoke,
            complete: None,
            outcome: Outcome::Unknown,
        };
        let mut inner = self.lock();
        inner.ops.push(op);
        Pending { recorder: self.clone(), slot: inner.ops.len() - 1 }
    }

    /// Records a fault's start or end now; returns its time.
    pub fn nemesis(
        &self,
        name: impl Into<String>,
        phase: Phase,
        nodes: Vec<u32>,
        detail: impl Into<String>,
    ) -> Nanos {
        let time = self.now();
        let event =
            NemesisEvent { nemesis: name.into(), phase, time, nodes, detail: detail.into() };
        self.lock().nemesis.push(event);
        time
    }

    /// How many operations were invoked so far.
    pub fn len(&self) -> usize {
        self.lock().ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn complete(&self, slot: usize, outcome: Outcome) {
        let now = self.now();
        let mut inner = self.lock();
        if let Some(op) = inner.ops.get_mut(slot) {
            op.complete = Some(now);
            op.outcome = outcome;
        }
    }

    /// The history so far: in-flight operations are unknown, ordered by invoke.
    pub fn finish(&self) -> History {
        let inner = self.lock();
        let mut ops = inner.ops.clone();
        ops.sort_by_key(|op| op.invoke);
        History::new(ops).with_nemesis(inner.nemesis.clone())
    }
}

impl Pending {
    /// Acknowledged with reply `value`.
    pub fn ok(self, value: Val) {
        self.recorder.complete(self.slot, Outcome::Ok(value));
    }

    /// Surely not applied.
    pub fn fail(self) {
        self.recorder.complete(self.slot, Outcome::Fail);
    }

    /// Timed out, connection lost, or -UNCERTAIN: may or may not apply.
    pub fn unknown(self) {
        self.recorder.complete(self.slot, Outcome::Unknown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_outcomes_and_leaves_in_flight_unknown() {
        let r = Recorder::new();
        r.invoke(1, "x", Call::Write { value: "a".into() }).ok(Val::Nil);
        let in_flight = r.invoke(2, "x", Call::Read);
        r.invoke(3, "x", Call::Delete).fail();
        let h = r.finish();
        assert_eq!(h.ops.len(), 3);
        assert!(h.ops[0].is_ok() && h.ops[0].complete.is_some());
        assert_eq!(h.ops[1].outcome, Outcome::Unknown);
        assert_eq!(h.ops[1].complete, None);
        assert_eq!(h.ops[2].outcome, Outcome::Fail);
        assert!(h.ops.iter().enumerate().all(|(i, op)| op.id == i));
        drop(in_flight);
    }

    #[test]
    fn records_nemesis_events_on_the_same_clock() {
        let r = Recorder::new();
        let start = r.nemesis("kill-one", Phase::Start, vec![2], "SIGKILL node 2");
        r.invoke(1, "x", Call::Read).ok(Val::Nil);
        let end = r.nemesis("kill-one", Phase::End, vec![2], "");
        let h = r.finish();
        assert_eq!(h.nemesis.len(), 2);
        assert!(start <= h.ops[0].invoke && h.ops[0].invoke <= end);
        assert_eq!(h.nemesis[1].phase, Phase::End);
    }
}

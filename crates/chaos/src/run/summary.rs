//! The numbers of a run: operations by outcome, latency, and how long the
//! cluster served nothing around each fault.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::check::{keys_of, Workload as KeyKind};
use crate::history::{History, Nanos, Outcome, Phase};

/// Operations by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub ok: usize,
    pub fail: usize,
    pub unknown: usize,
}

impl Counts {
    pub fn total(&self) -> usize {
        self.ok + self.fail + self.unknown
    }

    fn add(&mut self, o: &Outcome) {
        match o {
            Outcome::Ok(_) => self.ok += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Unknown => self.unknown += 1,
        }
    }
}

/// Latency of acknowledged operations, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// One fault and how the cluster served around it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultWindow {
    pub fault: String,
    pub detail: String,
    pub nodes: Vec<u32>,
    pub start_s: f64,
    /// When it was healed (absent if the run ended first).
    pub end_s: Option<f64>,
    /// Operations invoked from the fault's start until the next fault's (or
    /// the end of the run).
    pub ops: Counts,
    /// The longest time without an acknowledged operation, from the fault's
    /// start until the next fault's start (or the end of the workload).
    pub longest_gap_s: f64,
    /// From the heal to the first acknowledged operation invoked after it.
    pub recovered_after_s: Option<f64>,
}

fn secs(n: Nanos) -> f64 {
    n as f64 / 1e9
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn counts(history: &History) -> (Counts, BTreeMap<String, Counts>) {
    let mut all = Counts::default();
    let mut by_f: BTreeMap<String, Counts> = BTreeMap::new();
    for op in &history.ops {
        all.add(&op.outcome);
        by_f.entry(op.call.name().to_string()).or_default().add(&op.outcome);
    }
    (all, by_f)
}

pub fn latency(history: &History) -> Latency {
    let mut l: Vec<u64> = history
        .ops
        .iter()
        .filter(|op| op.is_ok())
        .filter_map(|op| op.complete.map(|c| c - op.invoke))
        .collect();
    l.sort_unstable();
    let ms = |n: u64| n as f64 / 1e6;
    Latency {
        p50_ms: ms(percentile(&l, 50.0)),
        p99_ms: ms(percentile(&l, 99.0)),
        max_ms: ms(l.last().copied().unwrap_or(0)),
    }
}

/// The longest stretch of [from, to) with no acknowledged completion, given
/// the sorted completion times.
pub fn longest_gap(ok_completions: &[Nanos], from: Nanos, to: Nanos) -> Nanos {
    if to <= from {
        return 0;
    }
    let start = ok_completions.partition_point(|&c| c < from);
    let mut prev = from;
    let mut gap = 0;
    for &c in &ok_completions[start..] {
        if c >= to {
            break;
        }
        gap = gap.max(c - prev);
        prev = c;
    }
    gap.max(to - prev)
}

/// The faults of the history with their availability, up to `workload_end`
/// (when the clients stopped).
pub fn fault_windows(history: &History, workload_end: Nanos) -> Vec<FaultWindow> {
    let mut ok: Vec<Nanos> =
        history.ops.iter().filter(|op| op.is_ok()).filter_map(|op| op.complete).collect();
    ok.sort_unstable();
    let starts: Vec<_> = history.nemesis.iter().filter(|e| e.phase == Phase::Start).collect();
    let mut out = Vec::new();
    for (i, s) in starts.iter().enumerate() {
        let end = history
            .nemesis
            .iter()
            .find(|e| e.phase == Phase::End && e.nemesis == s.nemesis && e.time >= s.time)
            .map(|e| e.time);
        let until = starts.get(i + 1).map_or(workload_end, |n| n.time).max(s.time);
        let mut ops = Counts::default();
        for op in history.ops.iter().filter(|op| op.invoke >= s.time && op.invoke < until) {
            ops.add(&op.outcome);
        }
        let recovered_after_s = end.and_then(|e| {
            history
                .ops
                .iter()
                .filter(|op| op.is_ok() && op.invoke >= e)
                .filter_map(|op| op.complete)
                .min()
                .map(|c| secs(c - e))
        });
        out.push(FaultWindow {
            fault: s.nemesis.clone(),
            detail: s.detail.clone(),
            nodes: s.nodes.clone(),
            start_s: secs(s.time),
            end_s: end.map(secs),
            ops,
            longest_gap_s: secs(longest_gap(&ok, s.time, until)),
            recovered_after_s,
        });
    }
    out
}

/// How many operations of the history each checker judges (by the
/// workload of their keys).
pub fn ops_per_checker(history: &History) -> BTreeMap<&'static str, (usize, usize)> {
    let mut out = BTreeMap::new();
    for (checker, kind) in [
        ("linearizable", KeyKind::Register),
        ("lost-writes", KeyKind::Register),
        ("counter", KeyKind::Counter),
        ("list-append", KeyKind::List),
        ("set-add", KeyKind::Set),
        ("ttl", KeyKind::Ttl),
        ("lock", KeyKind::Lock),
    ] {
        let keys = keys_of(history, kind);
        let ops = keys.values().map(Vec::len).sum();
        out.insert(checker, (keys.len(), ops));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Call, NemesisEvent, Op, Val};

    fn op(invoke: u64, complete: u64, outcome: Outcome) -> Op {
        Op {
            id: 0,
            process: 1,
            key: "x".into(),
            call: Call::Read,
            invoke,
            complete: Some(complete),
            outcome,
        }
    }

    fn event(name: &str, phase: Phase, time: u64) -> NemesisEvent {
        NemesisEvent { nemesis: name.into(), phase, time, nodes: vec![1], detail: String::new() }
    }

    #[test]
    fn gaps_count_from_the_window_edges() {
        assert_eq!(longest_gap(&[], 10, 50), 40);
        assert_eq!(longest_gap(&[5, 20, 22, 45, 60], 10, 50), 23);
        assert_eq!(longest_gap(&[11, 49], 10, 50), 38);
        assert_eq!(longest_gap(&[1], 10, 10), 0);
    }

    #[test]
    fn percentiles_of_acknowledged_latency() {
        let ops: Vec<Op> = (1..=100)
            .map(|i| op(0, i * 1_000_000, Outcome::Ok(Val::Nil)))
            .chain([op(0, 999_000_000, Outcome::Fail)])
            .collect();
        let l = latency(&History::new(ops));
        assert_eq!(l.p50_ms, 50.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(l.max_ms, 100.0, "failed operations do not count");
    }

    #[test]
    fn fault_windows_measure_gaps_and_recovery() {
        let s = 1_000_000_000;
        let ops = vec![
            op(0, s, Outcome::Ok(Val::Nil)),
            op(2 * s, 3 * s, Outcome::Fail),
            op(3 * s, 7 * s, Outcome::Unknown),
            op(6 * s, 8 * s, Outcome::Ok(Val::Nil)),
            op(8 * s, 9 * s, Outcome::Ok(Val::Nil)),
            op(12 * s, 13 * s, Outcome::Ok(Val::Nil)),
        ];
        let h = History::new(ops).with_nemesis(vec![
            event("pause-one", Phase::Start, 2 * s),
            event("pause-one", Phase::End, 5 * s),
            event("kill-one", Phase::Start, 10 * s),
            event("kill-one", Phase::End, 11 * s),
        ]);
        let w = fault_windows(&h, 14 * s);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].fault, "pause-one");
        assert_eq!((w[0].start_s, w[0].end_s), (2.0, Some(5.0)));
        assert_eq!(w[0].ops, Counts { ok: 2, fail: 1, unknown: 1 });
        // From 2 s to the first ack at 8 s.
        assert_eq!(w[0].longest_gap_s, 6.0);
        // Healed at 5 s; the first op invoked after it was acked at 8 s.
        assert_eq!(w[0].recovered_after_s, Some(3.0));
        assert_eq!(w[1].longest_gap_s, 3.0);
        assert_eq!(w[1].recovered_after_s, Some(2.0));
        let (all, by_f) = counts(&h);
        assert_eq!(all.total(), 6);
        assert_eq!(by_f["read"].ok, 4);
    }
}

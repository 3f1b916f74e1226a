//! The numbers of a run: operations by outcome, latency, and how long the
//! cluster served nothing around each fault, in all and through each node.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::check::{keys_of, Workload as KeyKind};
use crate::history::{Call, History, Nanos, Op, Outcome, Phase};

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
    /// The longest time without an acknowledged write anywhere, over the
    /// same span as `longest_gap_s` (issue 21's measure: reads may still be
    /// served while no write is).
    pub longest_write_gap_s: f64,
    /// How each node's clients fared over the same span (empty when the
    /// history does not say which node a client used).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_node: Vec<NodeWindow>,
}

/// How the clients of one node fared from a fault's start until the next
/// fault's start (or the end of the workload).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeWindow {
    pub node: u32,
    /// Operations through this node invoked in the span.
    pub ops: Counts,
    /// The longest time without an acknowledged write through this node.
    pub longest_write_gap_s: f64,
    /// The longest any client of this node waited for an answer (an
    /// acknowledgement, an error reply or its own timeout) to an operation
    /// invoked in the span; one never answered counts until the span ends.
    pub longest_wait_s: f64,
    /// From the heal to the first acknowledged write through this node
    /// invoked after it (`None`: none before the span ended).
    pub writes_resumed_after_s: Option<f64>,
}

/// True for the calls that change state (everything but a read).
pub fn is_write(call: &Call) -> bool {
    !matches!(call, Call::Read)
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

/// The sorted completion times of the acknowledged operations that `keep`
/// selects.
fn ok_times(history: &History, keep: impl Fn(&Op) -> bool) -> Vec<Nanos> {
    let mut ok: Vec<Nanos> = history
        .ops
        .iter()
        .filter(|op| op.is_ok() && keep(op))
        .filter_map(|op| op.complete)
        .collect();
    ok.sort_unstable();
    ok
}

/// The faults of the history with their availability, up to `workload_end`
/// (when the clients stopped). `node_of` says which node a process's
/// operations went through (`None`: unknown, left out of `per_node`).
pub fn fault_windows(
    history: &History,
    workload_end: Nanos,
    node_of: &dyn Fn(u64) -> Option<u32>,
) -> Vec<FaultWindow> {
    let ok = ok_times(history, |_| true);
    let ok_writes = ok_times(history, |op| is_write(&op.call));
    let nodes: std::collections::BTreeSet<u32> =
        history.ops.iter().filter_map(|op| node_of(op.process)).collect();
    let node_writes: BTreeMap<u32, Vec<Nanos>> = nodes
        .iter()
        .map(|&n| (n, ok_times(history, |op| is_write(&op.call) && node_of(op.process) == Some(n))))
        .collect();
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
        let per_node = nodes
            .iter()
            .map(|&n| {
                let mine = |op: &&Op| {
                    op.invoke >= s.time && op.invoke < until && node_of(op.process) == Some(n)
                };
                let mut ops = Counts::default();
                let mut longest_wait = 0;
                for op in history.ops.iter().filter(mine) {
                    ops.add(&op.outcome);
                    let answered = op.complete.unwrap_or(until).max(op.invoke);
                    longest_wait = longest_wait.max(answered - op.invoke);
                }
                let writes_resumed_after_s = end.and_then(|e| {
                    history
                        .ops
                        .iter()
                        .filter(|op| {
                            op.is_ok()
                                && is_write(&op.call)
                                && op.invoke >= e
                                && op.invoke < until
                                && node_of(op.process) == Some(n)
                        })
                        .filter_map(|op| op.complete)
                        .min()
                        .map(|c| secs(c - e))
                });
                NodeWindow {
                    node: n,
                    ops,
                    longest_write_gap_s: secs(longest_gap(&node_writes[&n], s.time, until)),
                    longest_wait_s: secs(longest_wait),
                    writes_resumed_after_s,
                }
            })
            .collect();
        out.push(FaultWindow {
            fault: s.nemesis.clone(),
            detail: s.detail.clone(),
            nodes: s.nodes.clone(),
            start_s: secs(s.time),
            end_s: end.map(secs),
            ops,
            longest_gap_s: secs(longest_gap(&ok, s.time, until)),
            recovered_after_s,
            longest_write_gap_s: secs(longest_gap(&ok_writes, s.time, until)),
            per_node,
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
        let w = fault_windows(&h, 14 * s, &|_| None);
        assert_eq!(w.len(), 2);
        assert!(w[0].per_node.is_empty(), "no node known for any process");
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

    #[test]
    fn write_gaps_and_waits_per_node() {
        let s = 1_000_000_000;
        let at = |process, invoke, complete: Option<u64>, call: Call, outcome| Op {
            id: 0,
            process,
            key: "c".into(),
            call,
            invoke,
            complete,
            outcome,
        };
        let incr = || Call::Incr { by: 1 };
        let ok = || Outcome::Ok(Val::Int(1));
        let ops = vec![
            // Node 1 (processes 1, 3): writes before the fault, a read during
            // it, an unknown write that never answered, then writes again.
            at(1, 0, Some(s / 2), incr(), ok()),
            at(1, 2 * s, Some(3 * s), Call::Read, ok()),
            at(3, 3 * s, None, incr(), Outcome::Unknown),
            at(1, 6 * s, Some(7 * s), incr(), ok()),
            // Node 2 (process 2): a write that waited 2 s for -CLUSTERDOWN,
            // then one acknowledged after the heal.
            at(2, 2 * s, Some(4 * s), incr(), Outcome::Fail),
            at(2, 5 * s, Some(5 * s + s / 2), incr(), ok()),
        ];
        let h = History::new(ops).with_nemesis(vec![
            event("partition-leader", Phase::Start, 2 * s),
            event("partition-leader", Phase::End, 5 * s),
        ]);
        let w = fault_windows(&h, 8 * s, &|p| Some(if p % 2 == 1 { 1 } else { 2 }));
        let w = &w[0];
        // Anything acknowledged: the read at 3 s, then the write at 5.5 s.
        assert_eq!(w.longest_gap_s, 2.5);
        // Writes only: from 2 s to 5.5 s.
        assert_eq!(w.longest_write_gap_s, 3.5);
        let (n1, n2) = (&w.per_node[0], &w.per_node[1]);
        assert_eq!((n1.node, n2.node), (1, 2));
        assert_eq!(n1.ops, Counts { ok: 2, fail: 0, unknown: 1 });
        assert_eq!(n1.longest_write_gap_s, 5.0, "from 2 s to 7 s");
        assert_eq!(n1.longest_wait_s, 5.0, "the unknown write waits until the span ends");
        assert_eq!(n1.writes_resumed_after_s, Some(2.0));
        assert_eq!(n2.longest_write_gap_s, 3.5);
        assert_eq!(n2.longest_wait_s, 2.0);
        assert_eq!(n2.writes_resumed_after_s, Some(0.5));
    }
}

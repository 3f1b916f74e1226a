//! The numbers behind the charts: operations and latency per time bin, the
//! time unit to show, and where each violation happened.

use crate::history::{History, Nanos, Op, Outcome};

/// Operations per time bin, by outcome, and the latency of the acknowledged
/// ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bin {
    pub ok: usize,
    pub fail: usize,
    pub unknown: usize,
    /// Latency of the acknowledged operations that completed in the bin (ns).
    pub p50: Option<Nanos>,
    pub p99: Option<Nanos>,
}

/// A history cut into equal time bins from 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Width of a bin, in nanoseconds.
    pub width: Nanos,
    pub bins: Vec<Bin>,
    /// The end of the time axis (ns): the last operation, event or `end`.
    pub end: Nanos,
}

const SECOND: Nanos = 1_000_000_000;

/// A bin width from 1, 2, 5 × 10^k ns, at least `min`.
fn nice_at_least(min: Nanos) -> Nanos {
    let mut p = 1u64;
    loop {
        for m in [1, 2, 5] {
            let w = p.saturating_mul(m);
            if w >= min {
                return w;
            }
        }
        p = p.saturating_mul(10);
    }
}

/// One second per bin for runs of ten seconds or more (wider bins for runs
/// long enough to have more than 300 of them); about 60 bins for shorter
/// histories (hand-written ones count in nanoseconds).
pub fn bin_width(span: Nanos) -> Nanos {
    if span >= 10 * SECOND {
        nice_at_least(span.div_ceil(300)).max(SECOND)
    } else {
        nice_at_least(span.div_ceil(60).max(1))
    }
}

/// Where an operation is placed in time: its completion if it has one,
/// else its invoke (operations that never answered).
fn when(op: &Op) -> Nanos {
    op.complete.unwrap_or(op.invoke).max(op.invoke)
}

/// The last instant the history mentions.
pub fn history_end(history: &History) -> Nanos {
    let ops = history.ops.iter().map(when).max().unwrap_or(0);
    let events = history.nemesis.iter().map(|e| e.time).max().unwrap_or(0);
    ops.max(events)
}

fn percentile(sorted: &[Nanos], p: f64) -> Option<Nanos> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

impl Series {
    /// Bins the history up to `end` (or the last instant it mentions, if
    /// later).
    pub fn new(history: &History, end: Nanos) -> Series {
        let end = end.max(history_end(history)).max(1);
        let width = bin_width(end);
        let n = (end / width + 1) as usize;
        let mut bins = vec![Bin::default(); n];
        let mut latencies: Vec<Vec<Nanos>> = vec![Vec::new(); n];
        for op in &history.ops {
            let i = ((when(op) / width) as usize).min(n - 1);
            match &op.outcome {
                Outcome::Ok(_) => {
                    bins[i].ok += 1;
                    if let Some(c) = op.complete {
                        latencies[i].push(c.saturating_sub(op.invoke));
                    }
                }
                Outcome::Fail => bins[i].fail += 1,
                Outcome::Unknown => bins[i].unknown += 1,
            }
        }
        for (bin, mut l) in bins.iter_mut().zip(latencies) {
            l.sort_unstable();
            bin.p50 = percentile(&l, 50.0);
            bin.p99 = percentile(&l, 99.0);
        }
        Series { width, bins, end }
    }

    /// The most operations of any bin.
    pub fn max_total(&self) -> usize {
        self.bins.iter().map(|b| b.ok + b.fail + b.unknown).max().unwrap_or(0)
    }
}

/// A time unit for the axis: its name and its length in nanoseconds.
pub fn unit_for(span: Nanos) -> (&'static str, f64) {
    if span >= 2 * SECOND {
        ("s", 1e9)
    } else if span >= 2_000_000 {
        ("ms", 1e6)
    } else if span >= 2_000 {
        ("µs", 1e3)
    } else {
        ("ns", 1.0)
    }
}

/// A duration for a person: `850 ns`, `12.5 µs`, `3.2 ms`, `1.25 s`.
pub fn fmt_duration(ns: Nanos) -> String {
    let v = ns as f64;
    if ns >= SECOND && ns.is_multiple_of(SECOND) {
        format!("{} s", ns / SECOND)
    } else if ns >= SECOND {
        format!("{:.2} s", v / 1e9)
    } else if ns >= 1_000_000 {
        format!("{} ms", trim(v / 1e6))
    } else if ns >= 1_000 {
        format!("{} µs", trim(v / 1e3))
    } else {
        format!("{ns} ns")
    }
}

fn trim(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The span of a violation's operations: from the first invoke to the last
/// completion (or invoke, for operations that never completed).
pub fn violation_span(history: &History, ids: &[usize]) -> Option<(Nanos, Nanos)> {
    let ops: Vec<&Op> = ids.iter().filter_map(|&i| history.ops.get(i)).collect();
    let from = ops.iter().map(|op| op.invoke).min()?;
    let to = ops.iter().map(|op| when(op)).max()?;
    Some((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Call, Val};

    fn op(invoke: Nanos, complete: Option<Nanos>, outcome: Outcome) -> Op {
        Op { id: 0, process: 1, key: "x".into(), call: Call::Read, invoke, complete, outcome }
    }

    #[test]
    fn bins_are_seconds_for_real_runs_and_finer_for_short_histories() {
        assert_eq!(bin_width(40 * SECOND), SECOND);
        assert_eq!(bin_width(1800 * SECOND), 10 * SECOND);
        assert_eq!(bin_width(50), 1);
        assert_eq!(bin_width(600), 10);
        assert_eq!(bin_width(5 * SECOND), 100_000_000);
    }

    #[test]
    fn operations_are_binned_by_completion_and_latency_by_percentile() {
        let s = SECOND;
        let mut ops: Vec<Op> = (0..100)
            .map(|i| {
                op(
                    s + i * 1_000_000,
                    Some(s + i * 1_000_000 + (i + 1) * 1_000),
                    Outcome::Ok(Val::Nil),
                )
            })
            .collect();
        ops.push(op(2 * s, Some(3 * s + 5), Outcome::Fail));
        ops.push(op(11 * s, None, Outcome::Unknown));
        let h = History::new(ops);
        let series = Series::new(&h, 12 * s);
        assert_eq!(series.width, s);
        assert_eq!(series.bins.len(), 13);
        assert_eq!(series.bins[1].ok, 100);
        assert_eq!(series.bins[1].p50, Some(50_000));
        assert_eq!(series.bins[1].p99, Some(99_000));
        assert_eq!(series.bins[3].fail, 1);
        assert_eq!(series.bins[11].unknown, 1, "never answered: placed at its invoke");
        assert_eq!(series.bins[0].p50, None);
        assert_eq!(series.max_total(), 100);
        assert_eq!(violation_span(&h, &[0, 101]), Some((s, 11 * s)));
        assert_eq!(violation_span(&h, &[999]), None);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_duration(850), "850 ns");
        assert_eq!(fmt_duration(12_500), "12.5 µs");
        assert_eq!(fmt_duration(3_200_000), "3.20 ms");
        assert_eq!(fmt_duration(1_250_000_000), "1.25 s");
        assert_eq!(fmt_duration(10_000_000_000), "10 s");
        assert_eq!(unit_for(40 * SECOND).0, "s");
        assert_eq!(unit_for(50).0, "ns");
    }
}

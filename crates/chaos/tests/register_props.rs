//! Property tests of the register checker: histories made by a real register
//! are accepted; one read changed to a value never written is rejected.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{simulate, OpSpec, Rng};
use proptest::prelude::*;
use raftcache_chaos::check::{check_all, lost_writes, register, Budget};
use raftcache_chaos::record::Recorder;
use raftcache_chaos::{Call, History, Outcome, Val, Verdict};

fn op_spec(keys: u8) -> impl Strategy<Value = OpSpec> {
    (0u8..4, 0..keys, 0u32..6, 0u64..40, 1u64..60, 0u8..=100, 0u8..100).prop_map(
        |(kind, key, value, gap, dur, at, fate)| OpSpec { kind, key, value, gap, dur, at, fate },
    )
}

/// Up to `processes` clients with up to `ops` operations each.
fn plan(processes: usize, ops: usize, keys: u8) -> impl Strategy<Value = Vec<Vec<OpSpec>>> {
    prop::collection::vec(prop::collection::vec(op_spec(keys), 0..=ops), 1..=processes)
}

fn assert_valid(history: &History) -> Result<(), TestCaseError> {
    let report = register::check(history, &Budget::default());
    prop_assert!(report.verdict.is_valid(), "{}\n{}", report, history.to_jsonl());
    let report = lost_writes::check(history);
    prop_assert!(report.verdict.is_valid(), "{}\n{}", report, history.to_jsonl());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// One client: a sequential history, trivially linearizable.
    #[test]
    fn sequential_histories_are_linearizable(plan in plan(1, 40, 3)) {
        assert_valid(&simulate(&plan))?;
    }

    /// Several clients whose operations take effect at random instants inside
    /// their intervals (unknown ones later, or never).
    #[test]
    fn concurrent_histories_are_linearizable(plan in plan(6, 25, 2)) {
        assert_valid(&simulate(&plan))?;
    }

    /// A read changed to a value nobody wrote cannot be linearized.
    #[test]
    fn a_read_of_a_never_written_value_is_rejected(
        plan in plan(5, 20, 2),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut history = simulate(&plan);
        let reads: Vec<usize> = history
            .ops
            .iter()
            .filter(|op| matches!(op.call, Call::Read) && op.is_ok())
            .map(|op| op.id)
            .collect();
        prop_assume!(!reads.is_empty());
        let victim = reads[pick.index(reads.len())];
        history.ops[victim].outcome = Outcome::Ok(Val::Str("never-written".into()));
        let report = register::check(&history, &Budget::default());
        match &report.verdict {
            Verdict::Invalid { violations } => {
                prop_assert!(violations[0].ops.contains(&victim), "{}", report);
            }
            _ => prop_assert!(false, "accepted:\n{}", history.to_jsonl()),
        }
    }

    /// Saving and loading gives the same history.
    #[test]
    fn histories_round_trip(plan in plan(3, 10, 3)) {
        let history = simulate(&plan);
        prop_assert_eq!(History::parse(&history.to_jsonl()).expect("parses"), history);
    }
}

/// Real threads share one mutex-guarded register per key and record through
/// a [`Recorder`] with real clocks, sleeping at random around the effect.
fn run_threads(seed: u64, threads: u64, ops: usize, keys: u64) -> History {
    let recorder = Recorder::new();
    let registers: Arc<Vec<Mutex<Option<String>>>> =
        Arc::new((0..keys).map(|_| Mutex::new(None)).collect());
    let handles: Vec<_> = (0..threads)
        .map(|p| {
            let recorder = recorder.clone();
            let registers = Arc::clone(&registers);
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed * 1000 + p);
                let nap = |rng: &mut Rng| {
                    if rng.below(2) == 0 {
                        std::thread::sleep(Duration::from_micros(rng.below(200)));
                    } else {
                        std::thread::yield_now();
                    }
                };
                for n in 0..ops {
                    let k = rng.below(keys);
                    let key = format!("k{k}");
                    let write = rng.below(2) == 0;
                    let value = format!("p{p}-{n}");
                    let call =
                        if write { Call::Write { value: value.clone() } } else { Call::Read };
                    let pending = recorder.invoke(p, key, call);
                    nap(&mut rng);
                    let fate = rng.below(10);
                    // fate 0: the request is lost; 1: applied but the reply is lost.
                    let reply = if fate == 0 {
                        None
                    } else {
                        let mut reg =
                            registers[k as usize].lock().unwrap_or_else(|e| e.into_inner());
                        if write {
                            *reg = Some(value);
                            Some(Val::Nil)
                        } else {
                            Some(reg.clone().map_or(Val::Nil, Val::Str))
                        }
                    };
                    nap(&mut rng);
                    match reply {
                        Some(v) if fate != 1 => pending.ok(v),
                        _ => pending.unknown(),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker thread");
    }
    recorder.finish()
}

#[test]
fn threaded_register_histories_are_linearizable() {
    for seed in 0..8 {
        let history = run_threads(seed, 4, 60, 3);
        let reports = check_all(&history, &Budget::default()).expect("registers only");
        for r in reports {
            assert!(r.verdict.is_valid(), "seed {seed}: {r}\n{}", history.to_jsonl());
        }
    }
}

#[test]
fn threaded_register_history_with_a_bad_read_is_rejected() {
    let mut history = run_threads(99, 4, 60, 3);
    let victim = history
        .ops
        .iter()
        .position(|op| matches!(op.call, Call::Read) && op.is_ok())
        .expect("some read succeeded");
    history.ops[victim].outcome = Outcome::Ok(Val::Str("never-written".into()));
    assert!(register::check(&history, &Budget::default()).verdict.is_invalid());
}

//! Timing of the register checker on large generated histories. The bounds
//! are generous (debug builds, a busy CI machine): the numbers are printed
//! (`cargo test -p raftcache-chaos --test perf -- --nocapture`).

mod common;

use std::time::{Duration, Instant};

use common::{random_plan, simulate};
use raftcache_chaos::check::{register, Budget};
use raftcache_chaos::{Call, History, Outcome, Report, Val};

/// Generous: the 10k-operation histories take well under a second.
const BOUND: Duration = Duration::from_secs(60);

fn budget() -> Budget {
    Budget::new(Budget::DEFAULT_STEPS_PER_KEY, Some(Duration::from_secs(120)))
}

fn timed(name: &str, history: &History) -> (Report, Duration) {
    let unknown = history.ops.iter().filter(|op| op.outcome == Outcome::Unknown).count();
    let started = Instant::now();
    let report = register::check(history, &budget());
    let took = started.elapsed();
    let verdict = match &report.verdict {
        v if v.is_valid() => "valid",
        v if v.is_invalid() => "invalid",
        _ => "unknown",
    };
    println!("{name}: {} ops ({unknown} unknown): {verdict} in {took:?}", history.ops.len());
    (report, took)
}

/// `processes` clients, `per_process` operations each, over `keys` keys.
fn valid_case(
    name: &str,
    seed: u64,
    processes: usize,
    per_process: usize,
    keys: u8,
    values: u32,
    kinds: u8,
) {
    let history = simulate(&random_plan(seed, processes, per_process, keys, values, kinds));
    let (report, took) = timed(name, &history);
    assert!(report.verdict.is_valid(), "{report}");
    assert!(took < BOUND, "took {took:?}");
}

#[test]
fn ten_thousand_ops_fifty_keys_concurrency_ten() {
    valid_case("10k ops, 50 keys, concurrency 10, unique values", 1, 10, 1_000, 50, 1_000_000, 4);
}

#[test]
fn ten_thousand_ops_fifty_keys_repeated_values() {
    valid_case("10k ops, 50 keys, concurrency 10, 8 values", 2, 10, 1_000, 50, 8, 4);
}

#[test]
fn two_thousand_ops_one_key_concurrency_ten() {
    valid_case("2k ops, 1 key, concurrency 10", 3, 10, 200, 1, 1_000_000, 4);
}

/// Changes the last acknowledged read to a value never written.
fn with_bad_read(mut history: History) -> History {
    if let Some(read) =
        history.ops.iter_mut().rev().find(|op| matches!(op.call, Call::Read) && op.is_ok())
    {
        read.outcome = Outcome::Ok(Val::Str("never-written".into()));
    }
    history
}

/// An invalid history makes the search exhaust every order before the bad
/// read; with reads and writes of unique values (the harness's register
/// workload) the unknown writes are pruned or bounded and it ends quickly.
#[test]
fn ten_thousand_ops_with_one_bad_read() {
    for seed in [7, 8, 9] {
        let history = with_bad_read(simulate(&random_plan(seed, 10, 1_000, 50, 1_000_000, 2)));
        let (report, took) =
            timed(&format!("10k ops, 50 keys, one bad read (seed {seed})"), &history);
        assert!(report.verdict.is_invalid(), "{report}");
        assert!(took < BOUND, "took {took:?}");
    }
}

/// With deletes and compare-and-sets, unknown writes cannot be pruned and an
/// invalid key may exhaust the budget: the answer must then be Unknown, never
/// Valid, and come within the budget.
#[test]
fn bad_read_with_deletes_and_cas_ends_within_budget() {
    let history = with_bad_read(simulate(&random_plan(7, 10, 1_000, 50, 1_000_000, 4)));
    let started = Instant::now();
    let report = register::check(&history, &Budget::new(500_000, Some(Duration::from_secs(120))));
    let took = started.elapsed();
    println!(
        "10k ops, 50 keys, deletes and cas, one bad read, 500k steps a key: {:?} in {took:?}",
        report.verdict.is_invalid()
    );
    assert!(!report.verdict.is_valid(), "{report}");
    assert!(took < BOUND, "took {took:?}");
}

/// `cargo test -p raftcache-chaos --release --test perf -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_larger_histories() {
    valid_case("100k ops, 50 keys, concurrency 10", 4, 10, 10_000, 50, 1_000_000, 4);
    valid_case("100k ops, 250 keys, concurrency 20", 5, 20, 5_000, 250, 1_000_000, 4);
    valid_case("10k ops, 1 key, concurrency 10", 6, 10, 1_000, 1, 1_000_000, 4);
    valid_case("10k ops, 1 key, concurrency 10, reads and writes", 6, 10, 1_000, 1, 1_000_000, 2);
}

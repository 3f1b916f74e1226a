//! Random picks are uniform: SRANDMEMBER, SPOP, RANDOMKEY and HRANDFIELD
//! choose every member (key, field) equally often, checked with Pearson's
//! chi-square statistic like Redis's own test suite (`chi_square_value` in
//! tests/unit/type/set.tcl, which requires < 40 over ten members).
//!
//! Every pick is deterministic for a seed, so these tests are too: the seeds
//! below run the same way every time, and a biased pick (before this test
//! existed, `KeyMap::pick` favoured some members 8 to 1) fails them by far.

use std::collections::BTreeMap;

use bytes::Bytes;
use raftcache_sm::{Op, Reply, Stamp, State};

fn argv(parts: &[&str]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p.as_bytes())).collect()
}

struct Engine {
    state: State,
    index: u64,
}

impl Engine {
    fn new() -> Engine {
        Engine { state: State::new(), index: 0 }
    }

    fn write(&mut self, parts: &[&str], seed: u64) -> Reply {
        self.index += 1;
        let stamp = Stamp { index: self.index, time_ms: 1_000, seed };
        self.state.apply(&stamp, &Op::Command { db: 0, argv: argv(parts) })
    }

    fn read(&self, parts: &[&str], seed: u64) -> Reply {
        self.state.query(0, &argv(parts), 1_000, seed)
    }
}

/// Pearson's chi-square of observed counts against a uniform expectation.
fn chi_square(counts: &BTreeMap<Bytes, u64>, categories: usize) -> f64 {
    let total: u64 = counts.values().sum();
    let expected = total as f64 / categories as f64;
    let seen: f64 = counts.values().map(|&c| (c as f64 - expected).powi(2) / expected).sum();
    // Categories never picked contribute their whole expectation.
    seen + (categories - counts.len()) as f64 * expected
}

fn tally(reply: Reply, counts: &mut BTreeMap<Bytes, u64>) {
    match reply {
        Reply::Bulk(b) => *counts.entry(b).or_default() += 1,
        Reply::Array(items) | Reply::Set(items) => {
            for item in items {
                tally(item, counts);
            }
        }
        other => panic!("unexpected reply {other:?}"),
    }
}

/// The bound for `dof` degrees of freedom: Redis's 40 for ten categories,
/// and mean + 6 standard deviations (sd = sqrt(2 dof)) for many.
fn bound(dof: usize) -> f64 {
    if dof <= 9 {
        40.0
    } else {
        dof as f64 + 6.0 * (2.0 * dof as f64).sqrt()
    }
}

fn members(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("member:{i}")).collect()
}

#[test]
fn srandmember_is_uniform_over_a_small_and_a_large_set() {
    for n in [10usize, 1000] {
        let mut e = Engine::new();
        let names = members(n);
        for chunk in names.chunks(100) {
            let mut cmd = vec!["SADD", "s"];
            cmd.extend(chunk.iter().map(String::as_str));
            e.write(&cmd, 1);
        }
        let mut counts = BTreeMap::new();
        let picks_per_member = 100;
        let rounds = 20;
        let per_call = (n * picks_per_member / rounds).to_string();
        for seed in 0..rounds as u64 {
            tally(e.read(&["SRANDMEMBER", "s", &format!("-{per_call}")], seed), &mut counts);
        }
        // Single picks too (no count).
        let mut single = BTreeMap::new();
        for seed in 0..(n as u64 * 30) {
            tally(e.read(&["SRANDMEMBER", "s"], seed), &mut single);
        }
        let chi = chi_square(&counts, n);
        assert!(chi < bound(n - 1), "SRANDMEMBER -count over {n} members: chi-square {chi:.1}");
        let chi = chi_square(&single, n);
        assert!(chi < bound(n - 1), "SRANDMEMBER over {n} members: chi-square {chi:.1}");
    }
}

#[test]
fn spop_is_uniform() {
    for n in [10usize, 1000] {
        let names = members(n);
        let mut counts = BTreeMap::new();
        let mut e = Engine::new();
        let mut cmd = vec!["SADD", "s"];
        cmd.extend(names.iter().map(String::as_str));
        e.write(&cmd, 0);
        for seed in 0..(n as u64 * 50) {
            // Pop one and put it back: the set is the same for every pick.
            let popped = e.write(&["SPOP", "s"], seed);
            let Reply::Bulk(member) = &popped else { panic!("SPOP gave {popped:?}") };
            let member = String::from_utf8(member.to_vec()).unwrap();
            e.write(&["SADD", "s", &member], 0);
            tally(popped, &mut counts);
        }
        let chi = chi_square(&counts, n);
        assert!(chi < bound(n - 1), "SPOP over {n} members: chi-square {chi:.1}");
    }
}

#[test]
fn randomkey_is_uniform_over_few_and_many_keys() {
    for n in [10usize, 1000] {
        let mut e = Engine::new();
        for name in members(n) {
            e.write(&["SET", &name, "v"], 0);
        }
        let mut counts = BTreeMap::new();
        for seed in 0..(n as u64 * 50) {
            tally(e.read(&["RANDOMKEY"], seed), &mut counts);
        }
        let chi = chi_square(&counts, n);
        assert!(chi < bound(n - 1), "RANDOMKEY over {n} keys: chi-square {chi:.1}");
    }
}

#[test]
fn hrandfield_is_uniform_for_listpack_and_table_hashes() {
    for n in [10usize, 1000] {
        let mut e = Engine::new();
        for name in members(n) {
            e.write(&["HSET", "h", &name, "v"], 0);
        }
        let mut counts = BTreeMap::new();
        for seed in 0..20u64 {
            tally(e.read(&["HRANDFIELD", "h", &format!("-{}", n * 10)], seed), &mut counts);
        }
        let chi = chi_square(&counts, n);
        assert!(chi < bound(n - 1), "HRANDFIELD over {n} fields: chi-square {chi:.1}");
    }
}

/// The pick depends on the contents and the seed only: a set that grew to
/// thousands of members and shrank back picks exactly as one built directly.
#[test]
fn picks_do_not_depend_on_history() {
    let mut grown = Engine::new();
    let names = members(3000);
    for chunk in names.chunks(100) {
        let mut cmd = vec!["SADD", "s"];
        cmd.extend(chunk.iter().map(String::as_str));
        grown.write(&cmd, 0);
    }
    for name in &names[600..] {
        grown.write(&["SREM", "s", name], 0);
    }
    let mut direct = Engine::new();
    let mut cmd = vec!["SADD", "s"];
    cmd.extend(names[..600].iter().map(String::as_str));
    direct.write(&cmd, 0);
    for seed in 0..50 {
        let a = grown.read(&["SRANDMEMBER", "s", "-20"], seed);
        let b = direct.read(&["SRANDMEMBER", "s", "-20"], seed);
        assert_eq!(a, b, "seed {seed}");
    }
    // The same value (not the same digest: the digest covers the key's
    // version, the index of its last change, which differs by history).
    let value = |e: &Engine| e.state.dbs()[0].object(b"s", 1_000).map(|o| o.value.clone());
    assert!(value(&grown).is_some());
    assert_eq!(value(&grown), value(&direct));
}

//! ZRANDMEMBER picks uniformly, checked with Pearson's chi-square statistic as
//! `distribution.rs` checks SRANDMEMBER and friends (Redis's own test suite
//! requires < 40 over ten members): single picks, negative counts (repeats
//! allowed) and positive counts (distinct members, both of Redis's strategies:
//! dropping members from a copy, or picking until enough are distinct), over a
//! listpack zset and a skiplist one. Every pick is a pure function of the seed,
//! so the test is deterministic.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use raftcache_sm::{Op, Reply, Stamp, State};

fn argv(parts: &[&str]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p.as_bytes())).collect()
}

fn engine(n: usize) -> State {
    let mut state = State::new();
    for (i, chunk) in (0..n).collect::<Vec<_>>().chunks(100).enumerate() {
        let mut cmd = vec!["ZADD".to_string(), "z".to_string()];
        for j in chunk {
            cmd.push(format!("{}", j % 7));
            cmd.push(format!("member:{j}"));
        }
        let parts: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let stamp = Stamp { index: i as u64 + 1, time_ms: 1_000, seed: 0 };
        state.apply(&stamp, &Op::Command { db: 0, argv: argv(&parts) });
    }
    state
}

fn read(state: &State, parts: &[&str], seed: u64) -> Reply {
    state.query(0, &argv(parts), 1_000, seed)
}

fn chi_square(counts: &BTreeMap<Bytes, u64>, categories: usize) -> f64 {
    let total: u64 = counts.values().sum();
    let expected = total as f64 / categories as f64;
    let seen: f64 = counts.values().map(|&c| (c as f64 - expected).powi(2) / expected).sum();
    seen + (categories - counts.len()) as f64 * expected
}

fn bound(dof: usize) -> f64 {
    if dof <= 9 {
        40.0
    } else {
        dof as f64 + 6.0 * (2.0 * dof as f64).sqrt()
    }
}

/// Counts the members of a reply; scores (doubles) are checked and skipped.
fn tally(reply: Reply, counts: &mut BTreeMap<Bytes, u64>) -> usize {
    match reply {
        Reply::Bulk(b) => {
            *counts.entry(b).or_default() += 1;
            1
        }
        Reply::Array(items) => items.into_iter().map(|r| tally(r, counts)).sum(),
        Reply::Pairs(pairs) => pairs
            .into_iter()
            .map(|(m, s)| {
                assert!(matches!(s, Reply::Double(_)), "a score, not {s:?}");
                tally(m, counts)
            })
            .sum(),
        other => panic!("unexpected reply {other:?}"),
    }
}

#[test]
fn single_picks_and_negative_counts_are_uniform() {
    for n in [10usize, 128, 1000] {
        let state = engine(n);
        let mut single = BTreeMap::new();
        for seed in 0..(n as u64 * 40) {
            tally(read(&state, &["ZRANDMEMBER", "z"], seed), &mut single);
        }
        let chi = chi_square(&single, n);
        assert!(chi < bound(n - 1), "ZRANDMEMBER over {n} members: chi-square {chi:.1}");

        let mut repeated = BTreeMap::new();
        let per_call = format!("-{}", n * 5);
        for seed in 0..20 {
            let got = tally(
                read(&state, &["ZRANDMEMBER", "z", &per_call, "WITHSCORES"], seed),
                &mut repeated,
            );
            assert_eq!(got, n * 5);
        }
        let chi = chi_square(&repeated, n);
        assert!(chi < bound(n - 1), "ZRANDMEMBER -count over {n} members: chi-square {chi:.1}");
    }
}

#[test]
fn positive_counts_are_uniform_distinct_subsets() {
    for n in [10usize, 128, 1000] {
        let state = engine(n);
        // count * 3 > size: drop members from a copy; count * 3 <= size: pick
        // until enough are distinct.
        for count in [n * 2 / 3, (n / 10).max(1)] {
            let mut counts = BTreeMap::new();
            let rounds = (n * 60 / count) as u64;
            for seed in 0..rounds {
                let mut once = BTreeMap::new();
                let got =
                    tally(read(&state, &["ZRANDMEMBER", "z", &count.to_string()], seed), &mut once);
                assert_eq!(got, count, "count {count} of {n}");
                assert!(once.values().all(|&c| c == 1), "members are distinct");
                for (m, c) in once {
                    *counts.entry(m).or_default() += c;
                }
            }
            let chi = chi_square(&counts, n);
            assert!(
                chi < bound(n - 1),
                "ZRANDMEMBER {count} over {n} members: chi-square {chi:.1}"
            );
        }
    }
}

#[test]
fn counts_past_the_size_return_everything_highest_first() {
    let state = engine(10);
    let Reply::Array(items) = read(&state, &["ZRANDMEMBER", "z", "100"], 7) else { panic!() };
    let names: Vec<Bytes> = items
        .into_iter()
        .map(|r| match r {
            Reply::Bulk(b) => b,
            other => panic!("{other:?}"),
        })
        .collect();
    let Reply::Array(rev) = read(&state, &["ZRANGE", "z", "0", "-1", "REV"], 0) else { panic!() };
    let rev: Vec<Bytes> = rev
        .into_iter()
        .map(|r| match r {
            Reply::Bulk(b) => b,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, rev);
    assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), 10);
}

#[test]
fn picks_are_deterministic_for_a_seed() {
    let state = engine(300);
    let copy = State::read_snapshot(&state.snapshot_bytes()[..]).unwrap();
    for seed in 0..20 {
        for cmd in [
            &["ZRANDMEMBER", "z"][..],
            &["ZRANDMEMBER", "z", "5"],
            &["ZRANDMEMBER", "z", "-5"],
            &["ZRANDMEMBER", "z", "250", "WITHSCORES"],
        ] {
            assert_eq!(read(&state, cmd, seed), read(&copy, cmd, seed), "{cmd:?} seed {seed}");
        }
    }
    assert_ne!(
        read(&state, &["ZRANDMEMBER", "z", "5"], 1),
        read(&state, &["ZRANDMEMBER", "z", "5"], 2)
    );
}

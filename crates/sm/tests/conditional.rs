//! The conditional writes of Redis 8.4/8.8 and Valkey 9.0/9.2 (DELIFEQ, DELEX,
//! DIGEST, SET IFEQ/IFNE/IFDEQ/IFDNE, INCREX) as replicated commands:
//!
//! - replicas fed the same log agree (replies, digests, snapshots), and a
//!   snapshot taken halfway restores to the same state;
//! - WATCH sees the keys they change, and only when they change them;
//! - INCREX is a fixed-window rate limiter over replicated time: the window
//!   opens with the first request (EX … ENX), the cap is UBOUND, and the
//!   window closes when the entry time reaches its end, on every replica.
//!
//! A redis-server 7.0 has none of these commands, so there is no differential
//! script (tests/differential/scripts/conditional/README.md says why).

use bytes::Bytes;
use proptest::prelude::*;
use raftcache_sm::{Call, Op, Reply, Stamp, State, Watch};

mod common;
use common::{bulk, Log};

/// The replicated clock at the first entry (ms).
const START: i64 = 1_700_000_000_000;

fn pair(a: i64, b: i64) -> Reply {
    Reply::Array(vec![Reply::Int(a), Reply::Int(b)])
}

// --- WATCH --------------------------------------------------------------

/// `(setup, command)`: the command changes the watched key `k`, so EXEC
/// aborts.
const CHANGES: &[(&str, &str)] = &[
    ("SET k tok", "DELIFEQ k tok"),
    ("SET k tok", "DELEX k"),
    ("SET k tok", "DELEX k IFEQ tok"),
    ("SET k tok", "DELEX k IFNE other"),
    ("SET k hello", "DELEX k IFDEQ 9555e8555c62dcfd"),
    ("SET k hello", "DELEX k IFDNE 0000000000000000"),
    ("SET k a", "SET k b IFEQ a"),
    ("SET k a", "SET k b IFNE x"),
    ("", "SET k b IFNE x"),
    ("SET k hello", "SET k b IFDEQ 9555e8555c62dcfd"),
    ("", "SET k b IFDNE 0123456789abcdef"),
    ("", "INCREX k"),
    ("SET k 1", "INCREX k BYFLOAT 0.5"),
    ("SET k 5", "INCREX k BYINT 10 UBOUND 7 SATURATE"),
    ("SET k 5", "INCREX k EXAT 1"),
    ("SET k 5 EX 100", "INCREX k EX 10 ENX"),
];

/// `(setup, command)`: the command leaves `k` alone, so EXEC runs.
const KEEPS: &[(&str, &str)] = &[
    ("SET k tok", "DELIFEQ k other"),
    ("", "DELIFEQ k tok"),
    ("SET k tok", "DELEX k IFEQ other"),
    ("SET k tok", "DELEX k IFNE tok"),
    ("SET k hello", "DELEX k IFDNE 9555E8555C62DCFD"),
    ("", "DELEX k IFEQ x"),
    ("SET k a", "SET k b IFEQ x"),
    ("", "SET k b IFEQ x"),
    ("SET k a", "SET k b IFNE a"),
    ("", "SET k b IFDEQ 0123456789abcdef"),
    ("SET k 5", "INCREX k BYINT 10 UBOUND 7"),
    ("", "INCREX k BYINT 10 UBOUND 7"),
    ("", "INCREX k EXAT 1"),
    ("SET k 5", "DIGEST k"),
    ("RPUSH k a", "DELEX k IFEQ a"),
    ("RPUSH k a", "INCREX k"),
];

#[test]
fn watch_sees_conditional_writes_that_change_the_key() {
    for (setup, command) in CHANGES {
        let mut log = Log::at(START);
        if !setup.is_empty() {
            log.run(setup);
        }
        let w = log.watch("k");
        log.run(command);
        assert_eq!(log.exec(w, &["SET other 1"]), Reply::NilArray, "{setup} | {command}");
    }
}

#[test]
fn watch_ignores_conditional_writes_that_do_not() {
    for (setup, command) in KEEPS {
        let mut log = Log::at(START);
        if !setup.is_empty() {
            log.run(setup);
        }
        let w = log.watch("k");
        log.run(command);
        assert_eq!(
            log.exec(w, &["SET other 1"]),
            Reply::Array(vec![Reply::Ok]),
            "{setup} | {command}"
        );
    }
}

#[test]
fn conditional_writes_inside_a_transaction() {
    let mut log = Log::at(START);
    log.run("SET lock tokA");
    let reply = log.exec(
        vec![],
        &["DELIFEQ lock tokB", "DELEX lock IFEQ tokA", "SET lock tokC IFNE tokA", "INCREX n"],
    );
    assert_eq!(reply, Reply::Array(vec![Reply::Int(0), Reply::Int(1), Reply::Ok, pair(1, 1)]));
    assert_eq!(log.read("GET lock"), bulk("tokC"));
}

// --- the lock pattern ---------------------------------------------------

/// SET NX PX to acquire, SET IFEQ PX to extend, DELIFEQ / DELEX IFEQ to
/// release: a holder whose lock expired and was taken by another client can
/// neither extend nor release the new holder's lock.
#[test]
fn token_lock_over_replicated_time() {
    let mut log = Log::at(START);
    assert_eq!(log.run("SET lock tokA NX PX 1000"), Reply::Ok);
    assert_eq!(log.run("SET lock tokB NX PX 1000"), Reply::Nil);
    log.time += 500;
    assert_eq!(log.run("SET lock tokA IFEQ tokA PX 1000"), Reply::Ok, "the holder extends");
    log.time += 999;
    assert_eq!(log.read("PTTL lock"), Reply::Int(1));
    log.time += 1;
    assert_eq!(log.run("SET lock tokB NX PX 1000"), Reply::Ok, "A's lock expired");
    assert_eq!(log.run("SET lock tokA IFEQ tokA PX 1000"), Reply::Nil, "A cannot extend B's");
    assert_eq!(log.run("DELIFEQ lock tokA"), Reply::Int(0), "nor release it");
    assert_eq!(log.run("DELEX lock IFEQ tokA"), Reply::Int(0));
    let digest = log.read("DIGEST lock");
    let Reply::Bulk(d) = &digest else { panic!("{digest:?}") };
    let d = std::str::from_utf8(d).unwrap().to_owned();
    assert_eq!(log.run(&format!("DELEX lock IFDEQ {d}")), Reply::Int(1), "B releases by digest");
    assert_eq!(log.read("EXISTS lock"), Reply::Int(0));
}

// --- INCREX as a fixed-window rate limiter -------------------------------

/// The pattern of redis.io/commands/increx: `INCREX key BYINT 1 UBOUND cap
/// EX window ENX`. A request is allowed when the applied increment is 1.
fn request(log: &mut Log, user: &str) -> bool {
    let reply = log.run(&format!("INCREX ratelimit:{user} BYINT 1 UBOUND 3 EX 60 ENX"));
    match reply {
        Reply::Array(items) => items[1] == Reply::Int(1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn increx_is_a_fixed_window_rate_limiter_over_replicated_time() {
    let mut log = Log::at(START);
    let start = log.time;
    // The first request opens a 60 s window; three fit, the fourth does not.
    assert!(request(&mut log, "alice"));
    assert_eq!(log.read("PTTL ratelimit:alice"), Reply::Int(60_000));
    log.time += 10_000;
    assert!(request(&mut log, "alice"));
    log.time += 20_000;
    assert!(request(&mut log, "alice"));
    // Later requests neither extend the window (ENX) nor pass the cap.
    assert_eq!(log.read("PEXPIRETIME ratelimit:alice"), Reply::Int(start + 60_000));
    for _ in 0..5 {
        log.time += 5_000;
        assert!(!request(&mut log, "alice"));
        assert_eq!(log.read("GET ratelimit:alice"), bulk("3"));
    }
    assert_eq!(log.read("PEXPIRETIME ratelimit:alice"), Reply::Int(start + 60_000));
    // Another user has a window of their own.
    assert!(request(&mut log, "bob"));
    // One millisecond before the end the window is still full...
    log.time = start + 59_999;
    assert!(!request(&mut log, "alice"));
    // ...at its end the key has expired, so the next request opens a new one,
    // measured from the entry that made it.
    log.time = start + 60_000;
    assert_eq!(log.read("EXISTS ratelimit:alice"), Reply::Int(0));
    assert!(request(&mut log, "alice"));
    assert_eq!(log.read("GET ratelimit:alice"), bulk("1"));
    assert_eq!(log.read("PEXPIRETIME ratelimit:alice"), Reply::Int(start + 120_000));
    // The purge the leader proposes removes an expired window the same way.
    log.time = start + 200_000;
    log.apply(Op::PurgeExpired { limit: 10 });
    assert_eq!(log.read("DBSIZE"), Reply::Int(0));
    assert!(request(&mut log, "bob"));
}

/// The same requests applied on three replicas, one of them restored from a
/// snapshot taken mid-window, give the same answers and the same state.
#[test]
fn replicas_agree_on_the_rate_limiter() {
    let mut a = Log::at(START);
    let mut b = Log::at(START);
    let mut answers = (Vec::new(), Vec::new(), Vec::new());
    let mut c: Option<Log> = None;
    for i in 0..40 {
        let step = 4_000 + (i % 7) * 1_000;
        a.time += step;
        b.time += step;
        let user = if i % 3 == 0 { "bob" } else { "alice" };
        answers.0.push(request(&mut a, user));
        answers.1.push(request(&mut b, user));
        if let Some(c) = c.as_mut() {
            c.time += step;
            answers.2.push(request(c, user));
        } else if i == 15 {
            let state = State::read_snapshot(&a.state.snapshot_bytes()[..]).expect("restore");
            c = Some(Log { state, index: a.index, time: a.time });
        }
    }
    assert_eq!(answers.0, answers.1);
    assert_eq!(answers.2[..], answers.0[16..]);
    let c = c.unwrap();
    assert_eq!(a.state.digest(), b.state.digest());
    assert_eq!(a.state.digest(), c.state.digest());
    assert!(answers.0.iter().any(|&x| x) && answers.0.iter().any(|&x| !x));
}

// --- determinism ----------------------------------------------------------

/// Command templates: `{k}` a key, `{v}` a value, `{d}` a digest argument,
/// `{n}` a small integer, `{f}` a float, `{t}` a TTL in ms.
const TEMPLATES: &[&str] = &[
    "SET {k} {v}",
    "SET {k} {n} PX {t}",
    "RPUSH {k} {v}",
    "DEL {k}",
    "DELIFEQ {k} {v}",
    "DELEX {k}",
    "DELEX {k} IFEQ {v}",
    "DELEX {k} IFNE {v}",
    "DELEX {k} IFDEQ {d}",
    "DELEX {k} IFDNE {d}",
    "DELEX {k} FOO {v}",
    "SET {k} {v} IFEQ {v}",
    "SET {k} {v} IFNE {v} GET",
    "SET {k} {v} IFDEQ {d} PX {t}",
    "SET {k} {v} IFDNE {d} KEEPTTL",
    "SET {k} {v} IFEQ {v} NX",
    "INCREX {k}",
    "INCREX {k} BYINT {n} UBOUND {n} SATURATE",
    "INCREX {k} BYINT {n} LBOUND {n} PX {t}",
    "INCREX {k} BYINT 1 UBOUND 3 PX {t} ENX",
    "INCREX {k} BYFLOAT {f} UBOUND {f}",
    "INCREX {k} BYFLOAT {f} LBOUND {f} SATURATE PERSIST",
    "INCREX {k} PXAT {n}",
    "INCREX {k} BYINT {n} EX {n}",
];

/// Read commands compared on both replicas.
const READS: &[&str] = &["DIGEST {k}", "GET {k}", "PTTL {k}", "TYPE {k}", "OBJECT ENCODING {k}"];

/// `(template, picks, time step, purge)`.
type Step = (usize, Vec<u8>, i64, bool);

fn step() -> impl Strategy<Value = Step> {
    (
        0..TEMPLATES.len(),
        proptest::collection::vec(any::<u8>(), 8),
        0i64..300,
        prop::bool::weighted(0.05),
    )
}

/// Fills a template from `picks`, deterministically.
fn render(template: &str, picks: &[u8]) -> Vec<Bytes> {
    let mut i = 0;
    let mut next = || {
        let v = picks[i % picks.len()];
        i += 1;
        v
    };
    let digests = ["9555e8555c62dcfd", "9555E8555C62DCFD", "0000000000000000", "abc"];
    template
        .split(' ')
        .map(|word| {
            let text = match word {
                "{k}" => format!("k{}", next() % 3),
                "{v}" => ["hello", "", "1", "tok"][next() as usize % 4].to_string(),
                "{d}" => digests[next() as usize % 4].to_string(),
                "{n}" => format!("{}", (next() % 12) as i64 - 2),
                "{f}" => format!("{}.{}", (next() % 7) as i64 - 3, next() % 10),
                "{t}" => format!("{}", 1 + (next() as i64) * 4),
                other => other.to_string(),
            };
            Bytes::from(text)
        })
        .collect()
}

fn log_of(steps: &[Step]) -> Vec<(Stamp, Op)> {
    let mut time = 1_700_000_000_000i64;
    steps
        .iter()
        .enumerate()
        .map(|(i, (template, picks, dt, purge))| {
            time += dt;
            let stamp = Stamp { index: i as u64 + 1, time_ms: time, seed: i as u64 };
            let op = if *purge {
                Op::PurgeExpired { limit: 2 }
            } else if picks[6] % 11 == 0 {
                // A transaction of this command and the next template, with
                // a watch on one of the keys.
                let calls = [*template, (*template + 1) % TEMPLATES.len()]
                    .iter()
                    .map(|&t| Call { db: 0, argv: render(TEMPLATES[t], picks) })
                    .collect();
                let watches = vec![Watch {
                    db: 0,
                    key: Bytes::from(format!("k{}", picks[5] % 3)),
                    mark: (i as u64).saturating_sub(u64::from(picks[4] % 3)),
                    seen: picks[3] % 2 == 0,
                }];
                Op::Exec { watches, calls }
            } else {
                Op::Command { db: 0, argv: render(TEMPLATES[*template], picks) }
            };
            (stamp, op)
        })
        .collect()
}

fn apply_all(state: &mut State, log: &[(Stamp, Op)]) -> Vec<Reply> {
    log.iter().map(|(stamp, op)| state.apply(stamp, op)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn replicas_agree(steps in proptest::collection::vec(step(), 1..100)) {
        let log = log_of(&steps);
        let (mut a, mut b) = (State::new(), State::new());
        let ra = apply_all(&mut a, &log);
        let rb = apply_all(&mut b, &log);
        prop_assert_eq!(ra, rb);
        prop_assert_eq!(a.digest(), b.digest());
        prop_assert_eq!(a.snapshot_bytes(), b.snapshot_bytes());
        let now = log.last().map_or(0, |(s, _)| s.time_ms);
        for read in READS {
            for k in 0..3u8 {
                let argv = render(read, &[k; 8]);
                prop_assert_eq!(a.query(0, &argv, now, 0), b.query(0, &argv, now, 0));
            }
        }
    }

    #[test]
    fn snapshot_halfway_then_continue(steps in proptest::collection::vec(step(), 2..100), cut in 0usize..100) {
        let log = log_of(&steps);
        let cut = cut % log.len();
        let mut straight = State::new();
        let replies = apply_all(&mut straight, &log);
        let mut first = State::new();
        apply_all(&mut first, &log[..cut]);
        let mut restored = State::read_snapshot(&first.snapshot_bytes()[..]).expect("restore");
        prop_assert_eq!(restored.digest(), first.digest());
        let rest = apply_all(&mut restored, &log[cut..]);
        prop_assert_eq!(&rest[..], &replies[cut..]);
        prop_assert_eq!(restored.digest(), straight.digest());
        prop_assert_eq!(restored.snapshot_bytes(), straight.snapshot_bytes());
    }
}

//! Hash-field expiration (Redis 7.4) as replicated state:
//!
//! - the leader's purge entries remove due fields (and a hash they empty) at
//!   the same index on every replica, with Redis's `hexpired`/`del` events
//!   and a key change for client-side caching;
//! - two replicas fed the same log have equal digests and snapshots, and a
//!   snapshot carries the field TTLs (and the "listpackex" encoding);
//! - a state without field TTLs writes the same snapshot bytes as before.
//!
//! A redis-server 7.0 has no hash-field expiration, so the replies are checked
//! against the redis.io examples and Redis 7.4's source in the unit tests of
//! `crates/sm/src/cmd/hashes.rs` instead of differential scripts.

use bytes::Bytes;
use raftcache_sm::{Event, Op, Reply, Stamp, State};

mod common;
use common::{argv, Log};

/// The replicated clock at the first entry (ms).
const START: i64 = 1_700_000_000_000;

fn ints(v: &[i64]) -> Reply {
    Reply::Array(v.iter().map(|&n| Reply::Int(n)).collect())
}

/// The same log on a second engine, entry by entry.
fn replay(entries: &[(Stamp, Op)]) -> State {
    let mut s = State::new();
    for (stamp, op) in entries {
        s.apply(stamp, op);
    }
    s
}

#[test]
fn purge_removes_due_fields_with_events() {
    let mut log = Log::at(START);
    log.apply(Op::Config {
        name: "notify-keyspace-events".into(),
        value: Bytes::from_static(b"KEA"),
    });
    log.state.set_tracking(true);
    log.run("HSET h a 1 b 2");
    log.run("HSET only x 1");
    log.run("HPEXPIRE h 100 FIELDS 1 a");
    log.run("HPEXPIRE only 200 FIELDS 1 x");
    assert_eq!(log.state.next_expiry(), Some(log.time + 100));
    log.state.take_events();

    log.time += 100;
    assert_eq!(log.apply(Op::PurgeExpired { limit: 10 }), Reply::Int(1));
    let events = log.state.take_events();
    let keyspace: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Keyspace { event, key, .. } => Some((*event, key.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(keyspace, vec![("hexpired", Bytes::from_static(b"h"))]);
    assert!(events.iter().any(|e| matches!(e, Event::Modified { key, .. } if key == "h")));
    assert_eq!(log.read("HLEN h"), Reply::Int(1));
    assert_eq!(log.state.next_expiry(), Some(log.time + 100));

    // The last field of a hash: the hash goes too, `hexpired` then `del`.
    log.time += 100;
    assert_eq!(log.apply(Op::PurgeExpired { limit: 10 }), Reply::Int(1));
    let names: Vec<_> = log
        .state
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Keyspace { event, key, .. } => Some((event, key)),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        vec![("hexpired", Bytes::from_static(b"only")), ("del", Bytes::from_static(b"only"))]
    );
    assert_eq!(log.read("EXISTS only"), Reply::Int(0));
    assert_eq!(log.state.next_expiry(), None);
}

#[test]
fn purge_limit_counts_fields_and_resumes() {
    let mut log = Log::at(START);
    log.run("HSET h a 1 b 2 c 3 d 4");
    log.run("HPEXPIRE h 10 FIELDS 3 a b c");
    log.time += 10;
    assert_eq!(log.apply(Op::PurgeExpired { limit: 2 }), Reply::Int(2));
    assert_eq!(log.state.next_expiry(), Some(log.time), "one field still due");
    assert_eq!(log.apply(Op::PurgeExpired { limit: 2 }), Reply::Int(1));
    assert_eq!(log.read("HKEYS h"), Reply::Array(vec![Reply::Bulk(Bytes::from_static(b"d"))]));
    assert_eq!(log.state.next_expiry(), None);
}

#[test]
fn replicas_agree_and_snapshots_carry_field_ttls() {
    let lines = [
        "HSET small a 1 b 2 c 3",
        "HPEXPIRE small 5000 FIELDS 2 b c",
        "HPEXPIRE small 50 FIELDS 1 a",
        "HSET big f0 0",
        "HPEXPIRE big 100 FIELDS 1 f0",
        "HPERSIST small FIELDS 1 c",
        "RENAME small moved",
        "HSET plain x 1",
    ];
    let mut log = Log::at(START);
    let mut entries = Vec::new();
    for i in 0..600 {
        entries.push(format!("HSET big f{i} {i}"));
    }
    let all: Vec<String> = lines.iter().map(|s| s.to_string()).chain(entries).collect();
    let mut recorded = Vec::new();
    for (i, line) in all.iter().enumerate() {
        log.time += 1;
        if i == 300 {
            recorded.push((log.index, log.time, Op::PurgeExpired { limit: 5 }));
            log.apply(Op::PurgeExpired { limit: 5 });
        }
        let op = Op::Command { db: 0, argv: argv(line) };
        recorded.push((log.index, log.time, op.clone()));
        log.apply(op);
    }
    log.run("HPEXPIRE big 1000 FIELDS 2 f1 f2");
    recorded.push((
        log.index - 1,
        log.time,
        Op::Command { db: 0, argv: argv("HPEXPIRE big 1000 FIELDS 2 f1 f2") },
    ));
    let stamps: Vec<(Stamp, Op)> = recorded
        .into_iter()
        .map(|(before, time, op)| {
            (Stamp { index: before + 1, time_ms: time, seed: before + 1 }, op)
        })
        .collect();
    let other = replay(&stamps);
    assert_eq!(other.digest(), log.state.digest());
    assert_eq!(other.snapshot_bytes(), log.state.snapshot_bytes());

    assert_eq!(log.read("OBJECT ENCODING moved"), Reply::Bulk(Bytes::from_static(b"listpackex")));
    let restored = State::read_snapshot(&log.state.snapshot_bytes()[..]).expect("snapshot");
    assert_eq!(restored.digest(), log.state.digest());
    let q = |s: &State, line: &str| s.query(0, &argv(line), log.time, 0);
    for line in [
        "HPTTL moved FIELDS 3 a b c",
        "HKEYS moved",
        "OBJECT ENCODING moved",
        "HPTTL big FIELDS 3 f0 f1 f2",
        "OBJECT ENCODING plain",
    ] {
        assert_eq!(q(&restored, line), q(&log.state, line), "{line}");
    }
    assert_eq!(q(&restored, "HPTTL moved FIELDS 2 b c"), ints(&[5000 - 606, -1]));
    assert_eq!(restored.next_expiry(), log.state.next_expiry());

    // Both go on to purge the same fields at the same index.
    let mut a = log.state;
    let mut b = restored;
    let stamp = Stamp { index: log.index + 1, time_ms: log.time + 10_000, seed: 1 };
    let op = Op::PurgeExpired { limit: 100 };
    assert_eq!(a.apply(&stamp, &op), b.apply(&stamp, &op));
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.next_expiry(), None);
    assert_eq!(b.query(0, &argv("HLEN moved"), stamp.time_ms, 0), Reply::Int(1));
}

#[test]
fn states_without_field_ttls_keep_their_snapshot_bytes() {
    // A hash that never had a field TTL is written with the older tags, so
    // a snapshot of it reads back on an older build as well; the digest of
    // such a state is unchanged by this feature.
    let mut log = Log::at(START);
    log.run("HSET h a 1");
    let bytes = log.state.snapshot_bytes();
    let tag_pos = bytes.windows(3).position(|w| w == [0xFE, 0, 1]).expect("db section") + 3;
    assert_eq!(bytes[tag_pos], 2, "T_HASH_LISTPACK");
    log.run("HEXPIRE h 100 FIELDS 1 a");
    let bytes = log.state.snapshot_bytes();
    assert_eq!(bytes[tag_pos], 7, "T_HASH_LISTPACK_EX");
}

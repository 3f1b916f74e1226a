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

fn bulks(v: &[Option<&str>]) -> Reply {
    Reply::Array(
        v.iter()
            .map(|s| s.map_or(Reply::Nil, |s| Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))))
            .collect(),
    )
}

fn err(text: &str) -> Reply {
    Reply::error(text.to_string())
}

/// HGETDEL's redis.io example, then its errors (Redis 8.0's t_hash.c).
#[test]
fn hgetdel_returns_and_deletes_fields() {
    let mut log = Log::at(START);
    log.run("HSET mykey field1 Hello field2 World field3 !");
    assert_eq!(log.run("HGETDEL mykey FIELDS 2 field3 field4"), bulks(&[Some("!"), None]));
    assert_eq!(log.read("HLEN mykey"), Reply::Int(2));
    assert_eq!(
        log.run("HGETDEL mykey FIELDS 2 field1 field2"),
        bulks(&[Some("Hello"), Some("World")])
    );
    assert_eq!(log.read("EXISTS mykey"), Reply::Int(0), "the hash went with its last field");
    assert_eq!(log.run("HGETDEL missing FIELDS 1 f"), bulks(&[None]));
    log.run("SET s v");
    assert_eq!(
        log.run("HGETDEL s FIELDS 1 f"),
        err("WRONGTYPE Operation against a key holding the wrong kind of value")
    );
    log.run("HSET h f v");
    assert_eq!(
        log.run("HGETDEL h FIELD 1 f"),
        err("ERR Mandatory argument FIELDS is missing or not at the right position")
    );
    assert_eq!(
        log.run("HGETDEL h FIELDS 0 f"),
        err("ERR Number of fields must be a positive integer")
    );
    assert_eq!(
        log.run("HGETDEL h FIELDS x f"),
        err("ERR Number of fields must be a positive integer")
    );
    assert_eq!(
        log.run("HGETDEL h FIELDS 2 f"),
        err("ERR The `numfields` parameter must match the number of arguments")
    );
    assert_eq!(log.read("HGET h f"), Reply::Bulk(Bytes::from("v")), "errors change nothing");
}

/// HGETEX's redis.io example, PERSIST, a time already passed, errors.
#[test]
fn hgetex_gets_and_sets_field_ttls() {
    let mut log = Log::at(START);
    log.run("HSET mykey field1 Hello field2 World");
    assert_eq!(log.run("HGETEX mykey EX 120 FIELDS 1 field1"), bulks(&[Some("Hello")]));
    assert_eq!(log.run("HGETEX mykey EX 100 FIELDS 1 field2"), bulks(&[Some("World")]));
    assert_eq!(log.read("HTTL mykey FIELDS 3 field1 field2 field3"), ints(&[120, 100, -2]));
    let at = START / 1000 + 500;
    assert_eq!(
        log.run(&format!("HGETEX mykey EXAT {at} FIELDS 1 field1")),
        bulks(&[Some("Hello")])
    );
    assert_eq!(log.read("HEXPIRETIME mykey FIELDS 1 field1"), ints(&[at]));
    assert_eq!(log.run("HGETEX mykey PERSIST FIELDS 2 field1 nope"), bulks(&[Some("Hello"), None]));
    assert_eq!(log.read("HTTL mykey FIELDS 2 field1 field2"), ints(&[-1, 100]));
    // Without an option it is HMGET.
    assert_eq!(log.run("HGETEX mykey FIELDS 1 field2"), bulks(&[Some("World")]));
    assert_eq!(log.read("HTTL mykey FIELDS 1 field2"), ints(&[100]));
    // A time already passed deletes the field after returning it.
    assert_eq!(log.run("HGETEX mykey PXAT 1 FIELDS 1 field2"), bulks(&[Some("World")]));
    assert_eq!(log.read("HEXISTS mykey field2"), Reply::Int(0));
    log.time += 100_000;
    assert_eq!(log.run("HGETEX mykey PX 0 FIELDS 1 field1"), bulks(&[Some("Hello")]));
    assert_eq!(log.read("EXISTS mykey"), Reply::Int(0));
    assert_eq!(log.run("HGETEX missing EX 10 FIELDS 2 a b"), bulks(&[None, None]));
    log.run("HSET h f v");
    assert_eq!(log.run("HGETEX h EX -1 FIELDS 1 f"), err("ERR invalid expire time, must be >= 0"));
    assert_eq!(
        log.run("HGETEX h EX 99999999999999 FIELDS 1 f"),
        err("ERR invalid expire time in 'hgetex' command")
    );
    assert_eq!(
        log.run("HGETEX h EX 10 FIELD 1 f"),
        err("ERR Mandatory argument FIELDS is missing or not at the right position")
    );
    assert_eq!(
        log.run("HGETEX h EX x FIELDS 1 f"),
        err("ERR value is not an integer or out of range")
    );
}

/// HSETEX's redis.io example, FNX/FXX, KEEPTTL, and its argument errors.
#[test]
fn hsetex_sets_fields_with_ttls_under_conditions() {
    let mut log = Log::at(START);
    let at = START / 1000 + 1000;
    assert_eq!(
        log.run(&format!("HSETEX mykey EXAT {at} FIELDS 2 field1 Hello field2 World")),
        Reply::Int(1)
    );
    assert_eq!(log.read("HTTL mykey FIELDS 2 field1 field2"), ints(&[1000, 1000]));
    assert_eq!(log.run("HSETEX mykey FNX EX 60 FIELDS 2 field1 Hello field2 World"), Reply::Int(0));
    assert_eq!(
        log.run("HSETEX mykey FXX KEEPTTL FIELDS 2 field1 hello field2 world"),
        Reply::Int(1)
    );
    assert_eq!(log.read("HTTL mykey FIELDS 2 field1 field2"), ints(&[1000, 1000]));
    assert_eq!(log.read("HGET mykey field1"), Reply::Bulk(Bytes::from("hello")));
    // No TTL option: like HSET, the field's TTL goes.
    assert_eq!(log.run("HSETEX mykey FIELDS 1 field1 again"), Reply::Int(1));
    assert_eq!(log.read("HTTL mykey FIELDS 2 field1 field2"), ints(&[-1, 1000]));
    assert_eq!(log.run("HSETEX mykey FXX FIELDS 2 field1 a new b"), Reply::Int(0), "not all exist");
    assert_eq!(log.run("HSETEX absent FXX FIELDS 1 a b"), Reply::Int(0));
    assert_eq!(log.read("EXISTS absent"), Reply::Int(0));
    assert_eq!(log.run("HSETEX fresh FNX PX 500 FIELDS 1 a b"), Reply::Int(1));
    assert_eq!(log.read("HPTTL fresh FIELDS 1 a"), ints(&[500]));
    // A time already passed: set, then deleted; the hash goes if empty.
    assert_eq!(log.run("HSETEX gone PXAT 1 FIELDS 1 a b"), Reply::Int(1));
    assert_eq!(log.read("EXISTS gone"), Reply::Int(0));
    for (line, text) in [
        (
            "HSETEX k EX 10 PX 10 FIELDS 1 a b",
            "ERR Only one of EX, PX, EXAT, PXAT or KEEPTTL arguments can be specified",
        ),
        ("HSETEX k FNX FXX FIELDS 1 a b", "ERR Only one of FXX or FNX arguments can be specified"),
        ("HSETEX k FIELDS 0 a b", "ERR invalid number of fields"),
        ("HSETEX k FIELDS 2 a b", "ERR wrong number of arguments for 'hsetex' command"),
        ("HSETEX k NOPE FIELDS 1 a b", "ERR unknown argument: NOPE"),
        ("HSETEX k EX -5 FIELDS 1 a b", "ERR invalid expire time, must be >= 0"),
    ] {
        assert_eq!(log.run(line), err(text), "{line}");
    }
    log.run("SET s v");
    assert_eq!(
        log.run("HSETEX s FIELDS 1 a b"),
        err("WRONGTYPE Operation against a key holding the wrong kind of value")
    );
}

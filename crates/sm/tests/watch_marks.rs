//! Change marks (WATCH) against what the commands actually do.
//!
//! - Property: after every applied entry, every key whose visible value or
//!   expiry changed (a deep copy of the state before compared with the state
//!   after, at the entry's time) carries the entry's index as its version, or
//!   is gone with a tombstone at that index. A handler that forgets
//!   `Exec::modified` fails here: WATCH would miss its change.
//! - The converse, case by case: the no-op writes after which Redis 7.0.15
//!   does not call `signalModifiedKey` (an EXEC watching the key still runs),
//!   and the writes that change nothing visible yet do signal (EXEC aborts).
//!   Each case was checked against a real redis-server 7.0.15 with WATCH in
//!   one connection and the command in another.

use bytes::Bytes;
use proptest::prelude::*;
use raftcache_sm::db::Db;
use raftcache_sm::value::Value;
use raftcache_sm::{Call, Op, Reply, Stamp, State};

/// Keys of every type collide on this small pool.
const KEYS: usize = 4;
/// Databases the commands touch (MOVE, COPY … DB, SWAPDB reach database 1).
const DBS: usize = 2;

/// Command templates: `{k}` a key, `{m}` a member/field/value, `{n}` a small
/// integer, `{f}` a float, `{t}` a TTL in ms. Every write command of the
/// engine, its options and its no-op paths.
const TEMPLATES: &[&str] = &[
    "SET {k} {m}",
    "SET {k} {n} PX {t}",
    "SET {k} {m} NX EX 1",
    "SET {k} {m} XX KEEPTTL",
    "SET {k} {m} GET",
    "SET {k} {m} XX GET PXAT {t}",
    "SETNX {k} {m}",
    "SETEX {k} 1 {m}",
    "PSETEX {k} {t} {m}",
    "GETSET {k} {m}",
    "GETDEL {k}",
    "GETEX {k}",
    "GETEX {k} PX {t}",
    "GETEX {k} PXAT 1",
    "GETEX {k} PERSIST",
    "MSET {k} {m} {k} {n}",
    "MSETNX {k} {m} {k} {m}",
    "INCR {k}",
    "DECR {k}",
    "INCRBY {k} {n}",
    "DECRBY {k} {n}",
    "INCRBYFLOAT {k} {f}",
    "APPEND {k} {m}",
    "SETRANGE {k} {n} {m}",
    "DEL {k} {k}",
    "UNLINK {k}",
    "EXPIRE {k} {n}",
    "EXPIRE {k} {n} XX",
    "PEXPIRE {k} {t} GT",
    "PEXPIRE {k} {t} LT",
    "PEXPIRE {k} {t} NX",
    "EXPIREAT {k} 1",
    "PEXPIREAT {k} {n}",
    "PERSIST {k}",
    "RENAME {k} {k}",
    "RENAMENX {k} {k}",
    "COPY {k} {k}",
    "COPY {k} {k} REPLACE",
    "COPY {k} {k} DB 1",
    "COPY {k} {k} DB 0 REPLACE",
    "MOVE {k} 1",
    "MOVE {k} 0",
    "HSET {k} {m} {n} {m} {m}",
    "HMSET {k} {m} {n}",
    "HSETNX {k} {m} {n}",
    "HDEL {k} {m} {m}",
    "HINCRBY {k} {m} {n}",
    "HINCRBYFLOAT {k} {m} {f}",
    "LPUSH {k} {m} {n}",
    "RPUSH {k} {m}",
    "LPUSHX {k} {m}",
    "RPUSHX {k} {m}",
    "LPOP {k}",
    "LPOP {k} 0",
    "RPOP {k} 2",
    "LSET {k} 0 {m}",
    "LSET {k} -1 {n}",
    "LREM {k} 0 {m}",
    "LREM {k} -1 {n}",
    "LTRIM {k} 1 -1",
    "LTRIM {k} 0 -1",
    "LINSERT {k} BEFORE {m} {n}",
    "LINSERT {k} AFTER {n} {m}",
    "LMOVE {k} {k} LEFT RIGHT",
    "LMOVE {k} {k} RIGHT RIGHT",
    "RPOPLPUSH {k} {k}",
    "SADD {k} {m} {n}",
    "SADD {k} {n} {n}",
    "SREM {k} {m} {n}",
    "SPOP {k}",
    "SPOP {k} 0",
    "SPOP {k} 2",
    "SPOP {k} 9",
    "SMOVE {k} {k} {m}",
    "SMOVE {k} {k} {n}",
    "SINTERSTORE {k} {k} {k}",
    "SUNIONSTORE {k} {k} {k}",
    "SDIFFSTORE {k} {k} {k}",
    "ZADD {k} {f} {m}",
    "ZADD {k} NX {n} {m} {f} {n}",
    "ZADD {k} XX CH INCR {f} {m}",
    "ZADD {k} GT {n} {m}",
    "ZADD {k} LT CH {n} {m}",
    "ZINCRBY {k} {f} {m}",
    "ZINCRBY {k} 0 {m}",
    "ZREM {k} {m} {n}",
    "ZREMRANGEBYSCORE {k} -inf {n}",
    "ZREMRANGEBYRANK {k} 0 {n}",
    "ZREMRANGEBYLEX {k} - [{m}",
    "ZPOPMIN {k}",
    "ZPOPMAX {k} 2",
    "ZPOPMIN {k} 0",
    "FLUSHDB",
    "SWAPDB 0 1",
];

#[derive(Debug, Clone)]
struct Step {
    /// One template, or two applied as one transaction (one entry).
    templates: Vec<usize>,
    picks: Vec<u8>,
    time_delta: i64,
    purge: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop::collection::vec(0..TEMPLATES.len(), 1..=2),
        prop::collection::vec(any::<u8>(), 12),
        -20i64..300,
        prop::bool::weighted(0.04),
    )
        .prop_map(|(templates, picks, time_delta, purge)| Step {
            templates,
            picks,
            time_delta,
            purge,
        })
}

fn key(i: usize) -> String {
    format!("k{i}")
}

/// Fills a template from `picks`, deterministically; `salt` varies it.
fn render(template: &str, picks: &[u8], salt: usize) -> Vec<Bytes> {
    let mut i = salt * 5;
    let mut next = || {
        let v = picks[i % picks.len()];
        i += 1;
        v
    };
    template
        .split(' ')
        .map(|word| {
            let text = match word {
                "{k}" => key(next() as usize % KEYS),
                "{m}" => match next() % 4 {
                    0 => format!("{}", next() % 4),
                    1 => String::new(),
                    _ => format!("m{}", next() % 3),
                },
                "[{m}" => format!("[m{}", next() % 3),
                "{n}" => format!("{}", (next() % 8) as i64 - 2),
                "{f}" => format!("{}.{}", next() % 3, next() % 4),
                "{t}" => format!("{}", 1 + (next() as i64) * 3),
                other => other.to_string(),
            };
            Bytes::from(text)
        })
        .collect()
}

/// What a key looks like to a client at time `now`: its value and expiry.
fn visible(db: &Db, key: &str, now: i64) -> Option<(Value, Option<i64>)> {
    db.object(key.as_bytes(), now).map(|o| (o.value.clone(), o.expire_at))
}

/// Checks the marks of every key after the entry at `index`; returns how
/// many keys changed.
fn check_marks(before: &State, after: &State, index: u64, what: &str) -> Result<usize, String> {
    let now = after.clock_ms();
    let mut changed = 0;
    for d in 0..DBS {
        for k in 0..KEYS {
            let k = key(k);
            let old = visible(&before.dbs()[d], &k, now);
            let new = visible(&after.dbs()[d], &k, now);
            if old == new {
                continue;
            }
            changed += 1;
            let db = &after.dbs()[d];
            match db.object(k.as_bytes(), now) {
                Some(obj) if obj.version == index => {}
                Some(obj) => {
                    return Err(format!(
                        "{what}: db {d} key {k} changed ({old:?} -> {new:?}) but its version \
                         is {} not {index}",
                        obj.version
                    ))
                }
                None if db.changed_since(k.as_bytes(), index - 1, false, now) => {}
                None => {
                    return Err(format!(
                        "{what}: db {d} key {k} was removed ({old:?}) without a tombstone at \
                         {index}"
                    ))
                }
            }
        }
    }
    Ok(changed)
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut state = State::new();
    let mut time = 1_700_000_000_000i64;
    for (i, s) in steps.iter().enumerate() {
        time += s.time_delta;
        let index = i as u64 + 1;
        let stamp = Stamp { index, time_ms: time, seed: 0x5eed ^ (i as u64 * 7919) };
        let db = u32::from(s.picks[11] % 2);
        let (op, what) = if s.purge {
            (Op::PurgeExpired { limit: 3 }, "PURGE".to_string())
        } else if s.templates.len() == 1 {
            let argv = render(TEMPLATES[s.templates[0]], &s.picks, 0);
            let what = describe(db, &argv);
            (Op::Command { db, argv }, what)
        } else {
            let calls: Vec<Call> = s
                .templates
                .iter()
                .enumerate()
                .map(|(j, &t)| Call { db, argv: render(TEMPLATES[t], &s.picks, j) })
                .collect();
            let what = calls.iter().map(|c| describe(c.db, &c.argv)).collect::<Vec<_>>();
            (Op::Exec { watches: Vec::new(), calls }, format!("EXEC [{}]", what.join("; ")))
        };
        let before = state.clone();
        state.apply(&stamp, &op);
        check_marks(&before, &state, index, &format!("entry {index} {what}"))
            .map_err(TestCaseError::fail)?;
    }
    Ok(())
}

fn describe(db: u32, argv: &[Bytes]) -> String {
    let words: Vec<String> = argv.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    format!("db{db}: {}", words.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_change_is_marked(steps in prop::collection::vec(step(), 1..60)) {
        run(&steps)?;
    }
}

/// The property is only as good as its commands: over a long fixed run, every
/// template but the pure no-ops changes some key at least once (a template
/// that always failed, say on a syntax error, would check nothing).
#[test]
fn every_template_changes_something() {
    // Never a visible change (LTRIM 0 -1 still signals, see CASES).
    const NO_OPS: &[&str] =
        &["GETEX {k}", "LPOP {k} 0", "SPOP {k} 0", "ZPOPMIN {k} 0", "LTRIM {k} 0 -1"];
    let mut changes = vec![0usize; TEMPLATES.len()];
    let mut state = State::new();
    let mut time = 1_700_000_000_000i64;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for index in 1..=40_000u64 {
        let template = next() as usize % TEMPLATES.len();
        let picks: Vec<u8> = (0..12).map(|_| next() as u8).collect();
        time += (next() % 200) as i64;
        let db = u32::from(picks[11] % 2);
        let argv = render(TEMPLATES[template], &picks, 0);
        let what = describe(db, &argv);
        let before = state.clone();
        let stamp = Stamp { index, time_ms: time, seed: index };
        state.apply(&stamp, &Op::Command { db, argv });
        changes[template] += check_marks(&before, &state, index, &what).unwrap();
    }
    let idle: Vec<&str> = TEMPLATES
        .iter()
        .zip(&changes)
        .filter(|(t, &n)| n == 0 && !NO_OPS.contains(t))
        .map(|(t, _)| *t)
        .collect();
    assert!(idle.is_empty(), "templates that never changed a key: {idle:?}");
    for t in NO_OPS {
        let i = TEMPLATES.iter().position(|x| x == t).expect("listed");
        assert_eq!(changes[i], 0, "{t} changed a key");
    }
}

// ---------------------------------------------------------------------------
// The converse: which writes signal, case by case.

/// An engine that applies one command per entry in database 0.
struct Engine {
    state: State,
    index: u64,
    now: i64,
}

impl Engine {
    fn new() -> Engine {
        Engine { state: State::new(), index: 0, now: 1_700_000_000_000 }
    }

    fn run(&mut self, line: &str) -> Reply {
        self.index += 1;
        let argv = line.split(' ').map(|w| Bytes::from(w.replace("''", ""))).collect();
        let stamp = Stamp { index: self.index, time_ms: self.now, seed: 7 };
        self.state.apply(&stamp, &Op::Command { db: 0, argv })
    }

    /// What EXEC would decide for a WATCH of `key` taken now, after `line`.
    fn signals(&mut self, line: &str, key: &str) -> bool {
        let mark = self.index;
        let seen = self.state.dbs()[0].contains(key.as_bytes(), self.now);
        let reply = self.run(line);
        assert!(!matches!(reply, Reply::Error(_)), "{line}: {reply:?}");
        self.state.dbs()[0].changed_since(key.as_bytes(), mark, seen, self.now)
    }
}

/// `(setup, command, key, signals)`: after the setup commands (`;`
/// separated), does `command` change `key` for WATCH? `''` is an empty
/// argument. Every line was checked on redis-server 7.0.15: WATCH key in one
/// connection, the command in another, then MULTI/EXEC (aborted = signals).
const CASES: &[(&str, &str, &str, bool)] = &[
    // No-op writes: Redis does not signal.
    ("SET k v", "SET k w NX", "k", false),
    ("", "SET k v XX", "k", false),
    ("SET k v", "GETEX k", "k", false),
    ("SET k v", "GETEX k PERSIST", "k", false),
    ("SET a 1", "MSETNX a 1 b 2", "a", false),
    ("SET a 1", "MSETNX a 1 b 2", "b", false),
    ("SET s x", "SETRANGE s 0 ''", "s", false),
    ("", "SETRANGE s 0 ''", "s", false),
    ("SET k v", "DEL missing", "missing", false),
    ("SET k v", "PERSIST k", "k", false),
    ("", "EXPIRE k 100", "k", false),
    ("SET k v", "EXPIRE k 100 XX", "k", false),
    ("SET k v EX 100", "EXPIRE k 50 GT", "k", false),
    ("SET k v EX 100", "EXPIRE k 200 NX", "k", false),
    ("SET a 1", "RENAME a a", "a", false),
    ("SET a 1; SET b 1", "RENAMENX a b", "a", false),
    ("SET a 1; SET b 1", "RENAMENX a b", "b", false),
    ("SET a 1; SET b 2", "COPY a b", "b", false),
    ("SET a 1", "COPY a b", "a", false),
    ("SET a 1", "MOVE missing 1", "missing", false),
    ("HSET h f v", "HSETNX h f w", "h", false),
    ("HSET h f v", "HDEL h nope", "h", false),
    ("", "LPUSHX l a", "l", false),
    ("RPUSH l a", "LPOP l 0", "l", false),
    ("RPUSH l a b", "LREM l 0 z", "l", false),
    ("RPUSH l a b", "LINSERT l BEFORE z c", "l", false),
    ("", "LMOVE l m LEFT LEFT", "m", false),
    ("SADD s a b", "SADD s a b", "s", false),
    ("SADD s a", "SREM s z", "s", false),
    ("SADD s a", "SPOP s 0", "s", false),
    ("SADD s a; SADD d a", "SMOVE s d z", "s", false),
    ("SADD s a; SADD d a", "SMOVE s d a", "d", false),
    ("SADD s a", "SMOVE s s a", "s", false),
    ("SADD s a", "SINTERSTORE d s missing", "d", false),
    ("ZADD z 1 a", "ZADD z 1 a", "z", false),
    ("ZADD z 1 a", "ZADD z NX 2 a", "z", false),
    ("ZADD z 1 a", "ZADD z XX 2 b", "z", false),
    ("ZADD z 5 a", "ZADD z GT 2 a", "z", false),
    ("ZADD z 1 a", "ZINCRBY z 0 a", "z", false),
    ("ZADD z 1 a", "ZREM z b", "z", false),
    ("ZADD z 1 a", "ZREMRANGEBYSCORE z 2 3", "z", false),
    ("ZADD z 1 a", "ZREMRANGEBYRANK z 3 4", "z", false),
    ("ZADD z 1 a", "ZPOPMIN z 0", "z", false),
    // Writes that change nothing visible, yet signal.
    ("SET k v", "SET k v", "k", true),
    ("SET c 5", "INCRBY c 0", "c", true),
    ("SET c 5", "INCRBYFLOAT c 0", "c", true),
    ("SET s x", "APPEND s ''", "s", true),
    ("SET k v EX 100", "EXPIRE k 100", "k", true),
    ("HSET h f v", "HSET h f v", "h", true),
    ("HSET h f 1", "HINCRBY h f 0", "h", true),
    ("RPUSH l a b", "LTRIM l 0 -1", "l", true),
    ("RPUSH l a b", "LSET l 0 a", "l", true),
    ("RPUSH l a", "LMOVE l l LEFT RIGHT", "l", true),
    ("SADD s a; SADD d a", "SMOVE s d a", "s", true),
    ("SADD s a", "SINTERSTORE s s", "s", true),
    ("SET a 1; SET b 2", "COPY a b REPLACE", "b", true),
    ("SET a 1", "RENAME a b", "b", true),
];

#[test]
fn writes_signal_exactly_where_redis_does() {
    let mut wrong = Vec::new();
    for &(setup, command, key, expected) in CASES {
        let mut e = Engine::new();
        for line in setup.split(';').map(str::trim).filter(|l| !l.is_empty()) {
            e.run(line);
        }
        if e.signals(command, key) != expected {
            wrong.push(format!("{setup} | {command}: {key} signalled = {}", !expected));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// A key that expired but was not yet removed, then removed by a command:
/// no change to a WATCH taken after it expired, a change to one taken while
/// it was alive (as redis-server 7.0.15 decides: its `touchWatchedKey`
/// ignores the deletion of a key watched when already expired, and EXEC
/// aborts when a key watched alive has expired).
#[test]
fn expired_keys_removed_by_commands() {
    for command in ["DEL d", "SUNIONSTORE d missing", "SINTERSTORE d missing", "SDIFFSTORE d d"] {
        // Watched after it expired.
        let mut e = Engine::new();
        e.run("SET d x PX 10");
        e.now += 20;
        assert!(!e.signals(command, "d"), "{command}, watched expired");
        // Watched while alive.
        let mut e = Engine::new();
        e.run("SET d x PX 10");
        let mark = e.index;
        e.now += 20;
        e.run(command);
        assert!(
            e.state.dbs()[0].changed_since(b"d", mark, true, e.now),
            "{command}, watched alive"
        );
    }
    // Writes that create the key anew change it for every watcher.
    for command in ["SET d y", "SADD d a", "SUNIONSTORE d s"] {
        let mut e = Engine::new();
        e.run("SADD s a");
        e.run("SET d x PX 10");
        e.now += 20;
        assert!(e.signals(command, "d"), "{command}, watched expired");
    }
}

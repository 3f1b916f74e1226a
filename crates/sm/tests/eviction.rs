//! maxmemory and eviction in the engine: the accounting is a pure function of
//! the keyspace (a state restored from its snapshot accounts the same bytes),
//! eviction happens at apply before a write, chosen from replicated state
//! only (two replicas fed the same entries evict the same keys: equal
//! digests), `noeviction` and an empty volatile set answer Redis's OOM error
//! to writes that may grow memory while reads and deletes keep working.

mod common;

use bytes::Bytes;
use common::{argv, Log};
use raftcache_sm::memory::OOM;
use raftcache_sm::{Op, Reply, State};

fn config(log: &mut Log, name: &str, value: &str) {
    let op = Op::Config { name: name.into(), value: Bytes::copy_from_slice(value.as_bytes()) };
    assert_eq!(log.apply(op), Reply::Ok, "CONFIG SET {name} {value}");
}

fn restored(state: &State) -> State {
    State::read_snapshot(&state.snapshot_bytes()[..]).expect("snapshot reads back")
}

fn oom() -> Reply {
    Reply::error(OOM.to_string())
}

#[test]
fn accounting_follows_every_write_and_survives_a_snapshot() {
    let mut log = Log::new();
    assert_eq!(log.state.used_memory(), 0);
    log.run("SET a 0123456789");
    let one = log.state.used_memory();
    assert!(one > 10, "{one}");
    log.run("APPEND a 0123456789");
    assert_eq!(log.state.used_memory(), one + 10, "APPEND grows by its bytes");
    log.run("RPUSH l x y z");
    log.run("HSET h f v g w");
    log.run("SADD s 1 2 3 x");
    log.run("ZADD z 1 a 2 b");
    log.run("EXPIRE a 100");
    log.run("RENAME l l2");
    log.run("LPOP l2");
    let used = log.state.used_memory();
    let back = restored(&log.state);
    assert_eq!(back.used_memory(), used, "recomputed from scratch, the same bytes");
    assert_eq!(back.digest(), log.state.digest());
    for key in ["a", "l2", "h", "s", "z"] {
        log.run(&format!("DEL {key}"));
    }
    assert_eq!(log.state.used_memory(), 0, "every byte given back");
    log.run("SET big x");
    log.run("FLUSHALL");
    assert_eq!(log.state.used_memory(), 0);
    // MEMORY USAGE's number: the key's share.
    log.run("SET k v");
    assert_eq!(log.state.key_memory(0, b"k", log.time), Some(log.state.used_memory()));
    assert_eq!(log.state.key_memory(0, b"nope", log.time), None);
}

#[test]
fn noeviction_refuses_growing_writes_and_serves_reads_and_deletes() {
    let mut log = Log::new();
    config(&mut log, "maxmemory", "2000");
    let mut i = 0;
    let refused = loop {
        let reply = log.run(&format!("SET key:{i} {}", "v".repeat(50)));
        if reply != Reply::Ok {
            break reply;
        }
        i += 1;
        assert!(i < 1000, "never refused");
    };
    assert_eq!(refused, oom());
    assert!(log.state.used_memory() > 2000);
    assert_eq!(log.read("GET key:0"), Reply::Bulk(Bytes::from("v".repeat(50))));
    assert_eq!(log.run("RPUSH list a"), oom());
    assert_eq!(log.run("INCR counter"), oom());
    // Not denyoom: runs.
    assert_eq!(log.run("EXPIRE key:0 100"), Reply::Int(1));
    assert_eq!(log.run("DEL key:0 key:1 key:2 key:3 key:4"), Reply::Int(5));
    assert_eq!(log.run("SET again v"), Reply::Ok, "room again after the deletes");
    // A transaction with a growing command is refused whole.
    while log.run(&format!("SET fill:{i} {}", "v".repeat(50))) == Reply::Ok {
        i += 1;
    }
    let calls = vec![
        raftcache_sm::Call { db: 0, argv: argv("DEL again") },
        raftcache_sm::Call { db: 0, argv: argv("SET x y") },
    ];
    assert_eq!(log.apply(Op::Exec { watches: vec![], calls }), oom());
    assert_eq!(log.read("EXISTS again"), Reply::Int(1), "nothing of it ran");
    // A script runs, but its growing calls fail as Redis's do.
    let script = "return redis.pcall('SET', 'x', 'y')";
    let reply = log.apply(Op::Command {
        db: 0,
        argv: vec![Bytes::from("EVAL"), Bytes::from(script), Bytes::from("0")],
    });
    assert_eq!(reply, oom());
}

/// Fills a state under `policy` with 400 writes (three in four with a TTL;
/// the others alone fit in the limit) and returns it; every write succeeds
/// and memory never stays over the limit.
fn fill(policy: &str) -> Log {
    let mut log = Log::new();
    config(&mut log, "maxmemory", "20000");
    config(&mut log, "maxmemory-policy", policy);
    for i in 0..400 {
        let line = if i % 4 != 1 {
            format!("SET key:{i} {} EX 1000", "v".repeat(40 + i % 17))
        } else {
            format!("SET key:{i} {}", "v".repeat(40 + i % 13))
        };
        assert_eq!(log.run(&line), Reply::Ok, "{policy}: write {i}");
        if i % 5 == 0 {
            // Reads reported by the nodes (only LRU/LFU keep them).
            let keys = (0..i).step_by(7).map(|k| (0, Bytes::from(format!("key:{k}")))).collect();
            log.apply(Op::Touch { keys });
        }
        // Eviction makes room before a write (as Redis's does): the write
        // itself may go over by its own size.
        assert!(log.state.used_memory() <= 20_000 + 300, "{policy}: {}", log.state.used_memory());
    }
    log
}

#[test]
fn every_policy_evicts_the_same_keys_on_every_replica() {
    for policy in [
        "allkeys-lru",
        "allkeys-lfu",
        "allkeys-random",
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    ] {
        let a = fill(policy);
        let b = fill(policy);
        assert_eq!(a.state.digest(), b.state.digest(), "{policy}: replicas agree");
        let evicted = a.state.evicted_keys();
        assert!(evicted > 100, "{policy}: evicted {evicted}");
        let back = restored(&a.state);
        assert_eq!(back.digest(), a.state.digest(), "{policy}: the snapshot carries it all");
        assert_eq!(back.used_memory(), a.state.used_memory());
        let live = a.state.query(0, &argv("DBSIZE"), a.time, 0);
        let Reply::Int(live) = live else { panic!("{live:?}") };
        assert_eq!(live as u64 + evicted, 400, "{policy}");
        if policy.starts_with("volatile") {
            // Keys without a TTL are never evicted.
            for i in (1..400).step_by(4) {
                let key = format!("EXISTS key:{i}");
                assert_eq!(a.read(&key), Reply::Int(1), "{policy}: {key}");
            }
        }
    }
}

#[test]
fn volatile_policies_with_nothing_volatile_answer_oom() {
    let mut log = Log::new();
    config(&mut log, "maxmemory", "1000");
    config(&mut log, "maxmemory-policy", "volatile-lru");
    let mut replies = (0..100).map(|i| log.run(&format!("SET k{i} {}", "v".repeat(30))));
    assert!(replies.any(|r| r == oom()));
    assert_eq!(log.state.evicted_keys(), 0);
}

#[test]
fn lru_keeps_what_is_read_and_volatile_ttl_drops_the_soonest() {
    let mut log = Log::new();
    config(&mut log, "maxmemory", "30000");
    config(&mut log, "maxmemory-policy", "allkeys-lru");
    config(&mut log, "maxmemory-samples", "10");
    for i in 0..100 {
        log.run(&format!("SET hot:{i} {}", "v".repeat(40)));
    }
    for round in 0..40 {
        log.time += 2_000;
        // The hot keys are read (reported by the nodes) every round.
        log.apply(Op::Touch {
            keys: (0..100).map(|i| (0, Bytes::from(format!("hot:{i}")))).collect(),
        });
        for i in 0..20 {
            log.run(&format!("SET cold:{round}:{i} {}", "v".repeat(40)));
        }
    }
    assert!(log.state.evicted_keys() > 300);
    let hot = (0..100).filter(|i| log.read(&format!("EXISTS hot:{i}")) == Reply::Int(1)).count();
    assert!(hot >= 90, "only {hot} of 100 read keys survived");

    let mut log = Log::new();
    config(&mut log, "maxmemory", "5000");
    config(&mut log, "maxmemory-policy", "volatile-ttl");
    for i in 0..40 {
        log.run(&format!("SET t{i} {} EX {}", "v".repeat(30), 1000 - i));
    }
    // Before each write the key that expires soonest goes: the one written
    // just before (the last write itself stays until the next).
    assert_eq!(log.read("EXISTS t0"), Reply::Int(1));
    assert_eq!(log.read("EXISTS t38"), Reply::Int(0));
    assert_eq!(log.read("EXISTS t39"), Reply::Int(1));
}

#[test]
fn evictions_are_keyspace_events_and_changes_for_watch() {
    let mut log = Log::new();
    log.apply(Op::Config { name: "notify-keyspace-events".into(), value: Bytes::from("Ee") });
    log.run("SET victim v");
    let marks = log.watch("victim");
    config(&mut log, "maxmemory", "1");
    config(&mut log, "maxmemory-policy", "allkeys-random");
    let _ = log.state.take_events();
    // Any write first makes room: the only key goes.
    assert_eq!(log.run("DEL nothing"), Reply::Int(0));
    assert_eq!(log.state.evicted_keys(), 1);
    let events = log.state.take_events();
    assert!(
        events.iter().any(|e| matches!(e, raftcache_sm::Event::Keyspace { event: "evicted", key, .. } if key.as_ref() == b"victim")),
        "{events:?}"
    );
    assert_eq!(log.exec(marks, &["GET victim"]), Reply::NilArray, "WATCH saw the eviction");
}

#[test]
fn lfu_and_lru_information_is_replicated_state() {
    let mut log = Log::new();
    config(&mut log, "maxmemory-policy", "allkeys-lfu");
    log.run("SET k v");
    for _ in 0..50 {
        log.apply(Op::Touch { keys: vec![(0, Bytes::from("k"))] });
    }
    let freq = log.read("OBJECT FREQ k");
    assert!(matches!(freq, Reply::Int(n) if n > 5), "{freq:?}");
    let back = restored(&log.state);
    assert_eq!(back.digest(), log.state.digest());
    assert_eq!(back.query(0, &argv("OBJECT FREQ k"), log.time, 0), freq);
    // Another kind of policy forgets it (LFU counts are not LRU times) and
    // starts over from the next access.
    config(&mut log, "maxmemory-policy", "allkeys-lru");
    assert!(log.read("OBJECT FREQ k").is_error());
    log.time += 5_000;
    assert_eq!(log.read("OBJECT IDLETIME k"), Reply::Int(0), "no access since the switch");
    log.apply(Op::Touch { keys: vec![(0, Bytes::from("k"))] });
    log.time += 5_000;
    assert_eq!(log.read("OBJECT IDLETIME k"), Reply::Int(5));
}

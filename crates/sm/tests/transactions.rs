//! MULTI/EXEC in the engine: `Op::Exec` applies its calls as one unit and
//! aborts on every replica alike when a watched key changed after its mark;
//! `State::query_exec` serves transactions of reads. The WATCH cases follow
//! Redis 7.0.15 (see tests/differential/scripts/transactions for the same
//! cases against a real server).

use raftcache_sm::{Call, Op, Reply, State};

mod common;
use common::{argv, bulk, Log};

#[test]
fn exec_applies_every_call_and_keeps_runtime_errors_in_place() {
    let mut log = Log::new();
    log.run("SET s text");
    let reply = log.exec(vec![], &["SET a 1", "INCR s", "INCR a", "GET a"]);
    assert_eq!(
        reply,
        Reply::Array(vec![
            Reply::Ok,
            Reply::err("ERR value is not an integer or out of range"),
            Reply::Int(2),
            bulk("2"),
        ])
    );
    assert_eq!(log.exec(vec![], &[]), Reply::Array(vec![]));
}

#[test]
fn watch_aborts_on_a_change_after_the_mark_and_only_then() {
    let mut log = Log::new();
    log.run("SET k 1");
    // Untouched: runs.
    let w = log.watch("k");
    log.run("SET other 1");
    assert_eq!(log.exec(w, &["SET k 2"]), Reply::Array(vec![Reply::Ok]));
    // Changed after the mark (a transaction's own writes count too).
    let w = log.watch("k");
    log.run("INCR k");
    assert_eq!(log.exec(w, &["SET k 9"]), Reply::NilArray);
    assert_eq!(log.state.query(0, &argv("GET k"), log.time, 0), bulk("3"));
    // Deleted after the mark.
    let w = log.watch("k");
    log.run("DEL k");
    assert_eq!(log.exec(w, &["SET k 9"]), Reply::NilArray);
}

#[test]
fn watching_a_missing_key_sees_creation_and_create_then_delete() {
    let mut log = Log::new();
    let w = log.watch("k");
    log.run("SET k 1");
    assert_eq!(log.exec(w, &["GET k"]), Reply::NilArray);

    let w = log.watch("gone");
    log.run("SET gone 1");
    log.run("DEL gone");
    assert_eq!(log.exec(w, &["GET gone"]), Reply::NilArray, "created and deleted since");

    let w = log.watch("never");
    log.run("SET unrelated 1");
    log.run("DEL unrelated");
    assert_eq!(log.exec(w, &["GET never"]), Reply::Array(vec![Reply::Nil]));
}

#[test]
fn expiry_counts_for_those_who_saw_the_key_alive() {
    let mut log = Log::new();
    log.run("SET k v PX 100");
    let w = log.watch("k");
    log.time += 200;
    // Expired but not yet purged: a change (Redis 7.0's isWatchedKeyExpired).
    assert_eq!(log.exec(w.clone(), &["GET k"]), Reply::NilArray);
    // Purged: still a change for the same watch.
    log.apply(Op::PurgeExpired { limit: 10 });
    assert_eq!(log.exec(w, &["GET k"]), Reply::NilArray);

    // Already expired when watched, purged afterwards: not a change.
    log.run("SET e v PX 100");
    log.time += 200;
    let w = log.watch("e");
    assert!(!w[0].seen);
    log.apply(Op::PurgeExpired { limit: 10 });
    assert_eq!(log.exec(w, &["GET e"]), Reply::Array(vec![Reply::Nil]));

    // Created after the watch, then expired and purged: a change.
    let w = log.watch("late");
    log.run("SET late v PX 100");
    log.time += 200;
    log.apply(Op::PurgeExpired { limit: 10 });
    assert_eq!(log.exec(w, &["GET late"]), Reply::NilArray);
}

#[test]
fn flushall_and_swapdb_touch_existing_keys_only() {
    let mut log = Log::new();
    log.run("SET a 1");
    let w = log.watch("a missing");
    log.run("FLUSHALL");
    assert_eq!(log.exec(w, &["PING"]), Reply::NilArray, "a existed");
    let w = log.watch("missing");
    log.run("FLUSHALL");
    assert_eq!(log.exec(w.clone(), &["GET x"]), Reply::Array(vec![Reply::Nil]));

    log.run("SET b 1");
    let w = log.watch("b");
    log.run("SWAPDB 0 1");
    assert_eq!(log.exec(w, &["GET x"]), Reply::NilArray);
    // A key only in the other database is swapped in: a change too.
    log.apply(Op::Command { db: 1, argv: argv("SET c 1") });
    let w = log.watch("c");
    log.run("SWAPDB 0 1");
    assert_eq!(log.exec(w, &["GET x"]), Reply::NilArray);
}

#[test]
fn a_read_only_transaction_is_a_read() {
    let mut log = Log::new();
    log.run("SET k v");
    log.run("EXPIRE k 100");
    let w = log.watch("k");
    let calls: Vec<Call> =
        ["TTL k", "GET k"].iter().map(|l| Call { db: 0, argv: argv(l) }).collect();
    let before = log.state.digest();
    let reply = log.state.query_exec(&w, &calls, log.time, 7);
    assert_eq!(reply, Reply::Array(vec![Reply::Int(100), bulk("v")]));
    assert_eq!(log.state.digest(), before);
    log.run("SET k w");
    assert_eq!(log.state.query_exec(&w, &calls, log.time, 7), Reply::NilArray);
}

#[test]
fn marks_and_tombstones_survive_a_snapshot() {
    let mut log = Log::new();
    log.run("SET k 1");
    let w = log.watch("k gone");
    log.run("SET gone 1");
    log.run("DEL gone");
    let restored = State::read_snapshot(&log.state.snapshot_bytes()[..]).expect("restore");
    assert_eq!(restored.digest(), log.state.digest());
    let mut copy = Log { state: restored, index: log.index, time: log.time };
    assert_eq!(copy.exec(w.clone(), &["GET k"]), Reply::NilArray);
    assert_eq!(log.exec(w, &["GET k"]), Reply::NilArray);
    assert_eq!(copy.state.digest(), log.state.digest());
}

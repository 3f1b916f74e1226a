//! Cluster-wide configuration through the log: `Op::Config` changes the
//! encoding thresholds and `notify-keyspace-events` at one index on every
//! replica; both are in the snapshot and the digest, and a bad value changes
//! nothing.

use bytes::Bytes;
use raftcache_sm::{Op, Reply, Stamp, State};

fn apply(state: &mut State, index: u64, op: Op) -> Reply {
    state.apply(&Stamp { index, time_ms: 1_000, seed: index }, &op)
}

fn cmd(line: &str) -> Op {
    Op::Command {
        db: 0,
        argv: line.split(' ').map(|w| Bytes::copy_from_slice(w.as_bytes())).collect(),
    }
}

fn config(name: &str, value: &str) -> Op {
    Op::Config { name: name.into(), value: Bytes::copy_from_slice(value.as_bytes()) }
}

#[test]
fn encoding_thresholds_are_replicated_configuration() {
    let mut state = State::new();
    let before = state.digest();
    assert_eq!(apply(&mut state, 1, config("hash-max-ziplist-entries", "2")), Reply::Ok);
    assert_ne!(state.digest(), before, "configuration is in the digest");
    apply(&mut state, 2, cmd("HSET h a 1 b 2"));
    let encoding = |s: &State| {
        s.query(0, &[Bytes::from("OBJECT"), Bytes::from("ENCODING"), Bytes::from("h")], 1_000, 0)
    };
    assert_eq!(encoding(&state), Reply::Bulk(Bytes::from("listpack")));
    apply(&mut state, 3, cmd("HSET h c 3"));
    assert_eq!(encoding(&state), Reply::Bulk(Bytes::from("hashtable")));
    let bad = apply(&mut state, 4, config("set-max-intset-entries", "-1"));
    assert!(bad.is_error());
    assert_eq!(state.config_value("set-max-intset-entries").as_deref(), Some("512"));
    apply(&mut state, 5, config("notify-keyspace-events", "KEA"));

    let mut restored = State::read_snapshot(&state.snapshot_bytes()[..]).expect("restore");
    assert_eq!(restored.digest(), state.digest());
    assert_eq!(restored.config_value("hash-max-listpack-entries").as_deref(), Some("2"));
    assert_eq!(restored.config_value("notify-keyspace-events").as_deref(), Some("AKE"));
    // The restored replica converts exactly like the original.
    for s in [&mut state, &mut restored] {
        apply(s, 6, cmd("HSET g a 1 b 2 c 3"));
        assert_eq!(
            s.query(
                0,
                &[Bytes::from("OBJECT"), Bytes::from("ENCODING"), Bytes::from("g")],
                1_000,
                0
            ),
            Reply::Bulk(Bytes::from("hashtable"))
        );
    }
    assert_eq!(restored.digest(), state.digest());
}

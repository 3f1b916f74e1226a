//! The engine on arbitrary commands: every command of the table, arbitrary
//! arguments, writes applied as log entries at advancing replicated times,
//! reads served in between.
//!
//! Checks: no panic on any input (a replica that panics on an entry could
//! never apply the log past it); two replicas applying the same entries hold
//! the same digest; a snapshot restores to the same digest.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use raftcache_sm::command::all;
use raftcache_sm::{Kind, Op, Stamp, State};

/// Small argument values the fuzzer can pick by one byte, so it reaches
/// options, numbers and the edges of numeric parsing quickly.
const WORDS: &[&str] = &[
    "k",
    "k2",
    "h",
    "l",
    "0",
    "1",
    "-1",
    "2",
    "10",
    "100",
    "1.5",
    "-inf",
    "+inf",
    "nan",
    "9223372036854775807",
    "-9223372036854775808",
    "EX",
    "PX",
    "NX",
    "XX",
    "GET",
    "KEEPTTL",
    "EXAT",
    "PXAT",
    "GT",
    "LT",
    "CH",
    "INCR",
    "WITHSCORES",
    "LIMIT",
    "COUNT",
    "MATCH",
    "*",
    "BEFORE",
    "AFTER",
    "LEFT",
    "RIGHT",
    "REV",
    "BYSCORE",
    "BYLEX",
    "[a",
    "(1",
    "-",
    "+",
    "",
];

/// Parses the input into commands: a byte picks the command, a byte the
/// number of arguments, then each argument is a word from [`WORDS`] or raw
/// bytes.
fn commands(mut data: &[u8]) -> Vec<Vec<Bytes>> {
    let specs: Vec<_> = all().collect();
    let mut out = Vec::new();
    while data.len() >= 2 && out.len() < 64 {
        let spec = specs[usize::from(data[0]) % specs.len()];
        let nargs = usize::from(data[1] % 8);
        data = &data[2..];
        let mut argv = vec![Bytes::from_static(spec.name.as_bytes())];
        for _ in 0..nargs {
            let Some((&b, rest)) = data.split_first() else { break };
            data = rest;
            if b < 0xe0 {
                argv.push(Bytes::from_static(WORDS[usize::from(b) % WORDS.len()].as_bytes()));
            } else {
                let n = usize::from(b - 0xe0).min(data.len());
                argv.push(Bytes::copy_from_slice(&data[..n]));
                data = &data[n..];
            }
        }
        out.push(argv);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let mut a = State::new();
    let mut b = State::new();
    let mut index = 0;
    let mut time_ms = 1_700_000_000_000;
    for argv in commands(data) {
        let is_write =
            matches!(raftcache_sm::lookup(&argv[0]).map(|s| &s.kind), Some(Kind::Write(_)));
        if is_write {
            index += 1;
            time_ms += 250;
            let stamp = Stamp { index, time_ms, seed: index };
            let op = Op::Command { db: 0, argv };
            let ra = a.apply(&stamp, &op);
            let rb = b.apply(&stamp, &op);
            assert_eq!(ra, rb, "replicas answered the same entry differently");
        } else {
            let _ = a.query(0, &argv, time_ms, 7);
        }
    }
    assert_eq!(a.digest(), b.digest(), "replicas diverged");
    let restored = State::read_snapshot(&a.snapshot_bytes()[..]).expect("own snapshot loads");
    assert_eq!(restored.digest(), a.digest(), "snapshot changed the state");
});

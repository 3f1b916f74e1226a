//! What the engine's integration tests share: an engine fed a log, one entry
//! per call, with a replicated clock the test moves by hand.
//!
//! Each test binary uses part of it.
#![allow(dead_code)]

use bytes::Bytes;
use raftcache_sm::{Call, Op, Reply, Stamp, State, Watch};

/// A redis-cli-like line split on spaces.
pub fn argv(line: &str) -> Vec<Bytes> {
    line.split(' ').map(|w| Bytes::copy_from_slice(w.as_bytes())).collect()
}

pub fn bulk(s: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

/// An engine with a log index and a replicated clock: each write is the
/// next entry, stamped with `time` and a seed from its index.
pub struct Log {
    pub state: State,
    pub index: u64,
    pub time: i64,
}

impl Log {
    pub fn new() -> Log {
        Log::at(1_000_000)
    }

    /// A log whose clock starts at `time` (ms).
    pub fn at(time: i64) -> Log {
        Log { state: State::new(), index: 0, time }
    }

    pub fn apply(&mut self, op: Op) -> Reply {
        self.index += 1;
        let stamp = Stamp { index: self.index, time_ms: self.time, seed: self.index };
        self.state.apply(&stamp, &op)
    }

    /// A client command, as a log entry.
    pub fn run(&mut self, line: &str) -> Reply {
        self.apply(Op::Command { db: 0, argv: argv(line) })
    }

    /// A read, served from the state as a node does (no log entry).
    pub fn read(&self, line: &str) -> Reply {
        self.state.query(0, &argv(line), self.time, 0)
    }

    /// WATCH as a node does it: marks read at the applied index.
    pub fn watch(&self, keys: &str) -> Vec<Watch> {
        self.state.watch_marks(0, &argv(keys), self.time)
    }

    /// EXEC of `lines` under `watches`, as one entry.
    pub fn exec(&mut self, watches: Vec<Watch>, lines: &[&str]) -> Reply {
        let calls = lines.iter().map(|l| Call { db: 0, argv: argv(l) }).collect();
        self.apply(Op::Exec { watches, calls })
    }
}

//! A small harness for unit tests of handlers: apply writes and run reads at a
//! chosen time, with arguments written like a redis-cli line.

use bytes::Bytes;

use crate::command::{self, Kind};
use crate::reply::Reply;
use crate::state::{Op, Stamp, State};

/// Splits a command line on spaces; `"..."` groups words (no escapes needed in
/// tests), and `""` is an empty argument.
pub fn argv(line: &str) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
        } else if c == '"' {
            chars.next();
            let word: String = chars.by_ref().take_while(|&c| c != '"').collect();
            out.push(Bytes::from(word));
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                word.push(c);
                chars.next();
            }
            out.push(Bytes::from(word));
        }
    }
    out
}

/// An engine with a clock and a log index that advance as commands run.
pub struct Harness {
    pub state: State,
    pub now: i64,
    pub index: u64,
    pub seed: u64,
}

impl Default for Harness {
    fn default() -> Self {
        Harness { state: State::new(), now: 1_000_000, index: 0, seed: 42 }
    }
}

impl Harness {
    pub fn new() -> Harness {
        Harness::default()
    }

    /// Runs one command the way the node would: writes through `apply` (a new
    /// log entry), reads through `query`.
    pub fn run(&mut self, line: &str) -> Reply {
        let argv = argv(line);
        match command::lookup(&argv[0]).map(|s| s.kind) {
            Some(Kind::Read(_)) => self.state.query(0, &argv, self.now, self.seed),
            _ => {
                self.index += 1;
                let stamp = Stamp { index: self.index, time_ms: self.now, seed: self.seed };
                self.state.apply(&stamp, &Op::Command { db: 0, argv })
            }
        }
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, ms: i64) {
        self.now += ms;
    }
}

/// Shorthands for expected replies.
pub fn bulk(s: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

pub fn int(n: i64) -> Reply {
    Reply::Int(n)
}

pub fn err(s: &'static str) -> Reply {
    Reply::err(s)
}

pub fn array(items: &[&str]) -> Reply {
    Reply::Array(items.iter().map(|s| bulk(s)).collect())
}

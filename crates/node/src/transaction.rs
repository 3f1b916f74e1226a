//! MULTI … EXEC on one connection: queueing, and turning the queue into one
//! engine operation.
//!
//! Between MULTI and EXEC a connection queues its commands (each answered
//! `+QUEUED`). At EXEC the commands the engine runs become one
//! [`Op::Exec`](raftcache_sm::Op::Exec): one log entry, applied atomically on
//! every node, that carries the connection's WATCH marks and is aborted (null
//! array) on every node alike if a watched key changed after its mark. A
//! transaction of reads only needs no log entry: it runs as one linearizable
//! read ([`raftcache_sm::State::query_exec`]). Commands the node serves itself
//! (PING, ECHO, SELECT, CLIENT …) run on the node once the engine's part has
//! succeeded, and their replies are put back in place.
//!
//! SELECT inside MULTI changes the database of the commands queued after it,
//! as in Redis: the queue tracks the database each command will run in, with
//! the same checks SELECT makes when it runs.

use bytes::Bytes;
use raftcache_sm::args::parse_i64;
use raftcache_sm::state::DATABASES;
use raftcache_sm::{Call, Reply};

/// Commands that run at once even inside MULTI (Redis's list in
/// `processCommand`).
pub fn runs_immediately(name: &str) -> bool {
    matches!(name, "exec" | "discard" | "multi" | "watch" | "quit" | "reset")
}

/// Commands refused inside MULTI (Redis 7.0's `no_multi` flag among the
/// commands raftcache has, and WAIT, which asks the other nodes and so
/// cannot answer at once from inside EXEC; DIFFERENCES.md lists it):
/// refusing one aborts the transaction.
pub fn refused_in_multi(name: &str) -> bool {
    matches!(name, "save" | "wait")
}

/// `-EXECABORT` after a command was refused while queueing.
pub const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

/// One queued command.
#[derive(Debug)]
enum Queued {
    /// Runs in the engine (its position among the engine calls is implied).
    Engine { write: bool },
    /// Runs on the node: its name and arguments.
    Node { name: &'static str, argv: Vec<Bytes> },
}

/// The commands a connection queued since MULTI.
#[derive(Debug)]
pub struct Transaction {
    order: Vec<Queued>,
    calls: Vec<Call>,
    /// A command was refused while queueing: EXEC answers [`EXECABORT`].
    pub dirty: bool,
    /// The database the next queued command will run in.
    db: usize,
}

/// What EXEC must do, once the queue is split.
#[derive(Debug)]
pub struct Plan {
    /// The engine's calls, in order.
    pub calls: Vec<Call>,
    /// True if any call may write (the transaction goes through the log).
    pub writes: bool,
    /// The whole queue: `None` for an engine call (its reply comes from the
    /// engine's array, in order), or a command the node runs.
    steps: Vec<Option<(&'static str, Vec<Bytes>)>>,
}

impl Transaction {
    /// A transaction started by MULTI on a connection using database `db`.
    pub fn new(db: usize) -> Transaction {
        Transaction { order: Vec::new(), calls: Vec::new(), dirty: false, db }
    }

    /// Number of commands queued.
    pub fn queued(&self) -> usize {
        self.order.len()
    }

    /// Queues a command the engine runs.
    pub fn queue_engine(&mut self, argv: Vec<Bytes>, write: bool) {
        self.order.push(Queued::Engine { write });
        self.calls.push(Call { db: self.db as u32, argv });
    }

    /// Queues a command the node runs. A valid SELECT switches the database
    /// of the commands queued after it.
    pub fn queue_node(&mut self, name: &'static str, argv: Vec<Bytes>) {
        if name == "select" {
            if let Some(n) = argv.get(1).and_then(|a| parse_i64(a)) {
                if (0..DATABASES as i64).contains(&n) {
                    self.db = n as usize;
                }
            }
        }
        self.order.push(Queued::Node { name, argv });
    }

    /// Splits the queue into the engine's part and the node's.
    pub fn plan(self) -> Plan {
        let writes = self.order.iter().any(|q| matches!(q, Queued::Engine { write: true }));
        let steps = self
            .order
            .into_iter()
            .map(|q| match q {
                Queued::Engine { .. } => None,
                Queued::Node { name, argv } => Some((name, argv)),
            })
            .collect();
        Plan { calls: self.calls, writes, steps }
    }
}

impl Plan {
    /// True if EXEC needs the engine at all (it has calls, or watches to check).
    pub fn needs_engine(&self, watching: bool) -> bool {
        !self.calls.is_empty() || watching
    }

    /// EXEC's reply: the engine's replies with the node's put in place, the
    /// node's commands run by `run_node` in queue order. `engine` is the
    /// engine's reply (an array, or a null array if a watched key changed, in
    /// which case nothing runs on the node either).
    pub fn assemble(
        self,
        engine: Reply,
        mut run_node: impl FnMut(&'static str, &[Bytes]) -> Reply,
    ) -> Reply {
        let mut engine = match engine {
            Reply::Array(items) => items.into_iter(),
            Reply::NilArray => return Reply::NilArray,
            other => return other,
        };
        let replies = self
            .steps
            .into_iter()
            .map(|step| match step {
                None => engine.next().unwrap_or_else(|| {
                    Reply::err("ERR internal error: the engine gave fewer replies than calls")
                }),
                Some((name, argv)) => run_node(name, &argv),
            })
            .collect();
        Reply::Array(replies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(parts: &[&str]) -> Vec<Bytes> {
        parts.iter().map(|p| Bytes::copy_from_slice(p.as_bytes())).collect()
    }

    #[test]
    fn select_moves_later_calls_and_replies_go_back_in_place() {
        let mut t = Transaction::new(0);
        t.queue_engine(argv(&["set", "a", "1"]), true);
        t.queue_node("select", argv(&["select", "3"]));
        t.queue_engine(argv(&["get", "a"]), false);
        t.queue_node("select", argv(&["select", "99"]));
        t.queue_node("ping", argv(&["ping"]));
        t.queue_engine(argv(&["get", "b"]), false);
        let plan = t.plan();
        assert!(plan.writes);
        assert_eq!(plan.calls.iter().map(|c| c.db).collect::<Vec<_>>(), vec![0, 3, 3]);
        let engine = Reply::Array(vec![Reply::Ok, Reply::Nil, Reply::Int(7)]);
        let mut ran = Vec::new();
        let reply = plan.assemble(engine, |name, _| {
            ran.push(name);
            Reply::status("node")
        });
        assert_eq!(ran, vec!["select", "select", "ping"]);
        let Reply::Array(items) = reply else { panic!("array") };
        assert_eq!(items[0], Reply::Ok);
        assert_eq!(items[1], Reply::status("node"));
        assert_eq!(items[2], Reply::Nil);
        assert_eq!(items[5], Reply::Int(7));
    }

    #[test]
    fn an_aborted_transaction_runs_nothing_on_the_node() {
        let mut t = Transaction::new(0);
        t.queue_node("ping", argv(&["ping"]));
        t.queue_engine(argv(&["get", "a"]), false);
        let plan = t.plan();
        assert!(!plan.writes);
        let reply = plan.assemble(Reply::NilArray, |_, _| panic!("must not run"));
        assert_eq!(reply, Reply::NilArray);
    }
}

//! Scripting commands: EVAL EVALSHA EVAL_RO EVALSHA_RO SCRIPT.
//!
//! A script runs inside apply, as part of its log entry, on every replica
//! (see [`crate::script`] for what makes that deterministic). The script
//! cache — SHA1 → body — is replicated state: EVAL and SCRIPT LOAD add to it
//! through the log, SCRIPT FLUSH empties it, and it is in the snapshot and the
//! digest, so EVALSHA works through any node, after a restart and after a
//! snapshot install. Each node compiles scripts into its own [`ScriptVm`]
//! (not replicated; built on first use, kept across calls).
//!
//! `redis.call` runs commands through [`WriteHost`] (a write script: the
//! entry's databases, index, time and randomness) or [`ReadHost`] (EVAL_RO and
//! friends, served as reads without the log). SELECT inside a script changes
//! the script's database only, as in Redis 7.0; TIME answers the entry's time.
//!
//! What a script that fails half-way leaves behind: the writes it made before
//! the error stay applied, as in Redis, and identically on every replica
//! (the error happens at the same point everywhere, including a stop by the
//! instruction budget).

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;

use crate::args::{self, Res};
use crate::command::{self, arity_error, unknown_subcommand_error, Kind, Spec};
use crate::reply::{errors, Reply};
use crate::script::{self, Host, RunOptions, ScriptVm, Sha};
use crate::state::{Exec, Query, Rng};

pub const COMMANDS: &[Spec] = &[
    Spec::write("eval", -3, (0, 0, 0), eval),
    Spec::write("evalsha", -3, (0, 0, 0), evalsha),
    Spec::read("eval_ro", -3, (0, 0, 0), eval_ro),
    Spec::read("evalsha_ro", -3, (0, 0, 0), evalsha_ro),
    Spec::write("script", -2, (0, 0, 0), script),
];

/// The replicated script cache: SHA1 (lowercase hex) → body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scripts {
    pub(crate) bodies: BTreeMap<String, Bytes>,
}

impl Scripts {
    /// The body of a cached script.
    pub fn get(&self, sha: &[u8]) -> Option<&Bytes> {
        std::str::from_utf8(sha).ok().and_then(|s| self.bodies.get(s))
    }

    /// The body of a cached script, by its parsed SHA1.
    pub fn body(&self, sha: &Sha) -> Option<&Bytes> {
        self.bodies.get(sha.as_str())
    }

    /// The body of the script EVALSHA names (any case), and its SHA1.
    fn find(&self, sha: &[u8]) -> Option<(Sha, &Bytes)> {
        let sha = Sha::parse(sha)?;
        Some((sha, self.body(&sha)?))
    }

    pub fn len(&self) -> usize {
        self.bodies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bodies.is_empty()
    }

    /// Adds a body (EVAL, SCRIPT LOAD) under its SHA1.
    pub(crate) fn insert(&mut self, sha: String, body: Bytes) {
        self.bodies.entry(sha).or_insert(body);
    }

    /// [`Scripts::insert`] without making a key for a body already there.
    fn add(&mut self, sha: Sha, body: &Bytes) {
        if !self.bodies.contains_key(sha.as_str()) {
            self.bodies.insert(sha.to_string(), body.clone());
        }
    }

    /// The scripts in SHA1 order (snapshot, digest).
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Bytes)> {
        self.bodies.iter()
    }
}

/// This node's interpreter, built on first use. Not replicated state: a
/// clone starts without one, and it takes no part in comparing states.
#[derive(Default)]
pub struct VmCell(Mutex<Option<ScriptVm>>);

impl VmCell {
    /// Runs `f` with the interpreter, building it first if needed.
    pub fn with<T>(&self, f: impl FnOnce(&mut ScriptVm) -> T) -> T {
        let mut vm = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(vm.get_or_insert_with(ScriptVm::new))
    }

    /// Drops every compiled script (SCRIPT FLUSH).
    pub fn flush(&self) {
        let mut vm = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(vm) = vm.as_mut() {
            vm.flush();
        }
    }
}

impl Clone for VmCell {
    fn clone(&self) -> Self {
        VmCell::default()
    }
}

impl PartialEq for VmCell {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for VmCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VmCell")
    }
}

/// The instruction budget of one script run (see [`crate::script`]).
pub const INSTRUCTION_BUDGET: u64 = script::DEFAULT_INSTRUCTION_BUDGET;

/// `numkeys` and the split of the rest into KEYS and ARGV, with Redis's
/// errors.
fn split_keys(argv: &[Bytes]) -> Res<(&[Bytes], &[Bytes])> {
    let numkeys = args::int(&argv[2])?;
    let rest = &argv[3..];
    if numkeys > rest.len() as i64 {
        return Err(Reply::err("ERR Number of keys can't be greater than number of args"));
    }
    if numkeys < 0 {
        return Err(Reply::err("ERR Number of keys can't be negative"));
    }
    Ok(rest.split_at(numkeys as usize))
}

const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";

/// The options of a run from the entry (or read) that runs it.
fn options(rng: &mut Rng, read_only: bool) -> RunOptions {
    RunOptions {
        seed: rng.next_u64(),
        read_only,
        instruction_budget: INSTRUCTION_BUDGET,
        ..RunOptions::default()
    }
}

/// EVAL script numkeys [key ...] [arg ...]
fn eval(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let (keys, args) = split_keys(argv)?;
    let body = argv[1].clone();
    let vm = x.vm;
    // A script that does not compile is not cached (Redis adds it only once
    // it compiled).
    let sha = vm.with(|vm| vm.compile(&body))?;
    x.scripts.add(sha, &body);
    run_write(x, sha, &body, keys, args)
}

/// EVALSHA sha1 numkeys [key ...] [arg ...]
fn evalsha(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    if argv[1].len() != 40 {
        return Err(Reply::err(NOSCRIPT));
    }
    let (keys, args) = split_keys(argv)?;
    let Some((sha, body)) = x.scripts.find(&argv[1]) else {
        return Err(Reply::err(NOSCRIPT));
    };
    let body = body.clone();
    run_write(x, sha, &body, keys, args)
}

fn run_write(x: &mut Exec, sha: Sha, body: &Bytes, keys: &[Bytes], args: &[Bytes]) -> Res<Reply> {
    let opts = options(&mut x.rng, false);
    let vm = x.vm;
    let db = x.db;
    let mut host = WriteHost { x, db };
    Ok(vm.with(|vm| vm.run_sha(sha, body, keys, args, &opts, &mut host)))
}

/// EVAL_RO script numkeys [key ...] [arg ...]
fn eval_ro(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let (keys, args) = split_keys(argv)?;
    run_read(q, None, &argv[1].clone(), keys, args)
}

/// EVALSHA_RO sha1 numkeys [key ...] [arg ...]
fn evalsha_ro(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    if argv[1].len() != 40 {
        return Err(Reply::err(NOSCRIPT));
    }
    let (keys, args) = split_keys(argv)?;
    let Some((sha, body)) = q.scripts.find(&argv[1]) else {
        return Err(Reply::err(NOSCRIPT));
    };
    let body = body.clone();
    run_read(q, Some(sha), &body, keys, args)
}

fn run_read(
    q: &mut Query,
    sha: Option<Sha>,
    body: &Bytes,
    keys: &[Bytes],
    args: &[Bytes],
) -> Res<Reply> {
    let opts = options(&mut q.rng, true);
    let vm = q.vm;
    let mut host = ReadHost {
        dbs: q.dbs,
        scripts: q.scripts,
        vm: q.vm,
        locks: q.locks,
        blocked: q.blocked,
        db: q.db,
        now: q.now,
        rng: Rng::new(opts.seed),
        memory: q.memory,
    };
    Ok(vm.with(|vm| match sha {
        Some(sha) => vm.run_sha(sha, body, keys, args, &opts, &mut host),
        None => vm.run(body, keys, args, &opts, &mut host),
    }))
}

const SCRIPT_HELP: &[&str] = &[
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
];

/// SCRIPT LOAD | EXISTS | FLUSH | KILL | DEBUG | HELP
fn script(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let sub = argv[1].to_ascii_lowercase();
    let arity_ok = |n: i64| {
        let argc = argv.len() as i64;
        if n >= 0 {
            argc == n
        } else {
            argc >= -n
        }
    };
    let (name, arity): (&str, i64) = match sub.as_slice() {
        b"load" => ("script|load", 3),
        b"exists" => ("script|exists", -3),
        b"flush" => ("script|flush", -2),
        b"kill" => ("script|kill", 2),
        b"debug" => ("script|debug", 3),
        b"help" => ("script|help", 2),
        _ => return Err(unknown_subcommand_error("script", &argv[1])),
    };
    if !arity_ok(arity) {
        return Err(arity_error(name));
    }
    match name {
        "script|load" => {
            let body = argv[2].clone();
            let sha = x.vm.with(|vm| vm.compile(&body))?;
            x.scripts.insert(sha.to_string(), body);
            Ok(Reply::Bulk(Bytes::from(sha.to_string())))
        }
        "script|exists" => Ok(Reply::Array(
            argv[2..]
                .iter()
                .map(|sha| Reply::Int(i64::from(x.scripts.find(sha).is_some())))
                .collect(),
        )),
        "script|flush" => {
            let mode_ok = match &argv[2..] {
                [] => true,
                [mode] => args::is(mode, "sync") || args::is(mode, "async"),
                _ => false,
            };
            if !mode_ok {
                return Err(Reply::err("ERR SCRIPT FLUSH only support SYNC|ASYNC option"));
            }
            x.scripts.bodies.clear();
            x.vm.flush();
            Ok(Reply::Ok)
        }
        "script|kill" => Err(Reply::err("NOTBUSY No scripts in execution right now.")),
        "script|debug" => {
            // The debugger needs a client session that the log cannot give.
            Err(Reply::err("ERR SCRIPT DEBUG is not supported by raftcache"))
        }
        _ => Ok(Reply::Array(SCRIPT_HELP.iter().map(|l| Reply::status(l)).collect())),
    }
}

/// Commands a script runs that only touch its connection (Redis serves them
/// from the script's fake client).
fn connection_call(name: &str, argv: &[Bytes], db: &mut usize, now: i64) -> Reply {
    match name {
        "select" => match args::int32(&argv[1]) {
            Ok(n) if n < 0 || n as usize >= crate::state::DATABASES => Reply::err(errors::DB_INDEX),
            Ok(n) => {
                *db = n as usize;
                Reply::Ok
            }
            Err(e) => e,
        },
        "ping" => match argv.len() {
            1 => Reply::status("PONG"),
            2 => Reply::Bulk(argv[1].clone()),
            _ => arity_error("ping"),
        },
        "echo" => Reply::Bulk(argv[1].clone()),
        // The entry's time, not the wall clock: every replica answers alike.
        "time" => Reply::Array(vec![
            Reply::bulk_int(now.div_euclid(1000)),
            Reply::bulk_int(now.rem_euclid(1000) * 1000),
        ]),
        _ => Reply::err("ERR This Redis command is not allowed from script"),
    }
}

/// `redis.call` in a script that may write: the entry's databases.
struct WriteHost<'a, 'b> {
    x: &'a mut Exec<'b>,
    /// The script's database (SELECT inside a script changes only this).
    db: usize,
}

impl Host for WriteHost<'_, '_> {
    fn call(&mut self, argv: &[Bytes]) -> Reply {
        match command::lookup(&argv[0]) {
            Some(spec) => self.call_command(spec, argv),
            None => command::unknown_command_error(argv),
        }
    }

    fn call_command(&mut self, spec: &'static Spec, argv: &[Bytes]) -> Reply {
        match spec.kind {
            // Memory was over `maxmemory` when the script began and eviction
            // could not help: commands that may grow it fail (Redis's
            // `scriptVerifyOOM`).
            Kind::Write(_) if self.x.oom && crate::memory::denyoom(spec.name) => {
                Reply::err(crate::memory::OOM)
            }
            Kind::Write(f) => {
                let saved = self.x.db;
                self.x.db = self.db;
                let reply = f(self.x, argv).unwrap_or_else(|e| e);
                self.x.db = saved;
                reply
            }
            Kind::Read(f) => {
                let rng = Rng::new(self.x.rng.next_u64());
                let mut q = self.x.as_query();
                q.db = self.db;
                q.rng = rng;
                f(&mut q, argv).unwrap_or_else(|e| e)
            }
            Kind::Connection => connection_call(spec.name, argv, &mut self.db, self.x.now),
        }
    }
}

/// `redis.call` in a read-only script served as a read.
struct ReadHost<'a> {
    dbs: &'a [crate::db::Db],
    scripts: &'a Scripts,
    vm: &'a VmCell,
    locks: &'a crate::locks::Locks,
    blocked: &'a crate::blocked::Blocked,
    db: usize,
    now: i64,
    rng: Rng,
    memory: crate::memory::MemoryConfig,
}

impl Host for ReadHost<'_> {
    fn call(&mut self, argv: &[Bytes]) -> Reply {
        match command::lookup(&argv[0]) {
            Some(spec) => self.call_command(spec, argv),
            None => command::unknown_command_error(argv),
        }
    }

    fn call_command(&mut self, spec: &'static Spec, argv: &[Bytes]) -> Reply {
        match spec.kind {
            Kind::Read(f) => {
                let mut q = Query {
                    dbs: self.dbs,
                    scripts: self.scripts,
                    vm: self.vm,
                    locks: self.locks,
                    blocked: self.blocked,
                    db: self.db,
                    now: self.now,
                    rng: Rng::new(self.rng.next_u64()),
                    memory: self.memory,
                };
                f(&mut q, argv).unwrap_or_else(|e| e)
            }
            // The VM refuses writes in a read-only run before calling.
            Kind::Write(_) => {
                Reply::err("ERR Write commands are not allowed from read-only scripts.")
            }
            Kind::Connection => connection_call(spec.name, argv, &mut self.db, self.now),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::reply::Reply;
    use crate::state::{Op, Stamp, State};

    /// redis-py's `Lock.LUA_EXTEND_SCRIPT`, byte for byte.
    const LOCK_EXTEND: &str = "
        local token = redis.call('get', KEYS[1])
        if not token or token ~= ARGV[1] then
            return 0
        end
        local expiration = redis.call('pttl', KEYS[1])
        if not expiration then
            expiration = 0
        end
        if expiration < 0 then
            return 0
        end

        local newttl = ARGV[2]
        if ARGV[3] == \"0\" then
            newttl = ARGV[2] + expiration
        end
        redis.call('pexpire', KEYS[1], newttl)
        return 1
    ";

    fn command(parts: &[&str]) -> Op {
        Op::Command {
            db: 0,
            argv: parts.iter().map(|p| Bytes::copy_from_slice(p.as_bytes())).collect(),
        }
    }

    /// µs per `State::apply` of EVALSHA of redis-py's Lock.extend against INCR,
    /// in alternating rounds (median of each). A measurement, not a check: run
    /// `SCRIPT_BENCH_ITERS=1000000 cargo test --release -p raftcache-sm --lib
    /// evalsha_apply_overhead -- --nocapture` for real figures. Instructions
    /// per apply, deterministically: run the release test binary under
    /// `valgrind --tool=callgrind` with `SCRIPT_BENCH_OP=extend` (or `incr`)
    /// and two values of `SCRIPT_BENCH_ITERS` (say 5000 and 25000), and divide
    /// the difference of the two totals by the difference of the counts.
    #[test]
    fn evalsha_apply_overhead() {
        let iters: u64 =
            std::env::var("SCRIPT_BENCH_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
        let rounds = 5;
        let per_round = (iters / rounds).max(1);
        let mut state = State::new();
        let mut index = 0;
        let mut apply = |state: &mut State, op: &Op| {
            index += 1;
            state.apply(&Stamp { index, time_ms: 1_000_000, seed: index }, op)
        };
        let set = command(&["set", "lock:x", "token", "px", "100000"]);
        assert_eq!(apply(&mut state, &set), Reply::Ok);
        let Reply::Bulk(sha) = apply(&mut state, &command(&["script", "load", LOCK_EXTEND])) else {
            panic!("SCRIPT LOAD replies the sha");
        };
        let sha = std::str::from_utf8(&sha).unwrap().to_owned();
        let extend = command(&["evalsha", &sha, "1", "lock:x", "token", "1000", "0"]);
        let incr = command(&["incr", "counter"]);
        assert_eq!(apply(&mut state, &extend), Reply::Int(1));
        // SCRIPT_BENCH_OP=extend (or incr) runs only that one, for `perf stat`.
        let only = std::env::var("SCRIPT_BENCH_OP").ok();
        let (mut ext, mut inc) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            for (name, op, times) in [("extend", &extend, &mut ext), ("incr", &incr, &mut inc)] {
                if only.as_deref().is_some_and(|o| o != name) {
                    continue;
                }
                let start = std::time::Instant::now();
                for _ in 0..per_round {
                    let reply = apply(&mut state, op);
                    debug_assert!(matches!(reply, Reply::Int(n) if n > 0));
                }
                times.push(start.elapsed().as_secs_f64() * 1e6 / per_round as f64);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let (e, i) = (median(&mut ext), median(&mut inc));
        println!(
            "apply: EVALSHA Lock.extend {e:.2} us, INCR {i:.2} us, difference {:.2} us \
             (medians of {rounds} alternating rounds of {per_round})",
            e - i
        );
    }
}

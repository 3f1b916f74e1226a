//! Whole-database commands: DBSIZE FLUSHDB FLUSHALL SWAPDB, and MEMORY (from
//! the engine's accounting, see [`crate::memory`]).

use bytes::Bytes;

use crate::args::{self, is, Res};
use crate::command::Spec;
use crate::db::Db;
use crate::reply::{errors, Reply};
use crate::state::{Exec, Query};

pub const COMMANDS: &[Spec] = &[
    Spec::read("dbsize", 1, (0, 0, 0), dbsize),
    Spec::write("flushdb", -1, (0, 0, 0), flushdb),
    Spec::write("flushall", -1, (0, 0, 0), flushall),
    Spec::write("swapdb", 3, (0, 0, 0), swapdb),
    Spec::read("memory", -2, (0, 0, 0), memory),
];

const MEMORY_HELP: &[&str] = &[
    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
    "HELP",
    "    Print this help.",
];

/// MEMORY USAGE|STATS|DOCTOR|MALLOC-STATS|PURGE|HELP, answered from the
/// engine's accounting (the same on every replica; large collections are
/// estimated from a fixed sample whatever SAMPLES asks).
fn memory(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let sub = &argv[1];
    let key = |name: &str| Reply::Bulk(Bytes::copy_from_slice(name.as_bytes()));
    let arity = |n: usize, name: &str| {
        if argv.len() == n {
            Ok(())
        } else {
            Err(crate::command::arity_error(&format!("memory|{name}")))
        }
    };
    if is(sub, "usage") {
        if argv.len() < 3 {
            return Err(crate::command::arity_error("memory|usage"));
        }
        let mut rest = argv[3..].chunks(2);
        for pair in rest.by_ref() {
            match pair {
                [opt, n] if is(opt, "samples") => match args::parse_i64(n) {
                    Some(n) if n >= 0 => {}
                    Some(_) => return Err(Reply::err(errors::SYNTAX)),
                    None => return Err(Reply::err(errors::NOT_INTEGER)),
                },
                _ => return Err(Reply::err(errors::SYNTAX)),
            }
        }
        return Ok(q.db().object(&argv[2], q.now).map_or(Reply::Nil, |o| Reply::Int(o.mem as i64)));
    }
    if is(sub, "stats") {
        arity(2, "stats")?;
        let used: u64 = q.dbs.iter().map(Db::used).sum();
        let keys: u64 = q.dbs.iter().map(|d| d.visible_len(q.now) as u64).sum();
        let mut out = vec![
            (key("total.allocated"), Reply::Int(used as i64)),
            (key("dataset.bytes"), Reply::Int(used as i64)),
            (key("keys.count"), Reply::Int(keys as i64)),
            (key("keys.bytes-per-key"), Reply::Int(used.checked_div(keys).unwrap_or(0) as i64)),
        ];
        for (i, db) in q.dbs.iter().enumerate().filter(|(_, d)| !d.is_empty()) {
            out.push((
                key(&format!("db.{i}")),
                Reply::Map(vec![
                    (key("overhead.hashtable.main"), Reply::Int(0)),
                    (key("overhead.hashtable.expires"), Reply::Int(0)),
                    (key("dataset.bytes"), Reply::Int(db.used() as i64)),
                ]),
            ));
        }
        return Ok(Reply::Map(out));
    }
    if is(sub, "doctor") {
        arity(2, "doctor")?;
        let limit = q.memory.maxmemory;
        let used: u64 = q.dbs.iter().map(Db::used).sum();
        let text = if limit > 0 && used > limit {
            format!(
                "Sam, I detected a few issues in this Redis instance memory implants:\n\n \
                 * The data ({used} bytes) is over maxmemory ({limit} bytes) and the policy \
                 ({}) cannot evict enough: writes that may grow memory are refused.\n",
                q.memory.policy.name()
            )
        } else {
            "Hi Sam, I can't find any memory issue in your instance. I can only account for \
             what occurs on this base."
                .to_string()
        };
        return Ok(Reply::Verbatim(Bytes::from(text)));
    }
    if is(sub, "malloc-stats") {
        arity(2, "malloc-stats")?;
        return Ok(Reply::Verbatim(Bytes::from_static(
            b"Stats not supported for the current allocator",
        )));
    }
    if is(sub, "purge") {
        arity(2, "purge")?;
        return Ok(Reply::Ok);
    }
    if is(sub, "help") {
        arity(2, "help")?;
        return Ok(Reply::Array(MEMORY_HELP.iter().map(|l| Reply::status(l)).collect()));
    }
    Err(crate::command::unknown_subcommand_error("memory", sub))
}

/// DBSIZE: the keys visible now (expired keys not yet purged are not counted).
fn dbsize(q: &mut Query, _argv: &[Bytes]) -> Res<Reply> {
    Ok(q.db().visible_len(q.now).into())
}

/// FLUSHDB and FLUSHALL take an optional ASYNC or SYNC, which mean the same
/// here.
fn check_flush_args(argv: &[Bytes]) -> Res<()> {
    match argv.len() {
        1 => Ok(()),
        2 if is(&argv[1], "async") || is(&argv[1], "sync") => Ok(()),
        _ => Err(Reply::err(errors::SYNTAX)),
    }
}

/// FLUSHDB [ASYNC | SYNC]
fn flushdb(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    check_flush_args(argv)?;
    let index = x.index;
    x.db().flush(index);
    let db = x.db;
    x.flushed(Some(db));
    Ok(Reply::Ok)
}

/// FLUSHALL [ASYNC | SYNC]
fn flushall(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    check_flush_args(argv)?;
    let index = x.index;
    x.dbs.iter_mut().for_each(|db| db.flush(index));
    x.flushed(None);
    Ok(Reply::Ok)
}

/// SWAPDB index1 index2
fn swapdb(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let parse = |arg: &[u8], msg: &'static str| match args::parse_i64(arg) {
        Some(n) if (i32::MIN as i64..=i32::MAX as i64).contains(&n) => Ok(n),
        _ => Err(Reply::err(msg)),
    };
    let a = parse(&argv[1], "ERR invalid first DB index")?;
    let b = parse(&argv[2], "ERR invalid second DB index")?;
    let n = x.dbs.len() as i64;
    if !(0..n).contains(&a) || !(0..n).contains(&b) {
        return Err(Reply::err(errors::DB_INDEX));
    }
    let (a, b) = (a as usize, b as usize);
    if a != b {
        let (low, high) = x.dbs.split_at_mut(a.max(b));
        Db::swap_keyspaces(&mut low[a.min(b)], &mut high[0], x.index);
        // Clients blocked on a key that the other database has are served.
        let now = x.now;
        x.dbs[a].all_awaited_ready(now);
        x.dbs[b].all_awaited_ready(now);
    }
    Ok(Reply::Ok)
}

//! Whole-database commands: DBSIZE FLUSHDB FLUSHALL SWAPDB.

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
];

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

//! List commands: pushes and pops, ranges, LSET LREM LTRIM LINSERT LPOS, and
//! LMOVE / RPOPLPUSH.
//!
//! A list is a `VecDeque<Bytes>` (Redis 7.0 always reports "quicklist"). A write
//! that empties a list deletes the key, as Redis does.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::args::{self, is, Res};
use crate::cmd::keys::{adds_key, notify_if_gone, notify_new};
use crate::command::{arity_error, Spec};
use crate::event::Class;
use crate::reply::{errors, Reply};
use crate::state::{Exec, Query};

pub const COMMANDS: &[Spec] = &[
    Spec::write("lpush", -3, (1, 1, 1), lpush),
    Spec::write("rpush", -3, (1, 1, 1), rpush),
    Spec::write("lpushx", -3, (1, 1, 1), lpushx),
    Spec::write("rpushx", -3, (1, 1, 1), rpushx),
    Spec::write("lpop", -2, (1, 1, 1), lpop),
    Spec::write("rpop", -2, (1, 1, 1), rpop),
    Spec::read("lrange", 4, (1, 1, 1), lrange),
    Spec::read("llen", 2, (1, 1, 1), llen),
    Spec::read("lindex", 3, (1, 1, 1), lindex),
    Spec::write("lset", 4, (1, 1, 1), lset),
    Spec::write("lrem", 4, (1, 1, 1), lrem),
    Spec::write("ltrim", 4, (1, 1, 1), ltrim),
    Spec::write("linsert", 5, (1, 1, 1), linsert),
    Spec::read("lpos", -3, (1, 1, 1), lpos),
    Spec::write("lmove", 5, (1, 2, 1), lmove),
    Spec::write("rpoplpush", 3, (1, 2, 1), rpoplpush),
];

type List = VecDeque<Bytes>;

fn own(b: &[u8]) -> Bytes {
    Bytes::copy_from_slice(b)
}

pub(crate) fn push(list: &mut List, value: Bytes, left: bool) {
    if left {
        list.push_front(value);
    } else {
        list.push_back(value);
    }
}

pub(crate) fn pop(list: &mut List, left: bool) -> Option<Bytes> {
    if left {
        list.pop_front()
    } else {
        list.pop_back()
    }
}

/// A non-negative integer argument; anything else (not a number included)
/// replies `msg`, like Redis's `getPositiveLongFromObjectOrReply` with a message.
fn non_negative_or(arg: &[u8], msg: &'static str) -> Res<i64> {
    match args::parse_i64(arg) {
        Some(n) if n >= 0 => Ok(n),
        _ => Err(Reply::err(msg)),
    }
}

/// Resolves a possibly negative index against `len`; None if out of range.
fn index(len: usize, i: i64) -> Option<usize> {
    let len = len as i64;
    let i = if i < 0 { len + i } else { i };
    (0..len).contains(&i).then_some(i as usize)
}

/// Redis's range normalization (LRANGE, LTRIM): the inclusive range
/// `start..=end` clamped to the list, or None if it is empty.
fn range(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut start = if start < 0 { len + start } else { start };
    let mut end = if end < 0 { len + end } else { end };
    start = start.max(0);
    if start > end || start >= len {
        return None;
    }
    end = end.min(len - 1);
    Some((start as usize, end as usize))
}

fn push_generic(x: &mut Exec, argv: &[Bytes], left: bool, only_existing: bool) -> Res<Reply> {
    let now = x.now;
    let adds = adds_key(x, x.db, &argv[1]);
    let db = x.db();
    let list = if only_existing {
        match db.list_mut(&argv[1], now)? {
            Some(list) => list,
            None => return Ok(Reply::Int(0)),
        }
    } else {
        db.list_or_create(&argv[1], now, VecDeque::new)?
    };
    for value in &argv[2..] {
        push(list, own(value), left);
    }
    let len = list.len();
    let db = x.db;
    notify_new(x, db, &argv[1], adds);
    x.modified(&argv[1]);
    x.notify(Class::List, if left { "lpush" } else { "rpush" }, &argv[1]);
    Ok(len.into())
}

/// LPUSH key element [element ...]
fn lpush(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    push_generic(x, argv, true, false)
}

/// RPUSH key element [element ...]
fn rpush(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    push_generic(x, argv, false, false)
}

/// LPUSHX key element [element ...]
fn lpushx(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    push_generic(x, argv, true, true)
}

/// RPUSHX key element [element ...]
fn rpushx(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    push_generic(x, argv, false, true)
}

fn pop_generic(x: &mut Exec, argv: &[Bytes], left: bool, name: &str) -> Res<Reply> {
    if argv.len() > 3 {
        return Err(arity_error(name));
    }
    let count = match argv.get(2) {
        Some(arg) => Some(non_negative_or(arg, errors::OUT_OF_RANGE_POSITIVE)?),
        None => None,
    };
    let now = x.now;
    let db = x.db();
    let Some(list) = db.list_mut(&argv[1], now)? else {
        return Ok(if count.is_some() { Reply::NilArray } else { Reply::Nil });
    };
    let reply = match count {
        Some(0) => return Ok(Reply::Array(Vec::new())),
        None => Reply::Bulk(pop(list, left).expect("lists are never empty")),
        Some(n) => {
            let n = (n as u64).min(list.len() as u64) as usize;
            Reply::bulks((0..n).filter_map(|_| pop(list, left)))
        }
    };
    db.remove_if_empty(&argv[1]);
    popped(x, &argv[1], left);
    Ok(reply)
}

/// Redis's `listElementsRemoved`: the pop event, "del" if the list is now
/// gone, and the signal.
pub(crate) fn popped(x: &mut Exec, key: &[u8], left: bool) {
    x.notify(Class::List, if left { "lpop" } else { "rpop" }, key);
    notify_if_gone(x, key);
    x.modified(key);
}

/// LPOP key [count]
fn lpop(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    pop_generic(x, argv, true, "lpop")
}

/// RPOP key [count]
fn rpop(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    pop_generic(x, argv, false, "rpop")
}

/// LRANGE key start stop
fn lrange(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let start = args::int(&argv[2])?;
    let end = args::int(&argv[3])?;
    let Some(list) = q.db().get_list(&argv[1], q.now)? else { return Ok(Reply::Array(Vec::new())) };
    Ok(match range(list.len(), start, end) {
        Some((start, end)) => Reply::bulks(list.range(start..=end).cloned()),
        None => Reply::Array(Vec::new()),
    })
}

/// LLEN key
fn llen(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    Ok(q.db().get_list(&argv[1], q.now)?.map_or(0, VecDeque::len).into())
}

/// LINDEX key index (the key is looked up before the index is parsed)
fn lindex(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let Some(list) = q.db().get_list(&argv[1], q.now)? else { return Ok(Reply::Nil) };
    let i = args::int(&argv[2])?;
    Ok(index(list.len(), i).map(|i| list[i].clone()).into())
}

/// LSET key index element (the key is looked up before the index is parsed)
fn lset(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let now = x.now;
    let Some(list) = x.db().list_mut(&argv[1], now)? else {
        return Err(Reply::err(errors::NO_SUCH_KEY));
    };
    let i = args::int(&argv[2])?;
    let i = index(list.len(), i).ok_or(Reply::err(errors::INDEX_OUT_OF_RANGE))?;
    list[i] = own(&argv[3]);
    x.modified(&argv[1]);
    x.notify(Class::List, "lset", &argv[1]);
    Ok(Reply::Ok)
}

/// LREM key count element
fn lrem(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let count = args::int(&argv[2])?;
    let now = x.now;
    let db = x.db();
    let Some(list) = db.list_mut(&argv[1], now)? else { return Ok(Reply::Int(0)) };
    let element = argv[3].as_ref();
    // 0 removes every match; i64::MIN is "all" too (Redis negates it to
    // itself and never reaches it).
    let limit = if count == 0 { u64::MAX } else { count.unsigned_abs() };
    let len = list.len();
    let mut keep = vec![true; len];
    let mut removed = 0u64;
    let positions: Box<dyn Iterator<Item = usize>> =
        if count < 0 { Box::new((0..len).rev()) } else { Box::new(0..len) };
    for i in positions {
        if removed == limit {
            break;
        }
        if list[i] == element {
            keep[i] = false;
            removed += 1;
        }
    }
    if removed > 0 {
        let mut i = 0;
        list.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        db.remove_if_empty(&argv[1]);
        x.modified(&argv[1]);
        x.notify(Class::List, "lrem", &argv[1]);
        notify_if_gone(x, &argv[1]);
    }
    Ok(Reply::Int(removed as i64))
}

/// LTRIM key start stop
fn ltrim(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let start = args::int(&argv[2])?;
    let end = args::int(&argv[3])?;
    let now = x.now;
    let db = x.db();
    let Some(list) = db.list_mut(&argv[1], now)? else { return Ok(Reply::Ok) };
    match range(list.len(), start, end) {
        Some((start, end)) => {
            list.truncate(end + 1);
            list.drain(..start);
        }
        None => list.clear(),
    }
    db.remove_if_empty(&argv[1]);
    // Signalled whenever the list exists, even if nothing was trimmed.
    x.notify(Class::List, "ltrim", &argv[1]);
    notify_if_gone(x, &argv[1]);
    x.modified(&argv[1]);
    Ok(Reply::Ok)
}

/// LINSERT key BEFORE|AFTER pivot element
fn linsert(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let after = if is(&argv[2], "after") {
        true
    } else if is(&argv[2], "before") {
        false
    } else {
        return Err(Reply::err(errors::SYNTAX));
    };
    let now = x.now;
    let Some(list) = x.db().list_mut(&argv[1], now)? else { return Ok(Reply::Int(0)) };
    let Some(pos) = list.iter().position(|e| *e == argv[3]) else { return Ok(Reply::Int(-1)) };
    list.insert(pos + usize::from(after), own(&argv[4]));
    let len = list.len();
    x.modified(&argv[1]);
    x.notify(Class::List, "linsert", &argv[1]);
    Ok(len.into())
}

/// LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]
fn lpos(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let element = argv[2].as_ref();
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0i64);
    let mut j = 3;
    while j < argv.len() {
        let opt = &argv[j];
        let more = j + 1 < argv.len();
        if is(opt, "rank") && more {
            j += 1;
            rank = args::int(&argv[j])?;
            if rank == 0 {
                return Err(Reply::err(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the \
                     second ... or use negative to start from the end of the list",
                ));
            }
        } else if is(opt, "count") && more {
            j += 1;
            count = Some(non_negative_or(&argv[j], "ERR COUNT can't be negative")?);
        } else if is(opt, "maxlen") && more {
            j += 1;
            maxlen = non_negative_or(&argv[j], "ERR MAXLEN can't be negative")?;
        } else {
            return Err(Reply::err(errors::SYNTAX));
        }
        j += 1;
    }
    // A negative rank searches from the tail. Redis negates i64::MIN to itself,
    // which then matches from the first hit; wrapping arithmetic keeps that.
    let from_tail = rank < 0;
    if from_tail {
        rank = rank.wrapping_neg();
    }
    let Some(list) = q.db().get_list(&argv[1], q.now)? else {
        return Ok(if count.is_some() { Reply::Array(Vec::new()) } else { Reply::Nil });
    };
    let len = list.len();
    let elements: Box<dyn Iterator<Item = &Bytes>> =
        if from_tail { Box::new(list.iter().rev()) } else { Box::new(list.iter()) };
    let mut matches = 0i64;
    let mut found = Vec::new();
    for (i, e) in elements.enumerate() {
        if maxlen != 0 && i as i64 >= maxlen {
            break;
        }
        if e != element {
            continue;
        }
        matches += 1;
        if matches < rank {
            continue;
        }
        found.push(Reply::Int(if from_tail { len - i - 1 } else { i } as i64));
        match count {
            None => break,
            Some(c) if c != 0 && matches.wrapping_sub(rank).wrapping_add(1) >= c => break,
            Some(_) => {}
        }
    }
    Ok(match count {
        Some(_) => Reply::Array(found),
        None => found.pop().unwrap_or(Reply::Nil),
    })
}

/// Parses LEFT / RIGHT; true for LEFT.
pub(crate) fn side(arg: &[u8]) -> Res<bool> {
    if is(arg, "left") {
        Ok(true)
    } else if is(arg, "right") {
        Ok(false)
    } else {
        Err(Reply::err(errors::SYNTAX))
    }
}

/// Pops from `src` and pushes onto `dst`, checking the destination's type
/// before popping. `src == dst` rotates the list.
pub(crate) fn lmove_generic(
    x: &mut Exec,
    src: &[u8],
    dst: &[u8],
    from_left: bool,
    to_left: bool,
) -> Res<Reply> {
    let now = x.now;
    let db = x.db();
    if db.list_mut(src, now)?.is_none() {
        return Ok(Reply::Nil);
    }
    db.list_mut(dst, now)?;
    let adds = adds_key(x, x.db, dst);
    let db = x.db();
    let list = db.list_mut(src, now)?.expect("checked above");
    let value = pop(list, from_left).expect("lists are never empty");
    if src == dst {
        push(list, value.clone(), to_left);
    } else {
        db.remove_if_empty(src);
        push(db.list_or_create(dst, now, VecDeque::new)?, value.clone(), to_left);
    }
    // Redis pushes first (creating the destination), then reports the pop.
    let db = x.db;
    notify_new(x, db, dst, adds);
    x.modified(dst);
    x.notify(Class::List, if to_left { "lpush" } else { "rpush" }, dst);
    popped(x, src, from_left);
    Ok(Reply::Bulk(value))
}

/// LMOVE source destination LEFT|RIGHT LEFT|RIGHT
fn lmove(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let from_left = side(&argv[3])?;
    let to_left = side(&argv[4])?;
    lmove_generic(x, &argv[1], &argv[2], from_left, to_left)
}

/// RPOPLPUSH source destination
fn rpoplpush(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    lmove_generic(x, &argv[1], &argv[2], false, true)
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    use crate::Reply;

    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    const NOT_INT: &str = "ERR value is not an integer or out of range";
    const RANK_ZERO: &str = "ERR RANK can't be zero: use 1 to start from the first match, 2 from \
                             the second ... or use negative to start from the end of the list";

    fn ints(items: &[i64]) -> Reply {
        Reply::Array(items.iter().map(|&n| int(n)).collect())
    }

    #[test]
    fn pushes() {
        let mut h = Harness::new();
        assert_eq!(h.run("LPUSH l a b c"), int(3));
        assert_eq!(h.run("RPUSH l x y"), int(5));
        assert_eq!(h.run("LRANGE l 0 -1"), array(&["c", "b", "a", "x", "y"]));
        assert_eq!(h.run("LPUSHX nokey a"), int(0));
        assert_eq!(h.run("EXISTS nokey"), int(0));
        assert_eq!(h.run("RPUSHX l z"), int(6));
        assert_eq!(h.run("LPUSHX l 1 2"), int(8));
        assert_eq!(h.run("LRANGE l 0 -1"), array(&["2", "1", "c", "b", "a", "x", "y", "z"]));
        assert_eq!(h.run("OBJECT ENCODING l"), bulk("quicklist"));
        h.run("SET s x");
        for cmd in ["LPUSH s a", "RPUSH s a", "LPUSHX s a", "RPUSHX s a"] {
            assert_eq!(h.run(cmd), err(WRONGTYPE), "{cmd}");
        }
    }

    #[test]
    fn pops_with_and_without_count() {
        let mut h = Harness::new();
        h.run("SET s x");
        assert_eq!(h.run("LPOP nokey"), Reply::Nil);
        assert_eq!(h.run("LPOP nokey 0"), Reply::NilArray);
        assert_eq!(h.run("RPOP nokey 2"), Reply::NilArray);
        assert_eq!(h.run("LPOP s"), err(WRONGTYPE));
        assert_eq!(h.run("LPOP s 0"), err(WRONGTYPE));
        let positive = "ERR value is out of range, must be positive";
        assert_eq!(h.run("LPOP nokey -1"), err(positive));
        assert_eq!(h.run("LPOP s -1"), err(positive));
        assert_eq!(h.run("RPOP s abc"), err(positive));
        assert_eq!(
            h.run("LPOP nokey 1 2"),
            err("ERR wrong number of arguments for 'lpop' command")
        );
        assert_eq!(
            h.run("RPOP nokey 1 2"),
            err("ERR wrong number of arguments for 'rpop' command")
        );
        h.run("RPUSH l a b c d e");
        assert_eq!(h.run("LPOP l 0"), array(&[]));
        assert_eq!(h.run("RPOP l 2"), array(&["e", "d"]));
        assert_eq!(h.run("LPOP l"), bulk("a"));
        assert_eq!(h.run("LPOP l 10"), array(&["b", "c"]));
        assert_eq!(h.run("EXISTS l"), int(0));
        h.run("RPUSH l a");
        assert_eq!(h.run("RPOP l"), bulk("a"));
        assert_eq!(h.run("EXISTS l"), int(0));
        h.run("RPUSH l a b");
        assert_eq!(h.run("RPOP l 9223372036854775807"), array(&["b", "a"]));
        assert_eq!(h.run("EXISTS l"), int(0));
    }

    #[test]
    fn lrange_llen_lindex() {
        let mut h = Harness::new();
        h.run("RPUSH l a b c d");
        assert_eq!(h.run("LRANGE l 1 2"), array(&["b", "c"]));
        assert_eq!(h.run("LRANGE l -2 -1"), array(&["c", "d"]));
        assert_eq!(h.run("LRANGE l -100 100"), array(&["a", "b", "c", "d"]));
        assert_eq!(h.run("LRANGE l 2 1"), array(&[]));
        assert_eq!(h.run("LRANGE l 4 10"), array(&[]));
        assert_eq!(h.run("LRANGE l 0 -5"), array(&[]));
        assert_eq!(
            h.run("LRANGE l -9223372036854775808 9223372036854775807"),
            array(&["a", "b", "c", "d"])
        );
        assert_eq!(h.run("LRANGE nokey 0 -1"), array(&[]));
        assert_eq!(h.run("LRANGE nokey abc 1"), err(NOT_INT));
        h.run("SET s x");
        assert_eq!(h.run("LRANGE s 0 abc"), err(NOT_INT));
        assert_eq!(h.run("LRANGE s 0 1"), err(WRONGTYPE));
        assert_eq!(h.run("LLEN l"), int(4));
        assert_eq!(h.run("LLEN nokey"), int(0));
        assert_eq!(h.run("LLEN s"), err(WRONGTYPE));
        assert_eq!(h.run("LINDEX l 0"), bulk("a"));
        assert_eq!(h.run("LINDEX l -1"), bulk("d"));
        assert_eq!(h.run("LINDEX l -4"), bulk("a"));
        assert_eq!(h.run("LINDEX l -5"), Reply::Nil);
        assert_eq!(h.run("LINDEX l 4"), Reply::Nil);
        assert_eq!(h.run("LINDEX l -9223372036854775808"), Reply::Nil);
        // The key is looked up before the index is parsed.
        assert_eq!(h.run("LINDEX nokey abc"), Reply::Nil);
        assert_eq!(h.run("LINDEX s abc"), err(WRONGTYPE));
        assert_eq!(h.run("LINDEX l abc"), err(NOT_INT));
    }

    #[test]
    fn lset() {
        let mut h = Harness::new();
        h.run("SET s x");
        assert_eq!(h.run("LSET nokey abc x"), err("ERR no such key"));
        assert_eq!(h.run("LSET s abc x"), err(WRONGTYPE));
        h.run("RPUSH l a b");
        assert_eq!(h.run("LSET l abc x"), err(NOT_INT));
        assert_eq!(h.run("LSET l 2 x"), err("ERR index out of range"));
        assert_eq!(h.run("LSET l -3 x"), err("ERR index out of range"));
        assert_eq!(h.run("LSET l -1 y"), Reply::Ok);
        assert_eq!(h.run("LSET l 0 z"), Reply::Ok);
        assert_eq!(h.run("LRANGE l 0 -1"), array(&["z", "y"]));
    }

    #[test]
    fn lrem() {
        let mut h = Harness::new();
        h.run("SET s x");
        assert_eq!(h.run("LREM s abc x"), err(NOT_INT));
        assert_eq!(h.run("LREM nokey abc x"), err(NOT_INT));
        assert_eq!(h.run("LREM s 0 x"), err(WRONGTYPE));
        assert_eq!(h.run("LREM nokey 0 x"), int(0));
        h.run("RPUSH l a b a c a b a");
        assert_eq!(h.run("LREM l 2 a"), int(2));
        assert_eq!(h.run("LRANGE l 0 -1"), array(&["b", "c", "a", "b", "a"]));
        assert_eq!(h.run("LREM l -1 b"), int(1));
        assert_eq!(h.run("LRANGE l 0 -1"), array(&["b", "c", "a", "a"]));
        assert_eq!(h.run("LREM l 0 a"), int(2));
        assert_eq!(h.run("LREM l 0 zz"), int(0));
        assert_eq!(h.run("LRANGE l 0 -1"), array(&["b", "c"]));
        h.run("RPUSH l b");
        assert_eq!(h.run("LREM l -9223372036854775808 b"), int(2));
        assert_eq!(h.run("LREM l 5 c"), int(1));
        assert_eq!(h.run("EXISTS l"), int(0));
    }

    #[test]
    fn ltrim() {
        let mut h = Harness::new();
        h.run("SET s x");
        assert_eq!(h.run("LTRIM s abc 1"), err(NOT_INT));
        assert_eq!(h.run("LTRIM nokey 0 1"), Reply::Ok);
        assert_eq!(h.run("LTRIM s 0 1"), err(WRONGTYPE));
        h.run("RPUSH l a b c d e");
        assert_eq!(h.run("LTRIM l 1 -2"), Reply::Ok);
        assert_eq!(h.run("LRANGE l 0 -1"), array(&["b", "c", "d"]));
        assert_eq!(h.run("LTRIM l -100 100"), Reply::Ok);
        assert_eq!(h.run("LRANGE l 0 -1"), array(&["b", "c", "d"]));
        assert_eq!(h.run("LTRIM l 1 1"), Reply::Ok);
        assert_eq!(h.run("LRANGE l 0 -1"), array(&["c"]));
        assert_eq!(h.run("LTRIM l 2 1"), Reply::Ok);
        assert_eq!(h.run("EXISTS l"), int(0));
        h.run("RPUSH l a b");
        assert_eq!(h.run("LTRIM l 5 10"), Reply::Ok);
        assert_eq!(h.run("EXISTS l"), int(0));
    }

    #[test]
    fn linsert() {
        let mut h = Harness::new();
        h.run("SET s x");
        assert_eq!(h.run("LINSERT s middle a b"), err("ERR syntax error"));
        assert_eq!(h.run("LINSERT nokey before a b"), int(0));
        assert_eq!(h.run("EXISTS nokey"), int(0));
        assert_eq!(h.run("LINSERT s before a b"), err(WRONGTYPE));
        h.run("RPUSH l a b a");
        assert_eq!(h.run("LINSERT l before zz b"), int(-1));
        assert_eq!(h.run("LINSERT l BEFORE a x"), int(4));
        assert_eq!(h.run("LINSERT l after a y"), int(5));
        assert_eq!(h.run("LINSERT l After b z"), int(6));
        assert_eq!(h.run("LRANGE l 0 -1"), array(&["x", "a", "y", "b", "z", "a"]));
        // Elements compare as bytes: "01" is not "1".
        h.run("RPUSH n 1");
        assert_eq!(h.run("LINSERT n before 01 x"), int(-1));
    }

    #[test]
    fn lpos() {
        let mut h = Harness::new();
        h.run("SET s x");
        h.run("RPUSH l a b c a b c a");
        assert_eq!(h.run("LPOS l a"), int(0));
        assert_eq!(h.run("LPOS l a RANK 2"), int(3));
        assert_eq!(h.run("LPOS l a RANK -1"), int(6));
        assert_eq!(h.run("LPOS l a RANK 5"), Reply::Nil);
        assert_eq!(h.run("LPOS l a RANK 1 RANK 2"), int(3));
        assert_eq!(h.run("LPOS l a RANK -2 COUNT 0"), ints(&[3, 0]));
        assert_eq!(h.run("LPOS l a COUNT 0"), ints(&[0, 3, 6]));
        assert_eq!(h.run("LPOS l a COUNT 2"), ints(&[0, 3]));
        assert_eq!(h.run("LPOS l a RANK 3 COUNT 5"), ints(&[6]));
        assert_eq!(h.run("LPOS l a MAXLEN 1 COUNT 0"), ints(&[0]));
        assert_eq!(h.run("LPOS l a MAXLEN 4 COUNT 0"), ints(&[0, 3]));
        assert_eq!(h.run("LPOS l a COUNT 0 MAXLEN 0"), ints(&[0, 3, 6]));
        assert_eq!(h.run("LPOS l a RANK -1 MAXLEN 2 COUNT 0"), ints(&[6]));
        assert_eq!(h.run("LPOS l z"), Reply::Nil);
        assert_eq!(h.run("LPOS l z COUNT 1"), ints(&[]));
        assert_eq!(h.run("LPOS nokey a"), Reply::Nil);
        assert_eq!(h.run("LPOS nokey a COUNT 1"), ints(&[]));
        assert_eq!(h.run("LPOS s a"), err(WRONGTYPE));
        assert_eq!(h.run("LPOS s a COUNT 1"), err(WRONGTYPE));
        // Options are checked before the key.
        assert_eq!(h.run("LPOS s a RANK 0"), err(RANK_ZERO));
        assert_eq!(h.run("LPOS nokey a RANK 0"), err(RANK_ZERO));
        assert_eq!(h.run("LPOS s a foo"), err("ERR syntax error"));
        assert_eq!(h.run("LPOS l a RANK"), err("ERR syntax error"));
        assert_eq!(h.run("LPOS l a RANK abc"), err(NOT_INT));
        assert_eq!(h.run("LPOS l a COUNT -1"), err("ERR COUNT can't be negative"));
        assert_eq!(h.run("LPOS l a COUNT abc"), err("ERR COUNT can't be negative"));
        assert_eq!(h.run("LPOS l a MAXLEN -1"), err("ERR MAXLEN can't be negative"));
        assert_eq!(h.run("LPOS l a MAXLEN abc"), err("ERR MAXLEN can't be negative"));
        assert_eq!(h.run("LPOS l a RANK 0 COUNT -1"), err(RANK_ZERO));
        assert_eq!(h.run("LPOS l a COUNT -1 RANK 0"), err("ERR COUNT can't be negative"));
        // RANK i64::MIN: Redis's negation wraps, so every match counts.
        assert_eq!(h.run("LPOS l a RANK -9223372036854775808"), int(6));
        assert_eq!(h.run("LPOS l a RANK -9223372036854775808 COUNT 2"), ints(&[6, 3, 0]));
        h.run("RPUSH n 1 0 -1");
        assert_eq!(h.run("LPOS n 1"), int(0));
        assert_eq!(h.run("LPOS n 01"), Reply::Nil);
        assert_eq!(h.run("LPOS n +1"), Reply::Nil);
    }

    #[test]
    fn lmove_and_rpoplpush() {
        let mut h = Harness::new();
        h.run("SET s x");
        assert_eq!(h.run("LMOVE nokey d left foo"), err("ERR syntax error"));
        assert_eq!(h.run("LMOVE nokey d foo left"), err("ERR syntax error"));
        assert_eq!(h.run("LMOVE s d left right"), err(WRONGTYPE));
        assert_eq!(h.run("LMOVE nokey s left right"), Reply::Nil);
        h.run("RPUSH l a b c");
        // The destination's type is checked before anything is popped.
        assert_eq!(h.run("LMOVE l s left right"), err(WRONGTYPE));
        assert_eq!(h.run("RPOPLPUSH l s"), err(WRONGTYPE));
        assert_eq!(h.run("LRANGE l 0 -1"), array(&["a", "b", "c"]));
        // Same key: rotation.
        assert_eq!(h.run("LMOVE l l LEFT RIGHT"), bulk("a"));
        assert_eq!(h.run("LRANGE l 0 -1"), array(&["b", "c", "a"]));
        assert_eq!(h.run("LMOVE l l right left"), bulk("a"));
        assert_eq!(h.run("LRANGE l 0 -1"), array(&["a", "b", "c"]));
        assert_eq!(h.run("RPOPLPUSH l l"), bulk("c"));
        assert_eq!(h.run("LRANGE l 0 -1"), array(&["c", "a", "b"]));
        assert_eq!(h.run("RPOPLPUSH l d"), bulk("b"));
        assert_eq!(h.run("LMOVE l d left left"), bulk("c"));
        assert_eq!(h.run("LRANGE d 0 -1"), array(&["c", "b"]));
        assert_eq!(h.run("LMOVE l d right right"), bulk("a"));
        assert_eq!(h.run("EXISTS l"), int(0));
        assert_eq!(h.run("LRANGE d 0 -1"), array(&["c", "b", "a"]));
        assert_eq!(h.run("RPOPLPUSH nokey d"), Reply::Nil);
        assert_eq!(h.run("RPOPLPUSH s d"), err(WRONGTYPE));
        // A single-element list rotated onto itself survives.
        h.run("RPUSH one a");
        assert_eq!(h.run("LMOVE one one left left"), bulk("a"));
        assert_eq!(h.run("LRANGE one 0 -1"), array(&["a"]));
    }

    #[test]
    fn expired_list_is_invisible_and_recreated_fresh() {
        let mut h = Harness::new();
        h.run("RPUSH l a b c");
        h.run("PEXPIRE l 100");
        h.advance(99);
        assert_eq!(h.run("LLEN l"), int(3));
        h.advance(1);
        assert_eq!(h.run("LLEN l"), int(0));
        assert_eq!(h.run("LRANGE l 0 -1"), array(&[]));
        assert_eq!(h.run("LINDEX l 0"), Reply::Nil);
        assert_eq!(h.run("LPOS l a"), Reply::Nil);
        assert_eq!(h.run("LPUSHX l x"), int(0));
        assert_eq!(h.run("LPOP l"), Reply::Nil);
        assert_eq!(h.run("LSET l 0 x"), err("ERR no such key"));
        assert_eq!(h.run("RPOPLPUSH l d"), Reply::Nil);
        assert_eq!(h.run("RPUSH l z"), int(1));
        assert_eq!(h.run("LRANGE l 0 -1"), array(&["z"]));
        assert_eq!(h.run("TTL l"), int(-1));
        // An expired destination is replaced, not appended to.
        h.run("RPUSH d old");
        h.run("PEXPIRE d 10");
        h.advance(10);
        assert_eq!(h.run("LMOVE l d left left"), bulk("z"));
        assert_eq!(h.run("LRANGE d 0 -1"), array(&["z"]));
        assert_eq!(h.run("EXISTS l"), int(0));
        // An expired string destination is no longer a WRONGTYPE.
        h.run("RPUSH src a");
        h.run("SET dst x PX 10");
        assert_eq!(h.run("LMOVE src dst left left"), err(WRONGTYPE));
        h.advance(10);
        assert_eq!(h.run("LMOVE src dst left left"), bulk("a"));
        assert_eq!(h.run("TYPE dst"), Reply::status("list"));
    }
}

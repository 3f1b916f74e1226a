//! Blocking pops and their non-blocking forms: BLPOP BRPOP BLMOVE
//! BRPOPLPUSH BLMPOP LMPOP BZPOPMIN BZPOPMAX BZMPOP ZMPOP.
//!
//! As plain commands (in a transaction, or sent by the node when data is
//! there) they never block: a blocking command on empty keys answers as if it
//! had timed out, as Redis does for a client that may not block. Blocking
//! itself is `Op::Block` (see [`crate::blocked`]): the same parse and the
//! same "try now" ([`try_now`]), and when every key is empty the client is
//! queued; a key created later serves it through [`serve_key`].

use std::collections::VecDeque;

use bytes::Bytes;

use crate::args::{self, is, Res};
use crate::blocked::GiveBack;
use crate::cmd::keys::notify_if_gone;
use crate::cmd::lists::{lmove_generic, pop, popped, side};
use crate::cmd::locks;
use crate::command::Spec;
use crate::event::Class;
use crate::float::{self, LongDouble};
use crate::reply::{errors, Reply};
use crate::state::Exec;

pub const COMMANDS: &[Spec] = &[
    Spec::write("blpop", -3, (1, -2, 1), plain),
    Spec::write("brpop", -3, (1, -2, 1), plain),
    Spec::write("brpoplpush", 4, (1, 2, 1), plain),
    Spec::write("blmove", 6, (1, 2, 1), plain),
    Spec::write("lmpop", -4, (0, 0, 0), plain),
    Spec::write("blmpop", -5, (0, 0, 0), plain),
    Spec::write("bzpopmin", -3, (1, -2, 1), plain),
    Spec::write("bzpopmax", -3, (1, -2, 1), plain),
    Spec::write("zmpop", -4, (0, 0, 0), plain),
    Spec::write("bzmpop", -5, (0, 0, 0), plain),
];

/// True for the commands that may block a client (LOCK.ACQUIRE only with
/// WAIT, which its parse tells).
pub fn blocks(name: &str) -> bool {
    matches!(
        name,
        "blpop"
            | "brpop"
            | "brpoplpush"
            | "blmove"
            | "blmpop"
            | "bzpopmin"
            | "bzpopmax"
            | "bzmpop"
            | "lock.acquire"
    )
}

/// What a blocking command does with the first key that has data.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// BLPOP/BRPOP (`count` None: one element, `[key, value]`) or
    /// (B)LMPOP (`[key, [values]]`).
    Pop { left: bool, count: Option<u64> },
    /// BLMOVE / BRPOPLPUSH: the element.
    Move { dst: Bytes, from_left: bool, to_left: bool },
    /// BZPOPMIN/MAX (`count` None: `[key, member, score]`) or (B)ZMPOP
    /// (`[key, [[member, score] …]]`).
    ZPop { max: bool, count: Option<u64> },
    /// LOCK.ACQUIRE … WAIT: the fencing token.
    Lock { owner: Bytes, ttl_ms: i64 },
}

/// A parsed (possibly) blocking command.
#[derive(Clone, Debug, PartialEq)]
pub struct Blocking {
    pub keys: Vec<Bytes>,
    /// Relative timeout in ms; 0 waits forever. None for LMPOP/ZMPOP.
    pub timeout_ms: Option<i64>,
    pub action: Action,
}

impl Blocking {
    /// The reply of a blocked client whose timeout passed: Redis's null
    /// array for every blocking command (BLMOVE too), nil for LOCK.ACQUIRE.
    pub fn timed_out(&self) -> Reply {
        match self.action {
            Action::Lock { .. } => Reply::Nil,
            _ => Reply::NilArray,
        }
    }

    /// The reply when nothing can be served and the client may not block
    /// (inside MULTI): BLMOVE answers like LMOVE on an empty list.
    pub fn would_block(&self) -> Reply {
        match self.action {
            Action::Move { .. } | Action::Lock { .. } => Reply::Nil,
            _ => Reply::NilArray,
        }
    }

    /// True for LOCK.ACQUIRE (its queue is a lock's, not a key's).
    pub fn is_lock(&self) -> bool {
        matches!(self.action, Action::Lock { .. })
    }

    /// True for list commands (the keys must hold lists), false for sorted sets.
    fn lists(&self) -> bool {
        !matches!(self.action, Action::ZPop { .. })
    }
}

/// Redis 7.0's `getTimeoutFromObjectOrReply` in seconds: a float, not
/// negative, to milliseconds rounded up (`ceill`), so a tiny timeout is 1 ms
/// and only 0 waits forever.
fn timeout(arg: &[u8], _now: i64) -> Res<i64> {
    let bad = || Reply::err("ERR timeout is not a float or out of range");
    let seconds = match float::classify_long_double(arg) {
        LongDouble::Invalid => return Err(bad()),
        // `(long long)ceill(inf * 1000)` is out of range: x86-64 gives
        // LLONG_MIN, which Redis then calls negative.
        LongDouble::Infinite => return Err(Reply::err("ERR timeout is negative")),
        LongDouble::Finite => float::parse_f64(arg).or_else(|| parse_plain(arg)).ok_or_else(bad)?,
    };
    let ms = (seconds * 1000.0).ceil();
    if ms.is_nan() {
        return Err(bad());
    }
    // Out of the `long long` range the C cast gives LLONG_MIN on x86-64.
    const LIMIT: f64 = 9.223_372_036_854_776e18;
    let ms = if (-LIMIT..LIMIT).contains(&ms) { ms as i64 } else { i64::MIN };
    if ms < 0 {
        return Err(Reply::err("ERR timeout is negative"));
    }
    Ok(ms)
}

/// A decimal number strtod would reject as out of range but strtold reads.
fn parse_plain(arg: &[u8]) -> Option<f64> {
    std::str::from_utf8(arg).ok()?.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// `numkeys` of LMPOP/ZMPOP and friends: Redis's
/// `getRangeLongFromObjectOrReply` gives its one message for anything but
/// a positive integer.
fn numkeys(arg: &[u8]) -> Res<usize> {
    match args::parse_i64(arg) {
        Some(n) if n >= 1 => Ok(n as usize),
        _ => Err(Reply::err("ERR numkeys should be greater than 0")),
    }
}

/// `[COUNT count]` after the direction, with Redis's message.
fn mpop_count(argv: &[Bytes], from: usize) -> Res<Option<u64>> {
    let mut count = None;
    let mut j = from;
    while j < argv.len() {
        let more = argv.len() - 1 - j;
        if count.is_none() && is(&argv[j], "count") && more > 0 {
            j += 1;
            match args::parse_i64(&argv[j]) {
                Some(n) if n >= 1 => count = Some(n as u64),
                _ => return Err(Reply::err("ERR count should be greater than 0")),
            }
        } else {
            return Err(Reply::err(errors::SYNTAX));
        }
        j += 1;
    }
    Ok(Some(count.unwrap_or(1)))
}

/// LMPOP/BLMPOP/ZMPOP/BZMPOP after the name (and timeout): numkeys and the
/// keys. Returns the keys and the index of the direction word after them.
fn parse_mpop(argv: &[Bytes], numkeys_at: usize) -> Res<(Vec<Bytes>, usize)> {
    let n = numkeys(&argv[numkeys_at])?;
    let where_at = numkeys_at.checked_add(n).and_then(|i| i.checked_add(1));
    let Some(where_at) = where_at.filter(|&i| i < argv.len()) else {
        return Err(Reply::err(errors::SYNTAX));
    };
    Ok((argv[numkeys_at + 1..where_at].to_vec(), where_at))
}

/// Parses any of this module's commands with Redis's checks, in Redis's
/// order. `now` bounds the timeout.
pub fn parse(argv: &[Bytes], now: i64) -> Res<Blocking> {
    let name = argv[0].to_ascii_lowercase();
    let last = argv.len() - 1;
    Ok(match name.as_slice() {
        b"blpop" | b"brpop" => Blocking {
            timeout_ms: Some(timeout(&argv[last], now)?),
            keys: argv[1..last].to_vec(),
            action: Action::Pop { left: name == b"blpop", count: None },
        },
        b"bzpopmin" | b"bzpopmax" => Blocking {
            timeout_ms: Some(timeout(&argv[last], now)?),
            keys: argv[1..last].to_vec(),
            action: Action::ZPop { max: name == b"bzpopmax", count: None },
        },
        b"brpoplpush" => Blocking {
            timeout_ms: Some(timeout(&argv[3], now)?),
            keys: vec![argv[1].clone()],
            action: Action::Move { dst: argv[2].clone(), from_left: false, to_left: true },
        },
        b"blmove" => {
            let from_left = side(&argv[3])?;
            let to_left = side(&argv[4])?;
            Blocking {
                timeout_ms: Some(timeout(&argv[5], now)?),
                keys: vec![argv[1].clone()],
                action: Action::Move { dst: argv[2].clone(), from_left, to_left },
            }
        }
        b"lmpop" | b"blmpop" => {
            let blocking = name == b"blmpop";
            let (keys, where_at) = parse_mpop(argv, if blocking { 2 } else { 1 })?;
            let left = side(&argv[where_at])?;
            let count = mpop_count(argv, where_at + 1)?;
            let timeout_ms = if blocking { Some(timeout(&argv[1], now)?) } else { None };
            Blocking { keys, timeout_ms, action: Action::Pop { left, count } }
        }
        b"zmpop" | b"bzmpop" => {
            let blocking = name == b"bzmpop";
            let (keys, where_at) = parse_mpop(argv, if blocking { 2 } else { 1 })?;
            let max = if is(&argv[where_at], "min") {
                false
            } else if is(&argv[where_at], "max") {
                true
            } else {
                return Err(Reply::err(errors::SYNTAX));
            };
            let count = mpop_count(argv, where_at + 1)?;
            let timeout_ms = if blocking { Some(timeout(&argv[1], now)?) } else { None };
            Blocking { keys, timeout_ms, action: Action::ZPop { max, count } }
        }
        b"lock.acquire" => {
            let a = locks::parse_acquire(argv)?;
            Blocking {
                keys: vec![a.name],
                timeout_ms: a.wait_ms,
                action: Action::Lock { owner: a.owner, ttl_ms: a.ttl_ms },
            }
        }
        _ => return Err(Reply::err("ERR not a blocking command")),
    })
}

/// The command as a plain (never blocking) command.
fn plain(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let b = parse(argv, x.now)?;
    Ok(try_now(x, &b)?.map_or_else(|| b.would_block(), |(reply, _)| reply))
}

/// Serves from the first of the keys that has data, checking the types of
/// the keys before it (WRONGTYPE), as Redis does; `None` if every key is
/// missing.
pub fn try_now(x: &mut Exec, b: &Blocking) -> Res<Option<(Reply, GiveBack)>> {
    if let Action::Lock { owner, ttl_ms } = &b.action {
        let a = locks::Acquire {
            name: b.keys[0].clone(),
            owner: owner.clone(),
            ttl_ms: *ttl_ms,
            wait_ms: b.timeout_ms,
        };
        return Ok(locks::try_acquire(x, &a).map(|r| (r, GiveBack::Nothing)));
    }
    let now = x.now;
    for key in &b.keys {
        let db = x.db();
        let present = if b.lists() {
            db.list_mut(key, now)?.is_some()
        } else {
            db.zset_mut(key, now)?.is_some()
        };
        if present {
            if let Action::Move { dst, .. } = &b.action {
                // LMOVE checks the destination's type before it pops.
                x.db().list_mut(dst, now)?;
            }
            return Ok(serve_key(x, b, key));
        }
    }
    Ok(None)
}

/// Serves `b` from `key` (a key that has data now): the reply, and what to
/// give back if it is not delivered. `None` if `key` is missing or of the
/// wrong type (the client stays blocked, as in Redis 7.0).
pub fn serve_key(x: &mut Exec, b: &Blocking, key: &Bytes) -> Option<(Reply, GiveBack)> {
    let now = x.now;
    let db_index = x.db as u32;
    match &b.action {
        Action::Pop { left, count } => {
            let list = x.db().list_mut(key, now).ok()??;
            let n = count.unwrap_or(1).min(list.len() as u64) as usize;
            let items: Vec<Bytes> = (0..n).filter_map(|_| pop(list, *left)).collect();
            x.db().remove_if_empty(key);
            popped(x, key, *left);
            let reply = match count {
                None => Reply::Array(vec![
                    Reply::Bulk(key.clone()),
                    Reply::Bulk(items.first().cloned().unwrap_or_default()),
                ]),
                Some(_) => Reply::Array(vec![
                    Reply::Bulk(key.clone()),
                    Reply::bulks(items.iter().cloned()),
                ]),
            };
            let give_back = GiveBack::List { db: db_index, key: key.clone(), left: *left, items };
            Some((reply, give_back))
        }
        Action::Move { dst, from_left, to_left } => {
            x.db().list_mut(key, now).ok()??;
            if x.db().list_mut(dst, now).is_err() {
                return None;
            }
            let reply = lmove_generic(x, key, dst, *from_left, *to_left).ok()?;
            Some((reply, GiveBack::Nothing))
        }
        // Locks are granted by their own commands, not by keys.
        Action::Lock { .. } => None,
        Action::ZPop { max, count } => {
            let z = x.db().zset_mut(key, now).ok()??;
            let n = count.unwrap_or(1).min(z.len() as u64) as usize;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                let entry = if *max { z.order.pop_last() } else { z.order.pop_first() };
                let (score, member) = entry.expect("n <= len");
                z.scores.remove(&member);
                items.push((member, score.0));
            }
            x.db().remove_if_empty(key);
            x.notify(Class::ZSet, if *max { "zpopmax" } else { "zpopmin" }, key);
            x.modified(key);
            notify_if_gone(x, key);
            let reply = match count {
                None => {
                    let (m, s) = &items[0];
                    Reply::Array(vec![
                        Reply::Bulk(key.clone()),
                        Reply::Bulk(m.clone()),
                        Reply::Double(*s),
                    ])
                }
                // (B)ZMPOP nests each pair, in RESP2 too.
                Some(_) => Reply::Array(vec![
                    Reply::Bulk(key.clone()),
                    Reply::Array(
                        items
                            .iter()
                            .map(|(m, s)| {
                                Reply::Array(vec![Reply::Bulk(m.clone()), Reply::Double(*s)])
                            })
                            .collect(),
                    ),
                ]),
            };
            Some((reply, GiveBack::ZSet { db: db_index, key: key.clone(), items }))
        }
    }
}

/// Puts back what a waiter was served but never got: list elements at the
/// end they came from (in their order), sorted-set members with their
/// scores. A key that now holds another type keeps it (the elements go).
pub fn give_back(x: &mut Exec, what: &GiveBack) {
    let now = x.now;
    match what {
        GiveBack::List { db, key, left, items } => {
            x.db = *db as usize;
            let Ok(list) = x.db().list_or_create(key, now, VecDeque::new) else { return };
            // Popped from the head in order a, b: push back b then a.
            for item in items.iter().rev() {
                if *left {
                    list.push_front(item.clone());
                } else {
                    list.push_back(item.clone());
                }
            }
            x.notify(Class::List, if *left { "lpush" } else { "rpush" }, key);
            x.modified(key);
        }
        GiveBack::ZSet { db, key, items } => {
            x.db = *db as usize;
            let Ok(z) = x.db().zset_or_create(key, now, Default::default) else { return };
            for (member, score) in items {
                if z.score(member).is_none() {
                    z.insert(member, *score);
                }
            }
            x.notify(Class::ZSet, "zadd", key);
            x.modified(key);
        }
        GiveBack::Lock { name, token } => locks::give_back(x, name, *token),
        GiveBack::Nothing => {}
    }
}

//! Sorted set commands: ZADD ZINCRBY ZREM ZSCORE ZMSCORE ZCARD ZCOUNT ZLEXCOUNT
//! ZRANK ZREVRANK, the ZRANGE family (ZRANGE with BYSCORE/BYLEX/REV/LIMIT,
//! ZREVRANGE, ZRANGEBYSCORE, ZREVRANGEBYSCORE, ZRANGEBYLEX, ZREVRANGEBYLEX),
//! ZREMRANGEBYSCORE ZREMRANGEBYRANK ZREMRANGEBYLEX, ZPOPMIN ZPOPMAX and ZSCAN.
//!
//! Ranges follow Redis 7.0's listpack code paths, which walk the zset in
//! (score, member) order: a score or lex range starts at the first element at
//! or past its minimum and runs while elements stay within its maximum. For
//! lex ranges over members with different scores this is what Redis does for
//! small zsets (for skiplists it depends on the random node levels, so no
//! single answer exists).

use std::ops::Bound;

use bytes::Bytes;

use crate::args::{self, is, Res};
use crate::cmd::keys::{adds_key, notify_if_gone, notify_new, scan_reply, ScanArgs};
use crate::cmd::sets::store_nothing;
use crate::command::{arity_error, Spec};
use crate::db::Db;
use crate::event::Class;
use crate::float;
use crate::reply::{errors, Reply};
use crate::state::{Exec, Query};
use crate::value::{Score, SetVal, Value, ZSetVal};

pub const COMMANDS: &[Spec] = &[
    Spec::write("zadd", -4, (1, 1, 1), zadd),
    Spec::write("zincrby", 4, (1, 1, 1), zincrby),
    Spec::write("zrem", -3, (1, 1, 1), zrem),
    Spec::read("zscore", 3, (1, 1, 1), zscore),
    Spec::read("zmscore", -3, (1, 1, 1), zmscore),
    Spec::read("zcard", 2, (1, 1, 1), zcard),
    Spec::read("zcount", 4, (1, 1, 1), zcount),
    Spec::read("zlexcount", 4, (1, 1, 1), zlexcount),
    Spec::read("zrank", -3, (1, 1, 1), zrank),
    Spec::read("zrevrank", -3, (1, 1, 1), zrevrank),
    Spec::read("zrange", -4, (1, 1, 1), zrange),
    Spec::read("zrevrange", -4, (1, 1, 1), zrevrange),
    Spec::read("zrangebyscore", -4, (1, 1, 1), zrangebyscore),
    Spec::read("zrevrangebyscore", -4, (1, 1, 1), zrevrangebyscore),
    Spec::read("zrangebylex", -4, (1, 1, 1), zrangebylex),
    Spec::read("zrevrangebylex", -4, (1, 1, 1), zrevrangebylex),
    Spec::write("zremrangebyscore", 4, (1, 1, 1), zremrangebyscore),
    Spec::write("zremrangebyrank", 4, (1, 1, 1), zremrangebyrank),
    Spec::write("zremrangebylex", 4, (1, 1, 1), zremrangebylex),
    Spec::write("zpopmin", -2, (1, 1, 1), zpopmin),
    Spec::write("zpopmax", -2, (1, 1, 1), zpopmax),
    Spec::read("zscan", -3, (1, 1, 1), zscan),
    // Keys follow a numkeys argument: Redis 7.0 reports (0, 0, 0) for the
    // reads and the destination alone for the STORE variants.
    Spec::read("zunion", -3, (0, 0, 0), zunion),
    Spec::read("zinter", -3, (0, 0, 0), zinter),
    Spec::read("zdiff", -3, (0, 0, 0), zdiff),
    Spec::write("zunionstore", -4, (1, 1, 1), zunionstore),
    Spec::write("zinterstore", -4, (1, 1, 1), zinterstore),
    Spec::write("zdiffstore", -4, (1, 1, 1), zdiffstore),
    Spec::read("zintercard", -3, (0, 0, 0), zintercard),
    Spec::write("zrangestore", -5, (1, 2, 1), zrangestore),
    Spec::read("zrandmember", -2, (1, 1, 1), zrandmember),
];

/// A (member, score) pair as stored.
type Entry<'a> = (&'a Bytes, f64);
/// Entries in one direction.
type Entries<'a> = Box<dyn Iterator<Item = Entry<'a>> + 'a>;

fn member_score(m: &Bytes, s: f64) -> (Reply, Reply) {
    (Reply::Bulk(m.clone()), Reply::Double(s))
}

/// Sets a member's score, as Redis stores it: a listpack keeps scores as
/// text, where -0 reads back as 0; a skiplist keeps the double.
fn store_score(z: &mut ZSetVal, member: &[u8], score: f64) -> bool {
    let new = z.insert(member, score);
    if z.listpack && score == 0.0 && score.is_sign_negative() {
        z.insert(member, 0.0);
    }
    new
}

/// The smallest double greater than `x` (for finite or -inf `x`).
fn next_up(x: f64) -> f64 {
    if x == 0.0 {
        f64::from_bits(1)
    } else if x > 0.0 {
        f64::from_bits(x.to_bits() + 1)
    } else {
        f64::from_bits(x.to_bits() - 1)
    }
}

/// Entries from the lowest with score >= `min`, ascending.
fn from_score(z: &ZSetVal, min: f64) -> Entries<'_> {
    let start = Bound::Included((Score(min), Bytes::new()));
    Box::new(z.order.range((start, Bound::Unbounded)).map(|(s, m)| (m, s.0)))
}

/// Entries from the highest with score <= `max`, descending.
fn down_from_score(z: &ZSetVal, max: f64) -> Entries<'_> {
    if max == f64::INFINITY {
        return Box::new(z.iter().rev());
    }
    let end = Bound::Excluded((Score(next_up(max)), Bytes::new()));
    Box::new(z.order.range((Bound::Unbounded, end)).rev().map(|(s, m)| (m, s.0)))
}

// ---------------------------------------------------------------------------
// Score ranges

/// A score interval, like Redis's `zrangespec`.
#[derive(Clone, Copy, Debug)]
struct ScoreRange {
    min: f64,
    max: f64,
    minex: bool,
    maxex: bool,
}

/// C's `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// One bound of a score range, parsed like Redis's `zslParseRange`: bare
/// `strtod` up to the first NUL and up to the end. Unlike a ZADD score this
/// accepts an empty text (0), leading spaces and values out of range (±inf or
/// 0); NaN is refused.
fn range_float(s: &[u8]) -> Option<f64> {
    let s = &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())];
    if s.is_empty() {
        return Some(0.0);
    }
    let t = &s[s.iter().position(|&b| !is_c_space(b))?..];
    if let Some(v) = float::parse_f64(t) {
        return Some(v);
    }
    // What strtod accepts with ERANGE: a decimal number too large or too
    // small for a double.
    let decimal =
        t.iter().all(|&b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
            && t.iter().any(u8::is_ascii_digit);
    if !decimal {
        return None;
    }
    std::str::from_utf8(t).ok()?.parse::<f64>().ok().filter(|v| !v.is_nan())
}

fn range_bound(s: &[u8]) -> Option<(f64, bool)> {
    match s.first() {
        Some(b'(') => range_float(&s[1..]).map(|v| (v, true)),
        _ => range_float(s).map(|v| (v, false)),
    }
}

impl ScoreRange {
    fn parse(min: &[u8], max: &[u8]) -> Res<ScoreRange> {
        let bad = || Reply::err(errors::MIN_MAX_NOT_FLOAT);
        let (min, minex) = range_bound(min).ok_or_else(bad)?;
        let (max, maxex) = range_bound(max).ok_or_else(bad)?;
        Ok(ScoreRange { min, max, minex, maxex })
    }

    fn gte_min(&self, v: f64) -> bool {
        if self.minex {
            v > self.min
        } else {
            v >= self.min
        }
    }

    fn lte_max(&self, v: f64) -> bool {
        if self.maxex {
            v < self.max
        } else {
            v <= self.max
        }
    }

    /// Ranges that can hold nothing (`zslIsInRange`).
    fn is_empty(&self) -> bool {
        self.min > self.max || (self.min == self.max && (self.minex || self.maxex))
    }

    /// The entries in range, ascending (or descending if `rev`).
    fn entries<'a>(&self, z: &'a ZSetVal, rev: bool) -> Entries<'a> {
        if self.is_empty() {
            return Box::new(std::iter::empty());
        }
        let r = *self;
        if rev {
            Box::new(
                down_from_score(z, r.max)
                    .skip_while(move |e| !r.lte_max(e.1))
                    .take_while(move |e| r.gte_min(e.1)),
            )
        } else {
            Box::new(
                from_score(z, r.min)
                    .skip_while(move |e| !r.gte_min(e.1))
                    .take_while(move |e| r.lte_max(e.1)),
            )
        }
    }
}

// ---------------------------------------------------------------------------
// Lex ranges

/// One end of a lex range: `-`, `+` or a member.
#[derive(Clone, Copy, Debug)]
enum Lex<'a> {
    Min,
    Max,
    Str(&'a [u8]),
}

/// Redis's `sdscmplex`: `-` sorts before and `+` after every string.
fn cmp_lex(a: Lex, b: Lex) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a, b) {
        (Lex::Min, Lex::Min) | (Lex::Max, Lex::Max) => Equal,
        (Lex::Min, _) | (_, Lex::Max) => Less,
        (Lex::Max, _) | (_, Lex::Min) => Greater,
        (Lex::Str(a), Lex::Str(b)) => a.cmp(b),
    }
}

/// A lex interval, like Redis's `zlexrangespec`.
#[derive(Clone, Copy, Debug)]
struct LexRange<'a> {
    min: Lex<'a>,
    max: Lex<'a>,
    minex: bool,
    maxex: bool,
}

/// `zslParseLexRangeItem`: `-`, `+`, `(member` or `[member`.
fn lex_item(s: &[u8]) -> Option<(Lex<'_>, bool)> {
    // Redis tests the byte after `+` or `-` for the end of the C string.
    let alone = s.get(1).is_none_or(|&b| b == 0);
    match s.first()? {
        b'+' if alone => Some((Lex::Max, true)),
        b'-' if alone => Some((Lex::Min, true)),
        b'(' => Some((Lex::Str(&s[1..]), true)),
        b'[' => Some((Lex::Str(&s[1..]), false)),
        _ => None,
    }
}

impl<'a> LexRange<'a> {
    fn parse(min: &'a [u8], max: &'a [u8]) -> Res<LexRange<'a>> {
        let bad = || Reply::err(errors::MIN_MAX_NOT_STRING);
        let (min, minex) = lex_item(min).ok_or_else(bad)?;
        let (max, maxex) = lex_item(max).ok_or_else(bad)?;
        Ok(LexRange { min, max, minex, maxex })
    }

    fn gte_min(&self, m: &[u8]) -> bool {
        let c = cmp_lex(Lex::Str(m), self.min);
        c.is_gt() || (c.is_eq() && !self.minex)
    }

    fn lte_max(&self, m: &[u8]) -> bool {
        let c = cmp_lex(Lex::Str(m), self.max);
        c.is_lt() || (c.is_eq() && !self.maxex)
    }

    /// `zzlIsInLexRange`: the range can hold something and overlaps the
    /// zset's first and last members.
    fn overlaps(&self, z: &ZSetVal) -> bool {
        let c = cmp_lex(self.min, self.max);
        if c.is_gt() || (c.is_eq() && (self.minex || self.maxex)) {
            return false;
        }
        match (z.order.last(), z.order.first()) {
            (Some((_, last)), Some((_, first))) => self.gte_min(last) && self.lte_max(first),
            _ => false,
        }
    }

    /// The entries in range, ascending (or descending if `rev`): from the
    /// first member at or past the near end, while members stay within the
    /// far end.
    fn entries<'z>(&self, z: &'z ZSetVal, rev: bool) -> Entries<'z>
    where
        'a: 'z,
    {
        if !self.overlaps(z) {
            return Box::new(std::iter::empty());
        }
        let r = *self;
        // With a single score the order is the members' order: seek to the
        // near end instead of walking to it.
        let single_score = z.order.first().map(|e| e.0) == z.order.last().map(|e| e.0);
        if rev {
            let start: Entries<'z> = match (single_score, r.max) {
                (true, Lex::Str(max)) => {
                    let score = z.order.first().expect("not empty").0;
                    let end = Bound::Included((score, Bytes::copy_from_slice(max)));
                    Box::new(z.order.range((Bound::Unbounded, end)).rev().map(|(s, m)| (m, s.0)))
                }
                _ => Box::new(z.iter().rev()),
            };
            Box::new(start.skip_while(move |e| !r.lte_max(e.0)).take_while(move |e| r.gte_min(e.0)))
        } else {
            let start: Entries<'z> = match (single_score, r.min) {
                (true, Lex::Str(min)) => {
                    let score = z.order.first().expect("not empty").0;
                    let begin = Bound::Included((score, Bytes::copy_from_slice(min)));
                    Box::new(z.order.range((begin, Bound::Unbounded)).map(|(s, m)| (m, s.0)))
                }
                _ => Box::new(z.iter()),
            };
            Box::new(start.skip_while(move |e| !r.gte_min(e.0)).take_while(move |e| r.lte_max(e.0)))
        }
    }
}

// ---------------------------------------------------------------------------
// Rank ranges

/// Redis's index sanitizing for rank ranges: `Some((start, end))` with
/// `0 <= start <= end < len`, or `None` for an empty range.
fn rank_bounds(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let llen = len as i64;
    let mut start = if start < 0 { start + llen } else { start };
    let mut end = if end < 0 { end + llen } else { end };
    if start < 0 {
        start = 0;
    }
    if start > end || start >= llen {
        return None;
    }
    if end >= llen {
        end = llen - 1;
    }
    Some((start as usize, end as usize))
}

/// The entries at ranks `start..=end` (ranks from the top if `rev`), in
/// rank order, walking from whichever end of the zset is nearer.
fn rank_entries(z: &ZSetVal, start: usize, end: usize, rev: bool) -> Vec<Entry<'_>> {
    let len = z.len();
    let n = end - start + 1;
    // Ascending positions of the first and last wanted entries.
    let (lo, hi) = if rev { (len - 1 - end, len - 1 - start) } else { (start, end) };
    let mut out: Vec<Entry> = if lo <= len - 1 - hi {
        z.iter().skip(lo).take(n).collect()
    } else {
        let mut v: Vec<Entry> = z.iter().rev().skip(len - 1 - hi).take(n).collect();
        v.reverse();
        v
    };
    if rev {
        out.reverse();
    }
    out
}

// ---------------------------------------------------------------------------
// ZADD and friends

#[derive(Default, Clone, Copy)]
struct ZaddFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    incr: bool,
}

/// What `zset_add` did.
enum Added {
    /// A new member, with its score.
    New(f64),
    /// An existing member whose score changed.
    Updated(f64),
    /// An existing member left at the same score.
    Same(f64),
    /// Nothing (NX, XX, GT or LT said no).
    Nop,
}

/// Redis's `zsetAdd`: `Err` when INCR produced NaN.
fn zset_add(z: &mut ZSetVal, mut score: f64, member: &[u8], f: ZaddFlags) -> Result<Added, ()> {
    match z.score(member) {
        Some(current) => {
            if f.nx {
                return Ok(Added::Nop);
            }
            if f.incr {
                score += current;
                if score.is_nan() {
                    return Err(());
                }
            }
            if (f.lt && score >= current) || (f.gt && score <= current) {
                return Ok(Added::Nop);
            }
            if score == current {
                return Ok(Added::Same(score));
            }
            store_score(z, member, score);
            Ok(Added::Updated(score))
        }
        None if f.xx => Ok(Added::Nop),
        None => {
            store_score(z, member, score);
            Ok(Added::New(score))
        }
    }
}

/// ZADD key [NX | XX] [GT | LT] [CH] [INCR] score member [score member ...]
fn zadd(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    zadd_generic(x, argv, false)
}

/// ZINCRBY key increment member (ZADD with INCR, options parsing included:
/// `ZINCRBY key nx member` is a syntax error, as in Redis)
fn zincrby(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    zadd_generic(x, argv, true)
}

fn zadd_generic(x: &mut Exec, argv: &[Bytes], incr: bool) -> Res<Reply> {
    let mut f = ZaddFlags { incr, ..ZaddFlags::default() };
    let mut ch = false;
    let mut idx = 2;
    while idx < argv.len() {
        let opt = &argv[idx];
        if is(opt, "nx") {
            f.nx = true;
        } else if is(opt, "xx") {
            f.xx = true;
        } else if is(opt, "ch") {
            ch = true;
        } else if is(opt, "incr") {
            f.incr = true;
        } else if is(opt, "gt") {
            f.gt = true;
        } else if is(opt, "lt") {
            f.lt = true;
        } else {
            break;
        }
        idx += 1;
    }
    let pairs = &argv[idx..];
    if pairs.is_empty() || pairs.len() % 2 == 1 {
        return Err(Reply::err(errors::SYNTAX));
    }
    if f.nx && f.xx {
        return Err(Reply::err("ERR XX and NX options at the same time are not compatible"));
    }
    if (f.nx && (f.gt || f.lt)) || (f.gt && f.lt) {
        return Err(Reply::err(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if f.incr && pairs.len() > 2 {
        return Err(Reply::err("ERR INCR option supports a single increment-element pair"));
    }
    // Every score is checked before anything changes.
    let scores = pairs.chunks(2).map(|p| args::float(&p[0])).collect::<Res<Vec<f64>>>()?;

    let key = &argv[1];
    let now = x.now;
    let adds = adds_key(x, x.db, key);
    let db = x.db();
    let exists = db.zset_mut(key, now)?.is_some();
    let (mut added, mut updated, mut processed, mut last) = (0, 0, 0, 0.0);
    if exists || !f.xx {
        let z = db.zset_or_create(key, now, ZSetVal::default)?;
        for (pair, &score) in pairs.chunks(2).zip(&scores) {
            let Ok(outcome) = zset_add(z, score, &pair[1], f) else {
                db.remove_if_empty(key);
                return Err(Reply::err("ERR resulting score is not a number (NaN)"));
            };
            match outcome {
                Added::New(s) => (added, processed, last) = (added + 1, processed + 1, s),
                Added::Updated(s) => (updated, processed, last) = (updated + 1, processed + 1, s),
                Added::Same(s) => (processed, last) = (processed + 1, s),
                Added::Nop => {}
            }
        }
        db.remove_if_empty(key);
        let db = x.db;
        notify_new(x, db, key, adds && !exists);
    }
    // A score set to what it was (ZINCRBY by 0 included) is no change.
    if added + updated > 0 {
        x.modified(key);
        x.notify(Class::ZSet, if f.incr { "zincr" } else { "zadd" }, key);
    }
    Ok(if f.incr {
        if processed > 0 {
            Reply::Double(last)
        } else {
            Reply::Nil
        }
    } else {
        Reply::Int(if ch { added + updated } else { added })
    })
}

/// ZREM key member [member ...]
fn zrem(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let now = x.now;
    let db = x.db();
    let Some(z) = db.zset_mut(&argv[1], now)? else { return Ok(Reply::Int(0)) };
    let mut removed = 0;
    for member in &argv[2..] {
        if z.remove(member) {
            removed += 1;
        }
        if z.is_empty() {
            break;
        }
    }
    db.remove_if_empty(&argv[1]);
    if removed > 0 {
        x.notify(Class::ZSet, "zrem", &argv[1]);
        notify_if_gone(x, &argv[1]);
        x.modified(&argv[1]);
    }
    Ok(Reply::Int(removed))
}

// ---------------------------------------------------------------------------
// Reads of single members

/// ZSCORE key member
fn zscore(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let z = q.db().get_zset(&argv[1], q.now)?;
    Ok(z.and_then(|z| z.score(&argv[2])).map_or(Reply::Nil, Reply::Double))
}

/// ZMSCORE key member [member ...]
fn zmscore(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let z = q.db().get_zset(&argv[1], q.now)?;
    Ok(Reply::Array(
        argv[2..]
            .iter()
            .map(|m| z.and_then(|z| z.score(m)).map_or(Reply::Nil, Reply::Double))
            .collect(),
    ))
}

/// ZCARD key
fn zcard(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    Ok(q.db().get_zset(&argv[1], q.now)?.map_or(0, ZSetVal::len).into())
}

/// ZRANK key member [WITHSCORE]
fn zrank(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    rank_generic(q, argv, false)
}

/// ZREVRANK key member [WITHSCORE]
fn zrevrank(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    rank_generic(q, argv, true)
}

/// ZRANK and ZREVRANK, with Redis 7.2's WITHSCORE: `[rank, score]`, and a
/// nil array for a missing key or member when it is given.
fn rank_generic(q: &mut Query, argv: &[Bytes], reverse: bool) -> Res<Reply> {
    let name = if reverse { "zrevrank" } else { "zrank" };
    if argv.len() > 4 {
        return Err(arity_error(name));
    }
    let with_score = match argv.get(3) {
        None => false,
        Some(opt) if opt.eq_ignore_ascii_case(b"withscore") => true,
        Some(_) => return Err(Reply::err(errors::SYNTAX)),
    };
    let missing = if with_score { Reply::NilArray } else { Reply::Nil };
    let Some(z) = q.db().get_zset(&argv[1], q.now)? else { return Ok(missing) };
    let Some((stored, &score)) = z.scores.get_key_value(&argv[2]) else { return Ok(missing) };
    let at = (Score(score), stored.clone());
    let rank = if reverse {
        z.order.range((Bound::Excluded(at), Bound::Unbounded)).count()
    } else {
        z.order.range((Bound::Unbounded, Bound::Excluded(at))).count()
    };
    let rank = Reply::Int(rank as i64);
    Ok(if with_score { Reply::Array(vec![rank, Reply::Double(score)]) } else { rank })
}

/// ZCOUNT key min max
fn zcount(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let range = ScoreRange::parse(&argv[2], &argv[3])?;
    let Some(z) = q.db().get_zset(&argv[1], q.now)? else { return Ok(Reply::Int(0)) };
    Ok(range.entries(z, false).count().into())
}

/// ZLEXCOUNT key min max
fn zlexcount(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let range = LexRange::parse(&argv[2], &argv[3])?;
    let Some(z) = q.db().get_zset(&argv[1], q.now)? else { return Ok(Reply::Int(0)) };
    Ok(range.entries(z, false).count().into())
}

// ---------------------------------------------------------------------------
// The ZRANGE family

#[derive(Clone, Copy, PartialEq, Eq)]
enum RangeBy {
    /// ZRANGE: chosen by BYSCORE/BYLEX, rank otherwise.
    Auto,
    Rank,
    Score,
    Lex,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// ZRANGE: REV may reverse it.
    Auto,
    Forward,
    Reverse,
}

/// The parsed range of a ZRANGE-family command.
enum Parsed<'a> {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange<'a>),
}

/// A ZRANGE-family command's arguments after parsing.
struct RangeArgs<'a> {
    parsed: Parsed<'a>,
    rev: bool,
    withscores: bool,
    offset: i64,
    limit: i64,
}

/// Redis's `zrangeGenericCommand` up to the key lookup: options first, then
/// the conflicts between them, then the range. `base` is the index of the
/// source key (1, or 2 for ZRANGESTORE, which takes no WITHSCORES).
fn parse_range<'a>(
    argv: &'a [Bytes],
    base: usize,
    store: bool,
    mut by: RangeBy,
    mut dir: Direction,
) -> Res<RangeArgs<'a>> {
    let mut withscores = false;
    let mut offset = 0i64;
    let mut limit = -1i64;
    let mut j = base + 3;
    while j < argv.len() {
        let left = argv.len() - j - 1;
        let opt = &argv[j];
        if !store && is(opt, "withscores") {
            withscores = true;
        } else if is(opt, "limit") && left >= 2 {
            offset = args::int(&argv[j + 1])?;
            limit = args::int(&argv[j + 2])?;
            j += 2;
        } else if dir == Direction::Auto && is(opt, "rev") {
            dir = Direction::Reverse;
        } else if by == RangeBy::Auto && is(opt, "bylex") {
            by = RangeBy::Lex;
        } else if by == RangeBy::Auto && is(opt, "byscore") {
            by = RangeBy::Score;
        } else {
            return Err(Reply::err(errors::SYNTAX));
        }
        j += 1;
    }
    let rev = dir == Direction::Reverse;
    if by == RangeBy::Auto {
        by = RangeBy::Rank;
    }
    // Note: Redis tests `limit != -1`, so `LIMIT <any> -1` passes with ranks.
    if limit != -1 && by == RangeBy::Rank {
        return Err(Reply::err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if withscores && by == RangeBy::Lex {
        return Err(Reply::err(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    // Reversed score and lex ranges are given as max, min.
    let (min, max) = if rev && by != RangeBy::Rank {
        (&argv[base + 2], &argv[base + 1])
    } else {
        (&argv[base + 1], &argv[base + 2])
    };
    let parsed = match by {
        RangeBy::Score => Parsed::Score(ScoreRange::parse(min, max)?),
        RangeBy::Lex => Parsed::Lex(LexRange::parse(min, max)?),
        _ => Parsed::Rank(args::int(min)?, args::int(max)?),
    };
    Ok(RangeArgs { parsed, rev, withscores, offset, limit })
}

impl<'a> RangeArgs<'a> {
    /// The entries in range, in reply order.
    fn entries<'z>(&self, z: &'z ZSetVal) -> Vec<Entry<'z>>
    where
        'a: 'z,
    {
        match &self.parsed {
            Parsed::Rank(start, end) => match rank_bounds(*start, *end, z.len()) {
                Some((start, end)) => rank_entries(z, start, end, self.rev),
                None => Vec::new(),
            },
            Parsed::Score(range) => {
                limited(range.entries(z, self.rev), z.len(), self.offset, self.limit)
            }
            Parsed::Lex(range) => {
                limited(range.entries(z, self.rev), z.len(), self.offset, self.limit)
            }
        }
    }
}

/// Redis's `zrangeGenericCommand` for a reply: parse, look the key up, reply.
fn zrange_generic(q: &Query, argv: &[Bytes], by: RangeBy, dir: Direction) -> Res<Reply> {
    let ra = parse_range(argv, 1, false, by, dir)?;
    let Some(z) = q.db().get_zset(&argv[1], q.now)? else { return Ok(Reply::Array(Vec::new())) };
    let entries = ra.entries(z);
    Ok(if ra.withscores {
        Reply::Pairs(entries.into_iter().map(|(m, s)| member_score(m, s)).collect())
    } else {
        Reply::Array(entries.into_iter().map(|(m, _)| Reply::Bulk(m.clone())).collect())
    })
}

/// Applies LIMIT offset count like Redis: an offset past the end or a
/// negative one gives nothing; a negative count means all.
fn limited<'a>(entries: Entries<'a>, len: usize, offset: i64, limit: i64) -> Vec<Entry<'a>> {
    if offset < 0 || (offset > 0 && offset as u64 >= len as u64) {
        return Vec::new();
    }
    let entries = entries.skip(offset as usize);
    match usize::try_from(limit) {
        Ok(n) => entries.take(n).collect(),
        Err(_) => entries.collect(),
    }
}

/// ZRANGE key start stop [BYSCORE | BYLEX] [REV] [LIMIT offset count] [WITHSCORES]
fn zrange(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    zrange_generic(q, argv, RangeBy::Auto, Direction::Auto)
}

/// ZREVRANGE key start stop [WITHSCORES]
fn zrevrange(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    zrange_generic(q, argv, RangeBy::Rank, Direction::Reverse)
}

/// ZRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count]
fn zrangebyscore(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    zrange_generic(q, argv, RangeBy::Score, Direction::Forward)
}

/// ZREVRANGEBYSCORE key max min [WITHSCORES] [LIMIT offset count]
fn zrevrangebyscore(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    zrange_generic(q, argv, RangeBy::Score, Direction::Reverse)
}

/// ZRANGEBYLEX key min max [LIMIT offset count]
fn zrangebylex(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    zrange_generic(q, argv, RangeBy::Lex, Direction::Forward)
}

/// ZREVRANGEBYLEX key max min [LIMIT offset count]
fn zrevrangebylex(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    zrange_generic(q, argv, RangeBy::Lex, Direction::Reverse)
}

// ---------------------------------------------------------------------------
// Removing ranges and popping

/// Removes `members` from the zset at `key`, deleting the key if emptied,
/// and reports `event` if any went.
fn remove_members(x: &mut Exec, key: &[u8], members: Vec<Bytes>, event: &'static str) -> Reply {
    let now = x.now;
    let db = x.db();
    if let Ok(Some(z)) = db.zset_mut(key, now) {
        for m in &members {
            z.remove(m);
        }
    }
    db.remove_if_empty(key);
    if !members.is_empty() {
        x.modified(key);
        x.notify(Class::ZSet, event, key);
        notify_if_gone(x, key);
    }
    Reply::Int(members.len() as i64)
}

fn owned<'a>(entries: impl Iterator<Item = Entry<'a>>) -> Vec<Bytes> {
    entries.map(|(m, _)| m.clone()).collect()
}

/// ZREMRANGEBYSCORE key min max
fn zremrangebyscore(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let range = ScoreRange::parse(&argv[2], &argv[3])?;
    let now = x.now;
    let Some(z) = x.db().zset_mut(&argv[1], now)? else { return Ok(Reply::Int(0)) };
    let members = owned(range.entries(z, false));
    Ok(remove_members(x, &argv[1], members, "zremrangebyscore"))
}

/// ZREMRANGEBYLEX key min max
fn zremrangebylex(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let range = LexRange::parse(&argv[2], &argv[3])?;
    let now = x.now;
    let Some(z) = x.db().zset_mut(&argv[1], now)? else { return Ok(Reply::Int(0)) };
    let members = owned(range.entries(z, false));
    Ok(remove_members(x, &argv[1], members, "zremrangebylex"))
}

/// ZREMRANGEBYRANK key start stop
fn zremrangebyrank(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let start = args::int(&argv[2])?;
    let end = args::int(&argv[3])?;
    let now = x.now;
    let Some(z) = x.db().zset_mut(&argv[1], now)? else { return Ok(Reply::Int(0)) };
    let Some((start, end)) = rank_bounds(start, end, z.len()) else { return Ok(Reply::Int(0)) };
    let members = owned(rank_entries(z, start, end, false).into_iter());
    Ok(remove_members(x, &argv[1], members, "zremrangebyrank"))
}

/// ZPOPMIN key [count]
fn zpopmin(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    zpop(x, argv, false)
}

/// ZPOPMAX key [count]
fn zpopmax(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    zpop(x, argv, true)
}

/// Without a count the reply is a flat `[member, score]` (in RESP3 too);
/// with one it is a list of pairs, nested in RESP3.
fn zpop(x: &mut Exec, argv: &[Bytes], max: bool) -> Res<Reply> {
    if argv.len() > 3 {
        return Err(Reply::err(errors::SYNTAX));
    }
    let count = match argv.get(2) {
        Some(arg) => match args::parse_i64(arg) {
            Some(n) if n >= 0 => Some(n as u64),
            _ => return Err(Reply::err(errors::OUT_OF_RANGE_POSITIVE)),
        },
        None => None,
    };
    let now = x.now;
    let db = x.db();
    let Some(z) = db.zset_mut(&argv[1], now)? else { return Ok(Reply::Array(Vec::new())) };
    if count == Some(0) {
        return Ok(Reply::Array(Vec::new()));
    }
    let n = count.unwrap_or(1).min(z.len() as u64) as usize;
    let mut popped = Vec::with_capacity(n);
    for _ in 0..n {
        let entry = if max { z.order.pop_last() } else { z.order.pop_first() };
        let (score, member) = entry.expect("n <= len");
        z.scores.remove(&member);
        popped.push(member_score(&member, score.0));
    }
    db.remove_if_empty(&argv[1]);
    x.notify(Class::ZSet, if max { "zpopmax" } else { "zpopmin" }, &argv[1]);
    x.modified(&argv[1]);
    notify_if_gone(x, &argv[1]);
    Ok(match count {
        None => {
            let (m, s) = popped.pop().expect("a non-empty zset pops one");
            Reply::Array(vec![m, s])
        }
        Some(_) => Reply::Pairs(popped),
    })
}

/// ZSCAN key cursor [MATCH pattern] [COUNT count]
fn zscan(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    // Redis checks the cursor, then the key, and only then the options.
    args::cursor(&argv[2])?;
    let Some(z) = q.db().get_zset(&argv[1], q.now)? else { return Ok(scan_reply(0, Vec::new())) };
    let opts = ScanArgs::parse(argv, 2, false)?;
    let mut items = Vec::new();
    let mut push = |m: &Bytes, s: f64| {
        if opts.matches(m) {
            items.push(Reply::Bulk(m.clone()));
            items.push(Reply::Bulk(float::g17_bytes(s)));
        }
    };
    // A listpack is returned whole, in order, whatever the cursor.
    let next = if z.listpack {
        z.iter().for_each(|(m, s)| push(m, s));
        0
    } else {
        let (next, found) = z.scores.scan(opts.cursor, opts.count);
        found.into_iter().for_each(|(m, s)| push(m, *s));
        next
    };
    Ok(scan_reply(next, items))
}

// ---------------------------------------------------------------------------
// ZUNION, ZINTER, ZDIFF, their STORE variants and ZINTERCARD

/// Which set operation (Redis's `SET_OP_*`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

/// How scores of one member in several inputs combine (`AGGREGATE`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

impl Aggregate {
    /// Redis's `zunionInterAggregate`: a sum that is NaN (inf + -inf) is 0;
    /// MIN and MAX keep the current value when the new one is NaN, and when
    /// both are zeros (so the first of 0 and -0 stays).
    fn fold(self, target: &mut f64, val: f64) {
        match self {
            Aggregate::Sum => {
                *target += val;
                if target.is_nan() {
                    *target = 0.0;
                }
            }
            Aggregate::Min => {
                if val < *target {
                    *target = val;
                }
            }
            Aggregate::Max => {
                if val > *target {
                    *target = val;
                }
            }
        }
    }
}

/// One input of a set operation: a zset, a set (every member scores 1, as
/// Redis allows) or a missing key (empty).
#[derive(Clone, Copy)]
enum Source<'a> {
    Missing,
    ZSet(&'a ZSetVal),
    Set(&'a SetVal),
}

impl Source<'_> {
    fn len(&self) -> usize {
        match self {
            Source::Missing => 0,
            Source::ZSet(z) => z.len(),
            Source::Set(s) => s.len(),
        }
    }

    fn score(&self, member: &[u8]) -> Option<f64> {
        match self {
            Source::Missing => None,
            Source::ZSet(z) => z.score(member),
            Source::Set(s) => s.contains(member).then_some(1.0),
        }
    }

    /// The members with their scores. (Redis walks a zset from its highest
    /// member down; no result depends on the order, which decides neither
    /// membership nor, since every member meets its inputs in input order,
    /// any score.)
    fn entries(&self) -> Vec<(Bytes, f64)> {
        match self {
            Source::Missing => Vec::new(),
            Source::ZSet(z) => z.iter().map(|(m, s)| (m.clone(), s)).collect(),
            Source::Set(s) => s.iter().map(|m| (m, 1.0)).collect(),
        }
    }

    /// True if both are the same key's value (Redis compares the objects).
    fn same(&self, other: &Source) -> bool {
        match (self, other) {
            (Source::ZSet(a), Source::ZSet(b)) => std::ptr::eq(*a, *b),
            (Source::Set(a), Source::Set(b)) => std::ptr::eq(*a, *b),
            _ => false,
        }
    }
}

/// The parsed arguments of a set operation.
struct SetOpArgs<'a> {
    /// The inputs with their weights, in key order.
    sources: Vec<(Source<'a>, f64)>,
    aggregate: Aggregate,
    withscores: bool,
    /// ZINTERCARD's LIMIT (0: none).
    limit: u64,
}

/// Redis's `zunionInterDiffGenericCommand` up to the computation: numkeys,
/// then the keys (WRONGTYPE beats a syntax error in the options), then the
/// options. `numkeys` is the index of the numkeys argument.
fn parse_setop<'a>(
    db: &'a Db,
    now: i64,
    argv: &[Bytes],
    numkeys: usize,
    op: SetOp,
    store: bool,
    card_only: bool,
) -> Res<SetOpArgs<'a>> {
    let setnum = args::int(&argv[numkeys])?;
    if setnum < 1 {
        let name = String::from_utf8_lossy(&argv[0]).to_ascii_lowercase();
        return Err(Reply::error(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        )));
    }
    if setnum > (argv.len() - (numkeys + 1)) as i64 {
        return Err(Reply::err(errors::SYNTAX));
    }
    let setnum = setnum as usize;
    let keys = &argv[numkeys + 1..numkeys + 1 + setnum];
    let mut sources = Vec::with_capacity(setnum);
    for key in keys {
        let source = match db.get(key, now) {
            None => Source::Missing,
            Some(Value::ZSet(z)) => Source::ZSet(z),
            Some(Value::Set(s)) => Source::Set(s),
            Some(_) => return Err(Reply::err(errors::WRONGTYPE)),
        };
        sources.push((source, 1.0));
    }
    let mut out = SetOpArgs { sources, aggregate: Aggregate::Sum, withscores: false, limit: 0 };
    let mut j = numkeys + 1 + setnum;
    while j < argv.len() {
        let remaining = argv.len() - j;
        let opt = &argv[j];
        if op != SetOp::Diff && !card_only && remaining > setnum && is(opt, "weights") {
            for (i, w) in argv[j + 1..j + 1 + setnum].iter().enumerate() {
                out.sources[i].1 =
                    float::parse_f64(w).ok_or(Reply::err("ERR weight value is not a float"))?;
            }
            j += 1 + setnum;
        } else if op != SetOp::Diff && !card_only && remaining >= 2 && is(opt, "aggregate") {
            let how = &argv[j + 1];
            out.aggregate = if is(how, "sum") {
                Aggregate::Sum
            } else if is(how, "min") {
                Aggregate::Min
            } else if is(how, "max") {
                Aggregate::Max
            } else {
                return Err(Reply::err(errors::SYNTAX));
            };
            j += 2;
        } else if !store && !card_only && is(opt, "withscores") {
            out.withscores = true;
            j += 1;
        } else if card_only && remaining >= 2 && is(opt, "limit") {
            out.limit = match args::parse_i64(&argv[j + 1]) {
                Some(n) if n >= 0 => n as u64,
                _ => return Err(Reply::err("ERR LIMIT can't be negative")),
            };
            j += 2;
        } else {
            return Err(Reply::err(errors::SYNTAX));
        }
    }
    Ok(out)
}

/// The result of a set operation, unordered (the caller sorts or stores
/// it). With `card_only` only its size counts (up to `limit`), and the
/// members are not collected.
fn compute_setop(a: &SetOpArgs, op: SetOp, card_only: bool) -> (Vec<(Bytes, f64)>, u64) {
    let mut sources = a.sources.clone();
    // Redis orders the inputs by size (a stable sort), which decides the
    // order every member's scores are combined in.
    if op != SetOp::Diff {
        sources.sort_by_key(|(s, _)| s.len());
    }
    let mut out = Vec::new();
    match op {
        SetOp::Inter => {
            let (first, w0) = sources[0];
            if first.len() == 0 {
                return (out, 0);
            }
            let mut card = 0u64;
            for (member, s0) in first.entries() {
                let mut score = w0 * s0;
                if score.is_nan() {
                    score = 0.0;
                }
                let mut everywhere = true;
                for (source, w) in &sources[1..] {
                    let found = if source.same(&first) { Some(s0) } else { source.score(&member) };
                    match found {
                        Some(v) => a.aggregate.fold(&mut score, v * w),
                        None => {
                            everywhere = false;
                            break;
                        }
                    }
                }
                if !everywhere {
                    continue;
                }
                card += 1;
                if card_only {
                    if a.limit != 0 && card >= a.limit {
                        break;
                    }
                } else {
                    out.push((member, score));
                }
            }
            (out, card)
        }
        SetOp::Union => {
            let mut acc: std::collections::HashMap<Bytes, f64> = std::collections::HashMap::new();
            let mut order = Vec::new();
            for (source, w) in &sources {
                for (member, s) in source.entries() {
                    let mut score = w * s;
                    if score.is_nan() {
                        score = 0.0;
                    }
                    match acc.get_mut(&member) {
                        Some(total) => a.aggregate.fold(total, score),
                        None => {
                            acc.insert(member.clone(), score);
                            order.push(member);
                        }
                    }
                }
            }
            let out: Vec<(Bytes, f64)> = order.into_iter().map(|m| (m.clone(), acc[&m])).collect();
            let card = out.len() as u64;
            (out, card)
        }
        SetOp::Diff => {
            let (first, _) = sources[0];
            // Subtracting the first input from itself leaves nothing.
            if first.len() == 0 || sources[1..].iter().any(|(s, _)| s.same(&first)) {
                return (out, 0);
            }
            for (member, score) in first.entries() {
                if !sources[1..].iter().any(|(s, _)| s.score(&member).is_some()) {
                    out.push((member, score));
                }
            }
            let card = out.len() as u64;
            (out, card)
        }
    }
}

/// Sorts a result the way a zset orders it: by score, then member.
fn sort_result(entries: &mut [(Bytes, f64)]) {
    entries.sort_by(|a, b| Score(a.1).cmp(&Score(b.1)).then_with(|| a.0.cmp(&b.0)));
}

/// ZUNION, ZINTER, ZDIFF: the result, ascending, with or without scores.
fn setop_reply(q: &mut Query, argv: &[Bytes], op: SetOp) -> Res<Reply> {
    let a = parse_setop(q.db(), q.now, argv, 1, op, false, false)?;
    let (mut entries, _) = compute_setop(&a, op, false);
    sort_result(&mut entries);
    Ok(if a.withscores {
        Reply::Pairs(entries.into_iter().map(|(m, s)| (Reply::Bulk(m), Reply::Double(s))).collect())
    } else {
        Reply::Array(entries.into_iter().map(|(m, _)| Reply::Bulk(m)).collect())
    })
}

/// ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE.
fn setop_store(x: &mut Exec, argv: &[Bytes], op: SetOp, event: &'static str) -> Res<Reply> {
    let a = parse_setop(&x.dbs[x.db], x.now, argv, 2, op, true, false)?;
    let (entries, _) = compute_setop(&a, op, false);
    let numkeys = a.sources.len();
    drop(a);
    Ok(store_zset(x, &argv[1], &argv[3..3 + numkeys], entries, event))
}

/// A zset built the way Redis builds a computed result: as a skiplist,
/// converted to a listpack if it is small enough (`zsetConvertToListpack
/// IfNeeded`, which turns a -0 score into 0 like every listpack insert).
fn computed_zset(entries: Vec<(Bytes, f64)>) -> ZSetVal {
    let small = entries.len() <= crate::encodings::zset_max_listpack_entries()
        && entries.iter().all(|(m, _)| m.len() <= crate::encodings::zset_max_listpack_value());
    let mut z = ZSetVal { listpack: small, ..ZSetVal::default() };
    for (m, s) in entries {
        store_score(&mut z, &m, s);
    }
    z
}

/// Stores a computed result at `dst` (no TTL) with `event`, or deletes
/// `dst` if the result is empty; replies with the result's size.
fn store_zset(
    x: &mut Exec,
    dst: &Bytes,
    sources: &[Bytes],
    entries: Vec<(Bytes, f64)>,
    event: &'static str,
) -> Reply {
    if entries.is_empty() {
        store_nothing(x, dst, sources);
        return Reply::Int(0);
    }
    let z = computed_zset(entries);
    store_value(x, dst, z, event)
}

/// Redis's `setKey` of a zset followed by the command's event.
fn store_value(x: &mut Exec, dst: &Bytes, z: ZSetVal, event: &'static str) -> Reply {
    let len = z.len();
    let adds = adds_key(x, x.db, dst);
    x.db().set(dst, Value::ZSet(z));
    let db = x.db;
    notify_new(x, db, dst, adds);
    x.modified(dst);
    x.notify(Class::ZSet, event, dst);
    Reply::Int(len as i64)
}

/// ZUNION numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]
fn zunion(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    setop_reply(q, argv, SetOp::Union)
}

/// ZINTER numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]
fn zinter(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    setop_reply(q, argv, SetOp::Inter)
}

/// ZDIFF numkeys key [key ...] [WITHSCORES]
fn zdiff(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    setop_reply(q, argv, SetOp::Diff)
}

/// ZUNIONSTORE destination numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE SUM|MIN|MAX]
fn zunionstore(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    setop_store(x, argv, SetOp::Union, "zunionstore")
}

/// ZINTERSTORE destination numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE SUM|MIN|MAX]
fn zinterstore(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    setop_store(x, argv, SetOp::Inter, "zinterstore")
}

/// ZDIFFSTORE destination numkeys key [key ...]
fn zdiffstore(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    setop_store(x, argv, SetOp::Diff, "zdiffstore")
}

/// ZINTERCARD numkeys key [key ...] [LIMIT limit]
fn zintercard(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let a = parse_setop(q.db(), q.now, argv, 1, SetOp::Inter, false, true)?;
    Ok(Reply::Int(compute_setop(&a, SetOp::Inter, true).1 as i64))
}

// ---------------------------------------------------------------------------
// ZRANGESTORE

/// ZRANGESTORE dst src min max [BYSCORE | BYLEX] [REV] [LIMIT offset count]
///
/// Built as Redis's store handler builds it: a rank range longer than the
/// listpack limit starts as a skiplist, anything else as a listpack that
/// converts when it outgrows the limits (so a -0 stored before the
/// conversion reads back as 0).
fn zrangestore(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let ra = parse_range(argv, 2, true, RangeBy::Auto, Direction::Auto)?;
    let now = x.now;
    let (entries, skiplist): (Vec<(Bytes, f64)>, bool) = match x.dbs[x.db].get(&argv[2], now) {
        None => (Vec::new(), false),
        Some(Value::ZSet(z)) => {
            let found = ra.entries(z);
            let skiplist = matches!(ra.parsed, Parsed::Rank(..))
                && found.len() > crate::encodings::zset_max_listpack_entries();
            (found.into_iter().map(|(m, s)| (m.clone(), s)).collect(), skiplist)
        }
        Some(_) => return Err(Reply::err(errors::WRONGTYPE)),
    };
    let dst = &argv[1];
    if entries.is_empty() {
        store_nothing(x, dst, &argv[2..3]);
        return Ok(Reply::Int(0));
    }
    let mut z = ZSetVal { listpack: !skiplist, ..ZSetVal::default() };
    for (m, s) in entries {
        store_score(&mut z, &m, s);
    }
    Ok(store_value(x, dst, z, "zrangestore"))
}

// ---------------------------------------------------------------------------
// ZRANDMEMBER

/// ZRANDMEMBER with a count picks until it has this many times fewer
/// distinct members than the zset holds; closer to the whole zset it drops
/// random members instead (Redis's `ZRANDMEMBER_SUB_STRATEGY_MUL`).
const ZRANDMEMBER_SUB_STRATEGY_MUL: u64 = 3;

/// ZRANDMEMBER key [count [WITHSCORES]]
///
/// Every pick is uniform: the `n`-th member of the zset's member map for a
/// uniform `n` (see [`KeyMap::pick`](crate::keymap::KeyMap::pick)), drawn from
/// the read's seed, so a replica answers deterministically.
fn zrandmember(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    if argv.len() >= 3 {
        let count = args::int(&argv[2])?;
        if count == i64::MIN {
            return Err(Reply::err(
                "ERR value is out of range, value must between -9223372036854775807 and \
                 9223372036854775807",
            ));
        }
        if argv.len() > 4 || (argv.len() == 4 && !is(&argv[3], "withscores")) {
            return Err(Reply::err(errors::SYNTAX));
        }
        let withscores = argv.len() == 4;
        if withscores && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
            return Err(Reply::err("ERR value is out of range"));
        }
        return zrandmember_count(q, &argv[1], count, withscores);
    }
    let Some(z) = q.db().get_zset(&argv[1], q.now)? else { return Ok(Reply::Nil) };
    let (m, _) = z.scores.pick(q.rng.next_u64()).expect("a zset is never empty");
    Ok(Reply::Bulk(m.clone()))
}

/// Redis's `zrandmemberWithCountCommand`.
fn zrandmember_count(q: &mut Query, key: &[u8], count: i64, withscores: bool) -> Res<Reply> {
    let Some(z) = q.db().get_zset(key, q.now)? else { return Ok(Reply::Array(Vec::new())) };
    if count == 0 {
        return Ok(Reply::Array(Vec::new()));
    }
    let size = z.len();
    let rng = &mut q.rng;
    let picks: Vec<(&Bytes, f64)> = if count < 0 || count == 1 {
        // Case 1: independent picks, repeats allowed.
        if count.unsigned_abs() > args::MAX_RANDOM_REPLY {
            return Err(Reply::err(args::COUNT_TOO_LARGE));
        }
        (0..count.unsigned_abs())
            .map(|_| {
                let (m, s) = z.scores.pick(rng.next_u64()).expect("not empty");
                (m, *s)
            })
            .collect()
    } else if count as u64 >= size as u64 {
        // Case 2: the whole zset, from its highest member down, as Redis
        // walks it.
        z.iter().rev().collect()
    } else if count as u64 * ZRANDMEMBER_SUB_STRATEGY_MUL > size as u64 {
        // Case 3: drop random members until `count` are left (a partial
        // Fisher-Yates shuffle of the positions), replied in map order.
        let count = count as usize;
        let mut idx: Vec<usize> = (0..size).collect();
        for i in 0..size - count {
            let j = i + rng.below(size - i);
            idx.swap(i, j);
        }
        let mut kept = idx.split_off(size - count);
        kept.sort_unstable();
        kept.into_iter()
            .map(|n| {
                let (m, s) = z.scores.nth(n).expect("in range");
                (m, *s)
            })
            .collect()
    } else {
        // Case 4: pick until `count` distinct members, in pick order.
        let count = count as usize;
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            let n = rng.below(size);
            if seen.insert(n) {
                let (m, s) = z.scores.nth(n).expect("in range");
                out.push((m, *s));
            }
        }
        out
    };
    Ok(if withscores {
        Reply::Pairs(picks.into_iter().map(|(m, s)| member_score(m, s)).collect())
    } else {
        Reply::Array(picks.into_iter().map(|(m, _)| Reply::Bulk(m.clone())).collect())
    })
}

#[cfg(test)]
mod tests {
    //! Expected replies were captured from a real redis-server 7.0.15 (RESP3,
    //! so doubles, nulls and nested pairs keep their types).

    use std::collections::BTreeSet;

    use bytes::Bytes;

    use crate::testing::*;
    use crate::Reply;

    fn pairs(items: &[(&str, f64)]) -> Reply {
        Reply::Pairs(items.iter().map(|(m, s)| (bulk(m), Reply::Double(*s))).collect())
    }

    /// Compares what the wire shows: an empty list of pairs is an empty
    /// array, and doubles compare by their `%.17g` text (so -0 is not 0).
    fn normalize(reply: Reply) -> Reply {
        match reply {
            Reply::Pairs(p) if p.is_empty() => Reply::Array(Vec::new()),
            Reply::Pairs(p) => {
                Reply::Pairs(p.into_iter().map(|(m, s)| (normalize(m), normalize(s))).collect())
            }
            Reply::Array(items) => Reply::Array(items.into_iter().map(normalize).collect()),
            Reply::Double(d) => Reply::error(format!("double {}", crate::float::format_g17(d))),
            other => other,
        }
    }

    #[track_caller]
    fn check(h: &mut Harness, line: &str, want: Reply) {
        assert_eq!(normalize(h.run(line)), normalize(want), "{line}");
    }

    /// The bulk strings of an Array reply.
    fn bulks(reply: Reply) -> Vec<Bytes> {
        match reply {
            Reply::Array(items) => items
                .into_iter()
                .map(|r| match r {
                    Reply::Bulk(b) => b,
                    other => panic!("not a bulk: {other:?}"),
                })
                .collect(),
            other => panic!("not an array: {other:?}"),
        }
    }

    #[test]
    fn zrank_withscore_documented_examples() {
        // The examples of redis.io's ZRANK and ZREVRANK pages (Redis 7.2's
        // WITHSCORE), and t_zset.c's errors: a fifth argument is an arity
        // error, another fourth one a syntax error, and a missing key or
        // member is a nil array when WITHSCORE is given.
        let mut h = Harness::new();
        check(&mut h, "ZADD myzset 1 one 2 two 3 three", int(3));
        check(&mut h, "ZRANK myzset three", int(2));
        check(&mut h, "ZRANK myzset four", Reply::Nil);
        check(
            &mut h,
            "ZRANK myzset three WITHSCORE",
            Reply::Array(vec![int(2), Reply::Double(3.0)]),
        );
        check(&mut h, "ZRANK myzset four withscore", Reply::NilArray);
        check(&mut h, "ZREVRANK myzset one", int(2));
        check(&mut h, "ZREVRANK myzset four", Reply::Nil);
        check(
            &mut h,
            "ZREVRANK myzset three WITHSCORE",
            Reply::Array(vec![int(0), Reply::Double(3.0)]),
        );
        check(&mut h, "ZREVRANK myzset four WITHSCORE", Reply::NilArray);
        check(&mut h, "ZRANK nokey a WITHSCORE", Reply::NilArray);
        check(&mut h, "ZRANK myzset one WITHSCORES", err("ERR syntax error"));
        check(
            &mut h,
            "ZRANK myzset one WITHSCORE x",
            err("ERR wrong number of arguments for 'zrank' command"),
        );
        h.run("SET str x");
        check(
            &mut h,
            "ZRANK str a WITHSCORE",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
    }

    #[test]
    fn zadd_options_and_errors() {
        let mut h = Harness::new();
        h.run("SET str x");
        check(&mut h, "ZADD z", err("ERR wrong number of arguments for 'zadd' command"));
        check(&mut h, "ZADD z 1", err("ERR wrong number of arguments for 'zadd' command"));
        check(
            &mut h,
            "ZADD z nx xx 1 a",
            err("ERR XX and NX options at the same time are not compatible"),
        );
        check(
            &mut h,
            "ZADD z nx gt 1 a",
            err("ERR GT, LT, and/or NX options at the same time are not compatible"),
        );
        check(
            &mut h,
            "ZADD z nx lt 1 a",
            err("ERR GT, LT, and/or NX options at the same time are not compatible"),
        );
        check(
            &mut h,
            "ZADD z gt lt 1 a",
            err("ERR GT, LT, and/or NX options at the same time are not compatible"),
        );
        check(&mut h, "ZADD z xx gt 1 a", int(0));
        check(&mut h, "EXISTS z", int(0));
        check(
            &mut h,
            "ZADD z incr 1 a 2 b",
            err("ERR INCR option supports a single increment-element pair"),
        );
        check(&mut h, "ZADD z nx xx 1 a 2", err("ERR syntax error"));
        check(
            &mut h,
            "ZADD z nx xx incr 1 a 2 b",
            err("ERR XX and NX options at the same time are not compatible"),
        );
        check(&mut h, "ZADD z abc a", err("ERR value is not a valid float"));
        check(&mut h, "ZADD z 1 a abc b", err("ERR value is not a valid float"));
        check(&mut h, "ZADD str abc a", err("ERR value is not a valid float"));
        check(
            &mut h,
            "ZADD str 1 a",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
        check(&mut h, "ZADD z nan a", err("ERR value is not a valid float"));
        check(&mut h, "ZADD z 1e400 a", err("ERR value is not a valid float"));
        check(&mut h, "ZADD z \" 1\" a", err("ERR value is not a valid float"));
        check(&mut h, "ZADD z \"\" a", err("ERR value is not a valid float"));
        check(&mut h, "ZADD z 1 a 2", err("ERR syntax error"));
        check(&mut h, "ZADD z xx 1 a", int(0));
        check(&mut h, "ZADD z xx incr 1 a", Reply::Nil);
        check(&mut h, "EXISTS z", int(0));
        check(&mut h, "ZADD z incr 1 a", Reply::Double(1.0));
        check(&mut h, "ZADD z incr inf a", Reply::Double(f64::INFINITY));
        check(&mut h, "ZADD z incr -inf a", err("ERR resulting score is not a number (NaN)"));
        check(&mut h, "ZSCORE z a", Reply::Double(f64::INFINITY));
        check(&mut h, "ZADD z 1.1 b", int(1));
        check(&mut h, "ZSCORE z b", Reply::Double(1.1));
        check(&mut h, "ZADD z ch 1.1 b 2 c", int(1));
        check(&mut h, "ZADD z ch 5 b 2 c 3 d", int(2));
        check(&mut h, "ZADD z nx incr 5 b", Reply::Nil);
        check(&mut h, "ZADD z gt incr -1 b", Reply::Nil);
        check(&mut h, "ZADD z lt incr -1 b", Reply::Double(4.0));
        check(&mut h, "ZADD z incr 0 b", Reply::Double(4.0));
        check(&mut h, "ZADD z gt ch 0 c 3 d 9 e", int(1));
        check(&mut h, "ZADD z lt ch 10 c 1 d", int(1));
        check(&mut h, "ZADD z xx ch 7 c 7 new", int(1));
        check(&mut h, "ZADD z XX LT CH 6 c", int(1));
        check(&mut h, "ZADD z NX 100 c 100 f", int(1));
        check(&mut h, "ZADD z 0x10 hex", int(1));
        check(&mut h, "ZADD z -1e3 sci", int(1));
        check(&mut h, "ZADD z +inf top -inf bottom", int(2));
        check(
            &mut h,
            "ZRANGE z 0 -1 WITHSCORES",
            pairs(&[
                ("bottom", f64::NEG_INFINITY),
                ("sci", -1000.0),
                ("d", 1.0),
                ("b", 4.0),
                ("c", 6.0),
                ("e", 9.0),
                ("hex", 16.0),
                ("f", 100.0),
                ("a", f64::INFINITY),
                ("top", f64::INFINITY),
            ]),
        );
        check(&mut h, "ZCARD z", int(10));
        check(
            &mut h,
            "ZADD str xx 1 a",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
    }

    #[test]
    fn zincrby_cases() {
        let mut h = Harness::new();
        h.run("SET str x");
        check(&mut h, "ZINCRBY z nx m", err("ERR syntax error"));
        check(&mut h, "ZINCRBY z incr m", err("ERR syntax error"));
        check(&mut h, "ZINCRBY z abc m", err("ERR value is not a valid float"));
        check(&mut h, "ZINCRBY z 1 m", Reply::Double(1.0));
        check(&mut h, "ZINCRBY z 1.5 m", Reply::Double(2.5));
        check(&mut h, "ZINCRBY z 0.1 m", Reply::Double(2.6));
        check(&mut h, "ZINCRBY z -2.6 m", Reply::Double(0.0));
        check(
            &mut h,
            "ZINCRBY str 1 m",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
        check(&mut h, "ZINCRBY z inf m", Reply::Double(f64::INFINITY));
        check(&mut h, "ZINCRBY z -inf m", err("ERR resulting score is not a number (NaN)"));
        check(&mut h, "ZINCRBY z 1 m", Reply::Double(f64::INFINITY));
        check(&mut h, "ZSCORE z m", Reply::Double(f64::INFINITY));
        check(
            &mut h,
            "ZINCRBY z 1 m 2",
            err("ERR wrong number of arguments for 'zincrby' command"),
        );
    }

    #[test]
    fn negative_zero_scores() {
        let mut h = Harness::new();
        check(&mut h, "ZADD lp -0 a", int(1));
        check(&mut h, "ZSCORE lp a", Reply::Double(0.0));
        check(&mut h, "ZINCRBY lp -0 b", Reply::Double(-0.0));
        check(&mut h, "ZSCORE lp b", Reply::Double(0.0));
        check(&mut h, "ZADD lp 0 c", int(1));
        check(&mut h, "ZADD lp -0 c", int(0));
        check(&mut h, "ZINCRBY lp -0 c", Reply::Double(0.0));
        check(&mut h, "ZRANGE lp 0 -1 WITHSCORES", pairs(&[("a", 0.0), ("b", 0.0), ("c", 0.0)]));
        check(
            &mut h,
            "ZSCAN lp 0",
            Reply::Array(vec![bulk("0"), array(&["a", "0", "b", "0", "c", "0"])]),
        );
        h.run("ZADD sk 1 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        check(&mut h, "OBJECT ENCODING sk", bulk("skiplist"));
        check(&mut h, "ZADD sk -0 negz", int(1));
        check(&mut h, "ZSCORE sk negz", Reply::Double(-0.0));
        check(&mut h, "ZINCRBY sk -0 w", Reply::Double(-0.0));
        check(&mut h, "ZADD sk incr -0 w2", Reply::Double(-0.0));
        check(
            &mut h,
            "ZRANGE sk 0 2 WITHSCORES",
            pairs(&[("negz", -0.0), ("w", -0.0), ("w2", -0.0)]),
        );
        check(
            &mut h,
            "ZMSCORE sk negz w nothere",
            Reply::Array(vec![Reply::Double(-0.0), Reply::Double(-0.0), Reply::Nil]),
        );
    }

    #[test]
    fn zrem_zscore_zmscore_zcard_zrank() {
        let mut h = Harness::new();
        h.run("SET str x");
        h.run("ZADD z 1 a 2 b 3 c 3 d");
        check(&mut h, "ZSCORE z a", Reply::Double(1.0));
        check(&mut h, "ZSCORE z x", Reply::Nil);
        check(&mut h, "ZSCORE nokey a", Reply::Nil);
        check(
            &mut h,
            "ZSCORE str a",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
        check(
            &mut h,
            "ZMSCORE z a x c",
            Reply::Array(vec![Reply::Double(1.0), Reply::Nil, Reply::Double(3.0)]),
        );
        check(&mut h, "ZMSCORE nokey a b", Reply::Array(vec![Reply::Nil, Reply::Nil]));
        check(
            &mut h,
            "ZMSCORE str a",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
        check(&mut h, "ZCARD z", int(4));
        check(&mut h, "ZCARD nokey", int(0));
        check(
            &mut h,
            "ZCARD str",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
        check(&mut h, "ZRANK z a", int(0));
        check(&mut h, "ZRANK z d", int(3));
        check(&mut h, "ZRANK z x", Reply::Nil);
        check(&mut h, "ZRANK nokey a", Reply::Nil);
        check(
            &mut h,
            "ZRANK str a",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
        check(&mut h, "ZREVRANK z a", int(3));
        check(&mut h, "ZREVRANK z d", int(0));
        check(&mut h, "ZREVRANK z c", int(1));
        check(&mut h, "ZREVRANK z x", Reply::Nil);
        check(&mut h, "ZREVRANK nokey a", Reply::Nil);
        check(
            &mut h,
            "ZREVRANK str a",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
        check(&mut h, "ZREM z a x", int(1));
        check(&mut h, "ZREM nokey a", int(0));
        check(
            &mut h,
            "ZREM str a",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
        check(&mut h, "ZREM z b c d b", int(3));
        check(&mut h, "EXISTS z", int(0));
    }

    #[test]
    fn zrange_by_rank() {
        let mut h = Harness::new();
        h.run("SET str x");
        h.run("ZADD z 1 a 2 b 3 c 4 d 5 e");
        check(&mut h, "ZRANGE z 0 -1", array(&["a", "b", "c", "d", "e"]));
        check(
            &mut h,
            "ZRANGE z 0 -1 WITHSCORES",
            pairs(&[("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 4.0), ("e", 5.0)]),
        );
        check(&mut h, "ZRANGE z 1 2 withscores withscores", pairs(&[("b", 2.0), ("c", 3.0)]));
        check(&mut h, "ZRANGE z -2 -1", array(&["d", "e"]));
        check(&mut h, "ZRANGE z -100 100", array(&["a", "b", "c", "d", "e"]));
        check(&mut h, "ZRANGE z 3 2", Reply::Array(vec![]));
        check(&mut h, "ZRANGE z 5 10", Reply::Array(vec![]));
        check(&mut h, "ZRANGE z -1 -2", Reply::Array(vec![]));
        check(&mut h, "ZRANGE z 9223372036854775807 -9223372036854775808", Reply::Array(vec![]));
        check(
            &mut h,
            "ZRANGE z -9223372036854775808 9223372036854775807",
            array(&["a", "b", "c", "d", "e"]),
        );
        check(&mut h, "ZRANGE z 0 -1 REV", array(&["e", "d", "c", "b", "a"]));
        check(&mut h, "ZRANGE z 0 1 REV WITHSCORES", pairs(&[("e", 5.0), ("d", 4.0)]));
        check(&mut h, "ZRANGE z -2 -1 REV", array(&["b", "a"]));
        check(&mut h, "ZREVRANGE z 0 1", array(&["e", "d"]));
        check(&mut h, "ZREVRANGE z 0 1 WITHSCORES", pairs(&[("e", 5.0), ("d", 4.0)]));
        check(&mut h, "ZREVRANGE z 0 1 REV", err("ERR syntax error"));
        check(&mut h, "ZREVRANGE z 0 1 BYSCORE", err("ERR syntax error"));
        check(&mut h, "ZREVRANGE z 0 1 LIMIT 0 1", err("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"));
        check(&mut h, "ZRANGE z 0 1 LIMIT 0 1", err("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"));
        check(&mut h, "ZRANGE z 0 1 LIMIT 0 -1", array(&["a", "b"]));
        check(&mut h, "ZRANGE z 0 1 LIMIT 1 -1", array(&["a", "b"]));
        check(&mut h, "ZRANGE z 0 1 LIMIT 0", err("ERR syntax error"));
        check(
            &mut h,
            "ZRANGE z 0 1 LIMIT abc 1",
            err("ERR value is not an integer or out of range"),
        );
        check(
            &mut h,
            "ZRANGE z 0 1 LIMIT 1 abc",
            err("ERR value is not an integer or out of range"),
        );
        check(
            &mut h,
            "ZRANGE str 0 1 LIMIT abc 1",
            err("ERR value is not an integer or out of range"),
        );
        check(&mut h, "ZRANGE str 0 1 foo", err("ERR syntax error"));
        check(
            &mut h,
            "ZRANGE str 0 1",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
        check(&mut h, "ZRANGE str a b", err("ERR value is not an integer or out of range"));
        check(&mut h, "ZRANGE nokey a b", err("ERR value is not an integer or out of range"));
        check(&mut h, "ZRANGE nokey 0 -1", Reply::Array(vec![]));
        check(&mut h, "ZRANGE nokey 0 -1 WITHSCORES", Reply::Array(vec![]));
        check(&mut h, "ZRANGE z a 1", err("ERR value is not an integer or out of range"));
        check(&mut h, "ZRANGE z 0 -1 BYSCORE BYLEX", err("ERR syntax error"));
        check(&mut h, "ZRANGE z 0 -1 REV REV", err("ERR syntax error"));
        check(&mut h, "ZRANGE z 0 -1 BYSCORE BYSCORE", err("ERR syntax error"));
        check(&mut h, "ZRANGE z 0 1 x", err("ERR syntax error"));
    }

    #[test]
    fn zrange_by_score() {
        let mut h = Harness::new();
        h.run("SET str x");
        h.run("ZADD z 1 a 2 b 3 c 4 d 5 e -inf lo +inf hi");
        check(&mut h, "ZRANGE z 1 3 BYSCORE", array(&["a", "b", "c"]));
        check(&mut h, "ZRANGE z (1 3 BYSCORE WITHSCORES", pairs(&[("b", 2.0), ("c", 3.0)]));
        check(&mut h, "ZRANGE z 1 (3 BYSCORE", array(&["a", "b"]));
        check(&mut h, "ZRANGE z (1 (2 BYSCORE", Reply::Array(vec![]));
        check(&mut h, "ZRANGE z (2 (2 BYSCORE", Reply::Array(vec![]));
        check(&mut h, "ZRANGE z 2 2 BYSCORE", array(&["b"]));
        check(&mut h, "ZRANGE z 3 1 BYSCORE", Reply::Array(vec![]));
        check(&mut h, "ZRANGE z 3 1 BYSCORE REV", array(&["c", "b", "a"]));
        check(&mut h, "ZRANGE z -inf +inf BYSCORE", array(&["lo", "a", "b", "c", "d", "e", "hi"]));
        check(&mut h, "ZRANGE z -inf -inf BYSCORE", array(&["lo"]));
        check(&mut h, "ZRANGE z +inf +inf BYSCORE WITHSCORES", pairs(&[("hi", f64::INFINITY)]));
        check(&mut h, "ZRANGE z (-inf (+inf BYSCORE", array(&["a", "b", "c", "d", "e"]));
        check(&mut h, "ZRANGE z -inf +inf BYSCORE LIMIT 1 2", array(&["a", "b"]));
        check(&mut h, "ZRANGE z -inf +inf BYSCORE LIMIT 1 2 REV WITHSCORES", Reply::Array(vec![]));
        check(&mut h, "ZRANGE z a b BYSCORE", err("ERR min or max is not a float"));
        check(&mut h, "ZRANGE str a b BYSCORE", err("ERR min or max is not a float"));
        check(
            &mut h,
            "ZRANGE str 0 1 BYSCORE",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
        check(&mut h, "ZRANGEBYSCORE z 0 10 REV", err("ERR syntax error"));
        check(&mut h, "ZRANGEBYSCORE z 0 10 BYSCORE", err("ERR syntax error"));
        check(&mut h, "ZRANGEBYSCORE z 0 10 BYLEX", err("ERR syntax error"));
        check(&mut h, "ZRANGEBYSCORE z -inf +inf LIMIT -1 2", Reply::Array(vec![]));
        check(
            &mut h,
            "ZRANGEBYSCORE z -inf +inf LIMIT 1 -5",
            array(&["a", "b", "c", "d", "e", "hi"]),
        );
        check(&mut h, "ZRANGEBYSCORE z -inf +inf LIMIT 0 0", Reply::Array(vec![]));
        check(&mut h, "ZRANGEBYSCORE z -inf +inf LIMIT 7 1", Reply::Array(vec![]));
        check(&mut h, "ZRANGEBYSCORE z -inf +inf LIMIT 6 1", array(&["hi"]));
        check(&mut h, "ZRANGEBYSCORE z 4 +inf LIMIT 2 5", array(&["hi"]));
        check(&mut h, "ZRANGEBYSCORE z 1 2 WITHSCORES LIMIT 0 1", pairs(&[("a", 1.0)]));
        check(&mut h, "ZRANGEBYSCORE z \"\" \"\"", Reply::Array(vec![]));
        check(&mut h, "ZRANGEBYSCORE z ( 2", array(&["a", "b"]));
        check(&mut h, "ZRANGEBYSCORE z \" 1\" \"2 \"", err("ERR min or max is not a float"));
        check(&mut h, "ZRANGEBYSCORE z \" 1\" \" 2\"", array(&["a", "b"]));
        check(&mut h, "ZRANGEBYSCORE z 1e400 -1e400", Reply::Array(vec![]));
        check(
            &mut h,
            "ZRANGEBYSCORE z -1e400 1e400",
            array(&["lo", "a", "b", "c", "d", "e", "hi"]),
        );
        check(&mut h, "ZRANGEBYSCORE z 1e-400 1", array(&["a"]));
        check(&mut h, "ZRANGEBYSCORE z nan 1", err("ERR min or max is not a float"));
        check(&mut h, "ZRANGEBYSCORE z 1 (nan", err("ERR min or max is not a float"));
        check(&mut h, "ZRANGEBYSCORE z 0x1 0x3", array(&["a", "b", "c"]));
        check(&mut h, "ZRANGEBYSCORE z 1 x", err("ERR min or max is not a float"));
        check(&mut h, "ZRANGEBYSCORE z ((1 2", err("ERR min or max is not a float"));
        check(&mut h, "ZRANGEBYSCORE z [1 2", err("ERR min or max is not a float"));
        check(&mut h, "ZRANGEBYSCORE nokey 1 x", err("ERR min or max is not a float"));
        check(&mut h, "ZRANGEBYSCORE nokey 0 1", Reply::Array(vec![]));
        check(&mut h, "ZRANGEBYSCORE z 0 1 LIMIT", err("ERR syntax error"));
        check(&mut h, "ZREVRANGEBYSCORE z 3 1", array(&["c", "b", "a"]));
        check(&mut h, "ZREVRANGEBYSCORE z 1 3", Reply::Array(vec![]));
        check(&mut h, "ZREVRANGEBYSCORE z (3 1 WITHSCORES", pairs(&[("b", 2.0), ("a", 1.0)]));
        check(
            &mut h,
            "ZREVRANGEBYSCORE z +inf -inf LIMIT 1 2 WITHSCORES",
            pairs(&[("e", 5.0), ("d", 4.0)]),
        );
        check(&mut h, "ZREVRANGEBYSCORE z +inf (5", array(&["hi"]));
        check(&mut h, "ZREVRANGEBYSCORE z 2.5 -inf", array(&["b", "a", "lo"]));
        check(&mut h, "ZREVRANGEBYSCORE z +inf -inf LIMIT 6 5", array(&["lo"]));
        check(&mut h, "ZREVRANGEBYSCORE z 0 10 REV", err("ERR syntax error"));
    }

    #[test]
    fn zrange_by_lex() {
        let mut h = Harness::new();
        h.run("SET str x");
        h.run("ZADD z 0 a 0 b 0 c 0 d 0 e 0 ee");
        check(&mut h, "ZRANGE z - + BYLEX", array(&["a", "b", "c", "d", "e", "ee"]));
        check(&mut h, "ZRANGE z + - BYLEX", Reply::Array(vec![]));
        check(&mut h, "ZRANGE z - - BYLEX", Reply::Array(vec![]));
        check(&mut h, "ZRANGE z + + BYLEX", Reply::Array(vec![]));
        check(&mut h, "ZRANGE z [b (d BYLEX", array(&["b", "c"]));
        check(&mut h, "ZRANGE z (b [d BYLEX LIMIT 1 5", array(&["d"]));
        check(&mut h, "ZRANGE z [d (b BYLEX REV", array(&["d", "c"]));
        check(&mut h, "ZRANGE z + [c BYLEX REV", array(&["ee", "e", "d", "c"]));
        check(&mut h, "ZRANGE z (e + BYLEX", array(&["ee"]));
        check(&mut h, "ZRANGE z [e [e BYLEX", array(&["e"]));
        check(&mut h, "ZRANGE z (e (e BYLEX", Reply::Array(vec![]));
        check(&mut h, "ZRANGE z [bb [dd BYLEX", array(&["c", "d"]));
        check(&mut h, "ZRANGE z \"\" + BYLEX", err("ERR min or max not valid string range item"));
        check(&mut h, "ZRANGE z -x + BYLEX", err("ERR min or max not valid string range item"));
        check(&mut h, "ZRANGE z +x + BYLEX", err("ERR min or max not valid string range item"));
        check(&mut h, "ZRANGE z [ + BYLEX", array(&["a", "b", "c", "d", "e", "ee"]));
        check(&mut h, "ZRANGE z ( + BYLEX", array(&["a", "b", "c", "d", "e", "ee"]));
        check(&mut h, "ZRANGE z a + BYLEX", err("ERR min or max not valid string range item"));
        check(&mut h, "ZRANGE str a + BYLEX", err("ERR min or max not valid string range item"));
        check(
            &mut h,
            "ZRANGE str - + BYLEX",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
        check(
            &mut h,
            "ZRANGE z - + BYLEX WITHSCORES",
            err("ERR syntax error, WITHSCORES not supported in combination with BYLEX"),
        );
        check(
            &mut h,
            "ZRANGE z - + BYLEX LIMIT 0 1 WITHSCORES",
            err("ERR syntax error, WITHSCORES not supported in combination with BYLEX"),
        );
        check(&mut h, "ZRANGE z - + BYLEX LIMIT -1 2", Reply::Array(vec![]));
        check(&mut h, "ZRANGE z - + BYLEX LIMIT 2 -1", array(&["c", "d", "e", "ee"]));
        check(&mut h, "ZRANGE z - + BYLEX LIMIT 6 1", Reply::Array(vec![]));
        check(&mut h, "ZRANGE z - + BYLEX LIMIT 5 9", array(&["ee"]));
        check(
            &mut h,
            "ZRANGEBYLEX z - + WITHSCORES",
            err("ERR syntax error, WITHSCORES not supported in combination with BYLEX"),
        );
        check(&mut h, "ZRANGEBYLEX z [b [c", array(&["b", "c"]));
        check(&mut h, "ZRANGEBYLEX z - + LIMIT 1 2", array(&["b", "c"]));
        check(&mut h, "ZRANGEBYLEX z - + REV", err("ERR syntax error"));
        check(&mut h, "ZREVRANGEBYLEX z + - LIMIT 0 2", array(&["ee", "e"]));
        check(&mut h, "ZREVRANGEBYLEX z [c -", array(&["c", "b", "a"]));
        check(&mut h, "ZREVRANGEBYLEX z - +", Reply::Array(vec![]));
        check(&mut h, "ZRANGEBYLEX nokey - +", Reply::Array(vec![]));
        check(&mut h, "ZRANGEBYLEX nokey x +", err("ERR min or max not valid string range item"));
        check(&mut h, "ZLEXCOUNT z - +", int(6));
        check(&mut h, "ZLEXCOUNT z [b (e", int(3));
        check(&mut h, "ZLEXCOUNT z + -", int(0));
        check(&mut h, "ZLEXCOUNT nokey - +", int(0));
        check(&mut h, "ZLEXCOUNT str a +", err("ERR min or max not valid string range item"));
        check(
            &mut h,
            "ZLEXCOUNT str - +",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
    }

    #[test]
    fn lex_ranges_over_mixed_scores() {
        let mut h = Harness::new();
        h.run("ZADD z 1 d 2 a 3 c 4 b 5 e");
        check(&mut h, "ZRANGE z - + BYLEX", array(&["d", "a", "c", "b", "e"]));
        check(&mut h, "ZRANGE z [b + BYLEX", array(&["d", "a", "c", "b", "e"]));
        check(&mut h, "ZRANGE z [c [c BYLEX", Reply::Array(vec![]));
        check(&mut h, "ZRANGE z - [c BYLEX", Reply::Array(vec![]));
        check(&mut h, "ZRANGE z + [c BYLEX REV", array(&["e"]));
        check(&mut h, "ZRANGE z [e [a BYLEX REV", array(&["e", "b", "c", "a", "d"]));
        check(&mut h, "ZRANGE z [a + BYLEX LIMIT 4 10", array(&["e"]));
        check(&mut h, "ZLEXCOUNT z [b +", int(5));
        check(&mut h, "ZREMRANGEBYLEX z [c +", int(5));
        check(&mut h, "EXISTS z", int(0));
    }

    #[test]
    fn zcount_and_removals() {
        let mut h = Harness::new();
        h.run("SET str x");
        h.run("ZADD z 1 a 2 b 3 c 4 d 5 e");
        check(&mut h, "ZCOUNT z 2 4", int(3));
        check(&mut h, "ZCOUNT z (2 4", int(2));
        check(&mut h, "ZCOUNT z -inf +inf", int(5));
        check(&mut h, "ZCOUNT z (5 +inf", int(0));
        check(&mut h, "ZCOUNT z 4 2", int(0));
        check(&mut h, "ZCOUNT z a 0", err("ERR min or max is not a float"));
        check(&mut h, "ZCOUNT str a 0", err("ERR min or max is not a float"));
        check(
            &mut h,
            "ZCOUNT str 0 0",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
        check(&mut h, "ZCOUNT nokey 0 0", int(0));
        check(&mut h, "ZCOUNT nokey x 0", err("ERR min or max is not a float"));
        check(&mut h, "ZREMRANGEBYSCORE z a 0", err("ERR min or max is not a float"));
        check(
            &mut h,
            "ZREMRANGEBYSCORE str 0 1",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
        check(&mut h, "ZREMRANGEBYSCORE str x 1", err("ERR min or max is not a float"));
        check(&mut h, "ZREMRANGEBYSCORE nokey 0 1", int(0));
        check(&mut h, "ZREMRANGEBYSCORE z (1 2", int(1));
        check(&mut h, "ZREMRANGEBYSCORE z 10 20", int(0));
        check(&mut h, "ZRANGE z 0 -1", array(&["a", "c", "d", "e"]));
        check(&mut h, "ZREMRANGEBYRANK z a 0", err("ERR value is not an integer or out of range"));
        check(
            &mut h,
            "ZREMRANGEBYRANK str 0 1",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
        check(
            &mut h,
            "ZREMRANGEBYRANK nokey a 1",
            err("ERR value is not an integer or out of range"),
        );
        check(&mut h, "ZREMRANGEBYRANK nokey 0 1", int(0));
        check(&mut h, "ZREMRANGEBYRANK z 3 1", int(0));
        check(&mut h, "ZREMRANGEBYRANK z 10 20", int(0));
        check(&mut h, "ZREMRANGEBYRANK z -2 -1", int(2));
        check(&mut h, "ZRANGE z 0 -1", array(&["a", "c"]));
        check(&mut h, "ZREMRANGEBYRANK z -100 100", int(2));
        check(&mut h, "EXISTS z", int(0));
        h.run("ZADD z 0 a 0 b 0 c 0 d");
        check(&mut h, "ZREMRANGEBYLEX z x +", err("ERR min or max not valid string range item"));
        check(
            &mut h,
            "ZREMRANGEBYLEX str - +",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
        check(&mut h, "ZREMRANGEBYLEX str x +", err("ERR min or max not valid string range item"));
        check(&mut h, "ZREMRANGEBYLEX nokey - +", int(0));
        check(&mut h, "ZREMRANGEBYLEX z (a [c", int(2));
        check(&mut h, "ZRANGE z 0 -1", array(&["a", "d"]));
        check(&mut h, "ZREMRANGEBYLEX z - +", int(2));
        check(&mut h, "EXISTS z", int(0));
        h.run("ZADD z 1 a 2 b");
        check(&mut h, "ZREMRANGEBYSCORE z -inf +inf", int(2));
        check(&mut h, "EXISTS z", int(0));
    }

    #[test]
    fn zpop_cases() {
        let mut h = Harness::new();
        h.run("SET str x");
        h.run("ZADD z 1 a 2 b 3 c 4 d");
        check(&mut h, "ZPOPMIN z", Reply::Array(vec![bulk("a"), Reply::Double(1.0)]));
        check(&mut h, "ZPOPMIN z 1", pairs(&[("b", 2.0)]));
        check(&mut h, "ZPOPMAX z", Reply::Array(vec![bulk("d"), Reply::Double(4.0)]));
        check(&mut h, "ZPOPMAX z 5", pairs(&[("c", 3.0)]));
        check(&mut h, "EXISTS z", int(0));
        check(&mut h, "ZPOPMIN nokey", Reply::Array(vec![]));
        check(&mut h, "ZPOPMIN nokey 2", Reply::Array(vec![]));
        check(&mut h, "ZPOPMAX nokey", Reply::Array(vec![]));
        check(
            &mut h,
            "ZPOPMIN str 0",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
        check(
            &mut h,
            "ZPOPMIN str",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
        check(&mut h, "ZPOPMIN nokey -1", err("ERR value is out of range, must be positive"));
        check(&mut h, "ZPOPMIN nokey abc", err("ERR value is out of range, must be positive"));
        check(&mut h, "ZPOPMIN z 1 2", err("ERR syntax error"));
        check(&mut h, "ZPOPMAX str abc", err("ERR value is out of range, must be positive"));
        h.run("ZADD z 1.5 a 2.5 b 2.5 c");
        check(&mut h, "ZPOPMIN z 0", Reply::Array(vec![]));
        check(&mut h, "ZPOPMAX z 2", pairs(&[("c", 2.5), ("b", 2.5)]));
        check(&mut h, "ZPOPMIN z 9223372036854775807", pairs(&[("a", 1.5)]));
        check(&mut h, "EXISTS z", int(0));
    }

    #[test]
    fn zscan_of_a_listpack() {
        let mut h = Harness::new();
        h.run("SET str x");
        h.run("ZADD z 3 c 1.5 a 2 b 10 ab");
        check(
            &mut h,
            "ZSCAN z 0",
            Reply::Array(vec![bulk("0"), array(&["a", "1.5", "b", "2", "c", "3", "ab", "10"])]),
        );
        check(
            &mut h,
            "ZSCAN z 77",
            Reply::Array(vec![bulk("0"), array(&["a", "1.5", "b", "2", "c", "3", "ab", "10"])]),
        );
        check(
            &mut h,
            "ZSCAN z 0 MATCH a*",
            Reply::Array(vec![bulk("0"), array(&["a", "1.5", "ab", "10"])]),
        );
        check(
            &mut h,
            "ZSCAN z 0 COUNT 1",
            Reply::Array(vec![bulk("0"), array(&["a", "1.5", "b", "2", "c", "3", "ab", "10"])]),
        );
        check(&mut h, "ZSCAN nokey 0 COUNT 0", Reply::Array(vec![bulk("0"), Reply::Array(vec![])]));
        check(
            &mut h,
            "ZSCAN str 0 COUNT 0",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        );
        check(&mut h, "ZSCAN z 0 COUNT 0", err("ERR syntax error"));
        check(&mut h, "ZSCAN z 0 TYPE zset", err("ERR syntax error"));
        check(&mut h, "ZSCAN z x", err("ERR invalid cursor"));
        check(&mut h, "ZSCAN nokey x", err("ERR invalid cursor"));
    }

    #[test]
    fn encoding_turns_to_skiplist_for_good() {
        let mut h = Harness::new();
        for i in 0..128 {
            h.run(&format!("ZADD z {i} m{i}"));
        }
        check(&mut h, "OBJECT ENCODING z", bulk("listpack"));
        // Updating an existing member never converts.
        check(&mut h, "ZADD z 1000 m0", int(0));
        check(&mut h, "OBJECT ENCODING z", bulk("listpack"));
        check(&mut h, "ZADD z 128 m128", int(1));
        check(&mut h, "OBJECT ENCODING z", bulk("skiplist"));
        check(&mut h, "ZREMRANGEBYRANK z 0 100", int(101));
        check(&mut h, "OBJECT ENCODING z", bulk("skiplist"));
        let long = "x".repeat(65);
        h.run(&format!("ZADD y 1 {}", "x".repeat(64)));
        check(&mut h, "OBJECT ENCODING y", bulk("listpack"));
        h.run(&format!("ZADD y 1 {long}"));
        check(&mut h, "OBJECT ENCODING y", bulk("skiplist"));
        // 129 pairs naming one member stay a listpack (no size hint in 7.0).
        let line = format!("ZADD w{}", " 1 a".repeat(129));
        check(&mut h, &line, int(1));
        check(&mut h, "OBJECT ENCODING w", bulk("listpack"));
    }

    #[test]
    fn zscan_of_a_skiplist_visits_everything() {
        let mut h = Harness::new();
        for i in 0..300 {
            h.run(&format!("ZADD z {i}.5 m{i}"));
        }
        let mut seen = BTreeSet::new();
        let mut cursor = "0".to_string();
        let mut calls = 0;
        loop {
            let Reply::Array(parts) = h.run(&format!("ZSCAN z {cursor} COUNT 20")) else {
                panic!("scan reply")
            };
            let [Reply::Bulk(next), items] = &parts[..] else { panic!("scan shape") };
            let items = bulks(items.clone());
            for pair in items.chunks(2) {
                let i: usize = std::str::from_utf8(&pair[0][1..]).unwrap().parse().unwrap();
                assert_eq!(pair[1], Bytes::from(format!("{i}.5")));
                assert!(seen.insert(i), "returned twice");
            }
            calls += 1;
            cursor = String::from_utf8(next.to_vec()).unwrap();
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(seen.len(), 300);
        assert!(calls >= 10, "COUNT is honoured: {calls} calls");
    }

    #[test]
    fn expired_zsets_are_invisible_and_writes_start_fresh() {
        let mut h = Harness::new();
        h.run("ZADD z 1 a 2 b");
        h.run("PEXPIRE z 100");
        h.advance(99);
        check(&mut h, "ZCARD z", int(2));
        h.advance(1);
        check(&mut h, "ZCARD z", int(0));
        check(&mut h, "ZSCORE z a", Reply::Nil);
        check(&mut h, "ZRANK z a", Reply::Nil);
        check(&mut h, "ZRANGE z 0 -1", Reply::Array(vec![]));
        check(&mut h, "ZCOUNT z -inf +inf", int(0));
        check(&mut h, "ZPOPMIN z", Reply::Array(vec![]));
        check(&mut h, "ZREM z a", int(0));
        check(&mut h, "ZADD z XX 5 a", int(0));
        check(&mut h, "EXISTS z", int(0));
        check(&mut h, "ZINCRBY z 1 a", Reply::Double(1.0));
        check(&mut h, "ZRANGE z 0 -1 WITHSCORES", pairs(&[("a", 1.0)]));
        check(&mut h, "TTL z", int(-1));
        h.run("PEXPIRE z 10");
        h.advance(10);
        check(&mut h, "ZADD z 3 c", int(1));
        check(&mut h, "ZRANGE z 0 -1", array(&["c"]));
    }

    #[test]
    fn ranks_and_ranges_on_a_big_zset() {
        let mut h = Harness::new();
        let n = 1000;
        for i in 0..n {
            h.run(&format!("ZADD z {} m{i:04}", i / 10));
        }
        let name = |i: i64| format!("m{i:04}");
        for i in [0, 1, 499, 500, 998, 999] {
            check(&mut h, &format!("ZRANK z {}", name(i)), int(i));
            check(&mut h, &format!("ZREVRANK z {}", name(i)), int(n - 1 - i));
        }
        // Both ends of the walk give the same slices.
        for (start, stop) in [(0, 4), (995, 999), (-3, -1), (400, 403), (600, 602)] {
            let lo = if start < 0 { n + start } else { start };
            let hi = if stop < 0 { n + stop } else { stop };
            let want: Vec<String> = (lo..=hi).map(name).collect();
            let want: Vec<&str> = want.iter().map(String::as_str).collect();
            check(&mut h, &format!("ZRANGE z {start} {stop}"), array(&want));
            let rev: Vec<&str> = want.iter().rev().copied().collect();
            let (rs, re) = (n - 1 - hi, n - 1 - lo);
            check(&mut h, &format!("ZRANGE z {rs} {re} REV"), array(&rev));
        }
        check(&mut h, "ZCOUNT z 10 (20", int(100));
        check(
            &mut h,
            "ZRANGEBYSCORE z (98 +inf",
            array(&[
                "m0990", "m0991", "m0992", "m0993", "m0994", "m0995", "m0996", "m0997", "m0998",
                "m0999",
            ]),
        );
        check(&mut h, "ZREVRANGEBYSCORE z (1 -inf LIMIT 8 5", array(&["m0001", "m0000"]));
        check(&mut h, "ZREMRANGEBYSCORE z 50 +inf", int(500));
        check(&mut h, "ZCARD z", int(500));
        check(&mut h, "ZPOPMAX z 2", pairs(&[("m0499", 49.0), ("m0498", 49.0)]));
    }

    /// Lex ranges agree with a brute-force walk, with and without the
    /// single-score shortcut. (The walk itself was checked against
    /// redis-server for these members and bounds, both directions.)
    #[test]
    fn lex_ranges_match_a_linear_walk() {
        let members = ["", "a", "aa", "ab", "b", "ba", "c", "d\u{7f}"];
        let bounds = ["-", "+", "[", "(", "[a", "(a", "[aa", "(ab", "[b", "(bb", "[c", "(z"];
        for mixed in [false, true] {
            let mut h = Harness::new();
            let mut list: Vec<(f64, &str)> = Vec::new();
            for (i, m) in members.iter().enumerate() {
                let score = if mixed { (i * 7 % 5) as f64 } else { 0.0 };
                h.run(&format!("ZADD z {score} \"{m}\""));
                list.push((score, m));
            }
            list.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
            for min in bounds {
                for max in bounds {
                    let got = bulks(h.run(&format!("ZRANGE z {min} {max} BYLEX")));
                    let want = linear(&list, min, max, false);
                    assert_eq!(got, want, "mixed={mixed} {min} {max}");
                    let count = h.run(&format!("ZLEXCOUNT z {min} {max}"));
                    assert_eq!(count, int(want.len() as i64));
                    let got = bulks(h.run(&format!("ZRANGE z {max} {min} BYLEX REV")));
                    assert_eq!(got, linear(&list, min, max, true), "REV mixed={mixed} {min} {max}");
                }
            }
        }

        /// Redis's listpack walk: from the first member >= min while <= max
        /// (from the last one <= max while >= min if `rev`), if the range
        /// overlaps the first and last members at all.
        fn linear(list: &[(f64, &str)], min: &str, max: &str, rev: bool) -> Vec<Bytes> {
            fn key(b: &str) -> (i8, &[u8], bool) {
                match b {
                    "-" => (-1, &[][..], true),
                    "+" => (1, &[][..], true),
                    _ => (0, &b.as_bytes()[1..], b.starts_with('(')),
                }
            }
            fn cmp(m: &[u8], b: (i8, &[u8], bool)) -> std::cmp::Ordering {
                match b.0 {
                    -1 => std::cmp::Ordering::Greater,
                    1 => std::cmp::Ordering::Less,
                    _ => m.cmp(b.1),
                }
            }
            let (lo, hi) = (key(min), key(max));
            let gte = |m: &str| {
                let c = cmp(m.as_bytes(), lo);
                c.is_gt() || (c.is_eq() && !lo.2)
            };
            let lte = |m: &str| {
                let c = cmp(m.as_bytes(), hi);
                c.is_lt() || (c.is_eq() && !hi.2)
            };
            let empty = match (lo.0, hi.0) {
                (0, 0) => lo.1 > hi.1 || (lo.1 == hi.1 && (lo.2 || hi.2)),
                (a, b) => a >= b,
            };
            if empty || !gte(list.last().unwrap().1) || !lte(list[0].1) {
                return Vec::new();
            }
            let bytes = |e: &(f64, &str)| Bytes::copy_from_slice(e.1.as_bytes());
            if rev {
                list.iter()
                    .rev()
                    .skip_while(|e| !lte(e.1))
                    .take_while(|e| gte(e.1))
                    .map(bytes)
                    .collect()
            } else {
                list.iter().skip_while(|e| !gte(e.1)).take_while(|e| lte(e.1)).map(bytes).collect()
            }
        }
    }

    #[test]
    fn emptied_zsets_are_deleted() {
        let mut h = Harness::new();
        for line in [
            "ZREM z a b",
            "ZPOPMIN z 5",
            "ZPOPMAX z 2",
            "ZREMRANGEBYRANK z 0 -1",
            "ZREMRANGEBYSCORE z -inf +inf",
            "ZREMRANGEBYLEX z - +",
        ] {
            h.run("ZADD z 0 a 0 b");
            h.run(line);
            check(&mut h, "EXISTS z", int(0));
        }
        check(&mut h, "DBSIZE", int(0));
    }
}

//! Hash commands: HSET and friends, counters, HSCAN and HRANDFIELD.
//!
//! A hash keeps Redis's encodings ([`HashVal`]): insertion-ordered while it is a
//! small "listpack", a [`KeyMap`](crate::keymap::KeyMap) once it outgrows the
//! listpack limits. [`HashVal::insert`] converts exactly when Redis would for
//! every command here (HSET's up-front `hashTypeTryConversion` and the per-insert
//! checks lead to the same final encoding), so handlers just insert.
//!
//! Hash-field expiration (Redis 7.4: HEXPIRE and friends, HTTL, HPERSIST):
//! a field's TTL lives in the [`HashVal`]; reads skip fields expired at the
//! command's time, writes first remove them (the lazy expiry in
//! [`Db`](crate::db::Db)'s typed accessors), and the leader's purge entries
//! remove the rest at the same index on every replica.

use bytes::Bytes;

use crate::args::{self, is, parse_i64, Res};
use crate::cmd::keys::{adds_key, notify_if_gone, notify_new, scan_reply, ScanArgs};
use crate::command::{arity_error, Spec};
use crate::event::Class;
use crate::float::{self, AddError, LongDouble};
use crate::reply::{errors, Reply};
use crate::state::{Exec, Query, Rng};
use crate::value::{HashFields, HashVal};

pub const COMMANDS: &[Spec] = &[
    Spec::write("hset", -4, (1, 1, 1), hset),
    Spec::write("hsetnx", 4, (1, 1, 1), hsetnx),
    Spec::read("hget", 3, (1, 1, 1), hget),
    Spec::read("hmget", -3, (1, 1, 1), hmget),
    Spec::write("hmset", -4, (1, 1, 1), hmset),
    Spec::write("hdel", -3, (1, 1, 1), hdel),
    Spec::read("hexists", 3, (1, 1, 1), hexists),
    Spec::read("hgetall", 2, (1, 1, 1), hgetall),
    Spec::read("hkeys", 2, (1, 1, 1), hkeys),
    Spec::read("hvals", 2, (1, 1, 1), hvals),
    Spec::read("hlen", 2, (1, 1, 1), hlen),
    Spec::write("hincrby", 4, (1, 1, 1), hincrby),
    Spec::write("hincrbyfloat", 4, (1, 1, 1), hincrbyfloat),
    Spec::read("hstrlen", 3, (1, 1, 1), hstrlen),
    Spec::read("hscan", -3, (1, 1, 1), hscan),
    Spec::read("hrandfield", -2, (1, 1, 1), hrandfield),
    Spec::write("hexpire", -6, (1, 1, 1), hexpire),
    Spec::write("hpexpire", -6, (1, 1, 1), hpexpire),
    Spec::write("hexpireat", -6, (1, 1, 1), hexpireat),
    Spec::write("hpexpireat", -6, (1, 1, 1), hpexpireat),
    Spec::read("httl", -5, (1, 1, 1), httl),
    Spec::read("hpttl", -5, (1, 1, 1), hpttl),
    Spec::read("hexpiretime", -5, (1, 1, 1), hexpiretime),
    Spec::read("hpexpiretime", -5, (1, 1, 1), hpexpiretime),
    Spec::write("hpersist", -5, (1, 1, 1), hpersist),
    Spec::write("hgetdel", -5, (1, 1, 1), hgetdel),
    Spec::write("hgetex", -5, (1, 1, 1), hgetex),
    Spec::write("hsetex", -6, (1, 1, 1), hsetex),
];

const NOT_INTEGER_VALUE: &str = "ERR hash value is not an integer";
const NOT_FLOAT_VALUE: &str = "ERR hash value is not a float";

fn own(b: &[u8]) -> Bytes {
    Bytes::copy_from_slice(b)
}

/// Sets the field/value pairs of `argv[2..]`; returns how many fields are new.
fn hset_generic(x: &mut Exec, argv: &[Bytes], name: &str) -> Res<i64> {
    if argv.len() % 2 == 1 {
        return Err(arity_error(name));
    }
    let now = x.now;
    let adds = adds_key(x, x.db, &argv[1]);
    let h = x.db().hash_or_create(&argv[1], now, HashVal::default)?;
    let mut created = 0;
    for pair in argv[2..].chunks(2) {
        created += i64::from(h.insert(own(&pair[0]), own(&pair[1])));
    }
    // Always signalled, even when every value was already there.
    hash_written(x, &argv[1], adds, "hset");
    Ok(created)
}

/// The end of a write that created or changed the hash at `key`: "new" if
/// the command created it, then the signal and `event`.
fn hash_written(x: &mut Exec, key: &[u8], adds: bool, event: &'static str) {
    let db = x.db;
    notify_new(x, db, key, adds);
    x.modified(key);
    x.notify(Class::Hash, event, key);
}

/// HSET key field value [field value ...]
fn hset(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    hset_generic(x, argv, "hset").map(Reply::Int)
}

/// HMSET key field value [field value ...]
fn hmset(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    hset_generic(x, argv, "hmset").map(|_| Reply::Ok)
}

/// HSETNX key field value
fn hsetnx(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let now = x.now;
    let adds = adds_key(x, x.db, &argv[1]);
    let h = x.db().hash_or_create(&argv[1], now, HashVal::default)?;
    // Redis checks for the field before its listpack conversion check, so an
    // HSETNX that sets nothing never changes the encoding.
    if h.get(&argv[2]).is_some() {
        return Ok(Reply::Int(0));
    }
    h.insert(own(&argv[2]), own(&argv[3]));
    hash_written(x, &argv[1], adds, "hset");
    Ok(Reply::Int(1))
}

/// HGET key field
fn hget(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let h = q.db().get_hash(&argv[1], q.now)?;
    Ok(h.and_then(|h| h.get_live(&argv[2], q.now)).cloned().into())
}

/// HMGET key field [field ...]
fn hmget(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let now = q.now;
    let h = q.db().get_hash(&argv[1], now)?;
    Ok(Reply::Array(
        argv[2..].iter().map(|f| h.and_then(|h| h.get_live(f, now)).cloned().into()).collect(),
    ))
}

/// HDEL key field [field ...]
fn hdel(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let now = x.now;
    let db = x.db();
    let Some(h) = db.hash_mut(&argv[1], now)? else { return Ok(Reply::Int(0)) };
    let mut deleted = 0;
    for field in &argv[2..] {
        if h.remove(field) {
            deleted += 1;
            if h.is_empty() {
                break;
            }
        }
    }
    db.remove_if_empty(&argv[1]);
    if deleted > 0 {
        x.modified(&argv[1]);
        x.notify(Class::Hash, "hdel", &argv[1]);
        notify_if_gone(x, &argv[1]);
    }
    Ok(Reply::Int(deleted))
}

/// HEXISTS key field
fn hexists(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let h = q.db().get_hash(&argv[1], q.now)?;
    Ok(h.is_some_and(|h| h.get_live(&argv[2], q.now).is_some()).into())
}

/// HGETALL key
fn hgetall(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let h = q.db().get_hash(&argv[1], q.now)?;
    Ok(Reply::Map(h.map_or_else(Vec::new, |h| {
        h.iter_live(q.now).map(|(f, v)| (Reply::Bulk(f.clone()), Reply::Bulk(v.clone()))).collect()
    })))
}

/// HKEYS key
fn hkeys(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let h = q.db().get_hash(&argv[1], q.now)?;
    Ok(Reply::bulks(h.into_iter().flat_map(|h| h.iter_live(q.now).map(|(f, _)| f.clone()))))
}

/// HVALS key
fn hvals(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let h = q.db().get_hash(&argv[1], q.now)?;
    Ok(Reply::bulks(h.into_iter().flat_map(|h| h.iter_live(q.now).map(|(_, v)| v.clone()))))
}

/// HLEN key
fn hlen(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let now = q.now;
    Ok(q.db().get_hash(&argv[1], now)?.map_or(0, |h| h.live_len(now)).into())
}

/// HSTRLEN key field
fn hstrlen(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let h = q.db().get_hash(&argv[1], q.now)?;
    Ok(h.and_then(|h| h.get_live(&argv[2], q.now)).map_or(0, Bytes::len).into())
}

/// HINCRBY key field increment
fn hincrby(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let incr = args::int(&argv[3])?;
    let now = x.now;
    let adds = adds_key(x, x.db, &argv[1]);
    let h = x.db().hash_or_create(&argv[1], now, HashVal::default)?;
    let current = match h.get(&argv[2]) {
        Some(v) => parse_i64(v).ok_or(Reply::err(NOT_INTEGER_VALUE))?,
        None => 0,
    };
    let value = current.checked_add(incr).ok_or(Reply::err(errors::OVERFLOW))?;
    // HINCRBY keeps the field's TTL, as in Redis.
    h.insert_keep_ttl(own(&argv[2]), args::int_bytes(value));
    hash_written(x, &argv[1], adds, "hincrby");
    Ok(Reply::Int(value))
}

/// HINCRBYFLOAT key field increment
fn hincrbyfloat(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    match float::classify_long_double(&argv[3]) {
        LongDouble::Invalid => return Err(Reply::err(errors::NOT_FLOAT)),
        LongDouble::Infinite => return Err(Reply::err("ERR value is NaN or Infinity")),
        LongDouble::Finite => {}
    }
    let now = x.now;
    let adds = adds_key(x, x.db, &argv[1]);
    let h = x.db().hash_or_create(&argv[1], now, HashVal::default)?;
    let current = h.get(&argv[2]).cloned().unwrap_or_else(|| Bytes::from_static(b"0"));
    let value = float::long_double_add(&current, &argv[3]).map_err(|e| match e {
        AddError::CurrentNotFloat => Reply::err(NOT_FLOAT_VALUE),
        AddError::IncrementNotFloat => Reply::err(errors::NOT_FLOAT),
        AddError::NanOrInfinity => Reply::err(errors::NAN_OR_INF),
    })?;
    h.insert_keep_ttl(own(&argv[2]), value.clone());
    hash_written(x, &argv[1], adds, "hincrbyfloat");
    Ok(Reply::Bulk(value))
}

/// HSCAN key cursor [MATCH pattern] [COUNT count]
///
/// As in Redis, the cursor is checked first, then the key, and the options
/// only for an existing hash. A listpack hash is returned whole with cursor 0.
fn hscan(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    args::cursor(&argv[2])?;
    let now = q.now;
    let Some(h) = q.db().get_hash(&argv[1], now)? else { return Ok(scan_reply(0, Vec::new())) };
    let opts = ScanArgs::parse(argv, 2, false)?;
    let pair = |(f, v): (&Bytes, &Bytes)| [Reply::Bulk(f.clone()), Reply::Bulk(v.clone())];
    let wanted = |f: &Bytes| opts.matches(f) && !h.is_expired(f, now);
    match &h.fields {
        HashFields::Listpack(_) => {
            let items = h.iter().filter(|(f, _)| wanted(f)).flat_map(pair).collect();
            Ok(scan_reply(0, items))
        }
        HashFields::Table(t) => {
            // COUNT counts entries (a field and its value), not reply items:
            // Redis 7.0.15 returns about 2*COUNT items per call.
            let (next, found) = t.scan(opts.cursor, opts.count);
            let items = found.into_iter().filter(|(f, _)| wanted(f)).flat_map(pair).collect();
            Ok(scan_reply(next, items))
        }
    }
}

/// HRANDFIELD key [count [WITHVALUES]]
fn hrandfield(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    if argv.len() >= 3 {
        let count = args::int(&argv[2])?;
        if count == i64::MIN {
            return Err(Reply::err(
                "ERR value is out of range, value must between -9223372036854775807 and \
                 9223372036854775807",
            ));
        }
        if argv.len() > 4 || (argv.len() == 4 && !is(&argv[3], "withvalues")) {
            return Err(Reply::err(errors::SYNTAX));
        }
        let with_values = argv.len() == 4;
        if with_values && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
            return Err(Reply::err("ERR value is out of range"));
        }
        return hrandfield_with_count(q, &argv[1], count, with_values);
    }
    let now = q.now;
    let Some(h) = q.db().get_hash(&argv[1], now)? else { return Ok(Reply::Nil) };
    let entries = entries(h, now);
    if entries.is_empty() {
        return Ok(Reply::Nil);
    }
    let (field, _) = entries[q.rng.below(entries.len())];
    Ok(Reply::Bulk(field.clone()))
}

/// The entries of a hash not expired at `now` in reply order, indexable for
/// random picks.
fn entries(h: &HashVal, now: i64) -> Vec<(&Bytes, &Bytes)> {
    h.iter_live(now).collect()
}

/// Redis's `hrandfieldWithCountCommand`.
fn hrandfield_with_count(q: &mut Query, key: &[u8], count: i64, with_values: bool) -> Res<Reply> {
    let now = q.now;
    let Some(h) = q.db().get_hash(key, now)? else { return Ok(Reply::Array(Vec::new())) };
    let entries = entries(h, now);
    if count == 0 || entries.is_empty() {
        return Ok(Reply::Array(Vec::new()));
    }
    let size = entries.len();
    let rng = &mut q.rng;
    // Which entries to reply with, by index.
    if count < 0 && count.unsigned_abs() > args::MAX_RANDOM_REPLY {
        return Err(Reply::err(args::COUNT_TOO_LARGE));
    }
    let picks: Vec<usize> = if count < 0 || count == 1 {
        // Case 1: independent picks, repeats allowed, in random order. The
        // vector grows as it fills: a huge count is not trusted up front.
        let mut picks = Vec::new();
        for _ in 0..count.unsigned_abs() {
            picks.push(rng.below(size));
        }
        picks
    } else if count as u64 >= size as u64 {
        // Case 2: the whole hash.
        (0..size).collect()
    } else {
        // Cases 3 and 4: `count` distinct entries (a partial Fisher-Yates
        // shuffle), replied in hash order.
        sample_distinct(rng, size, count as usize)
    };
    let bulk = |i: usize| (Reply::Bulk(entries[i].0.clone()), Reply::Bulk(entries[i].1.clone()));
    Ok(if with_values {
        Reply::Pairs(picks.into_iter().map(bulk).collect())
    } else {
        Reply::Array(picks.into_iter().map(|i| bulk(i).0).collect())
    })
}

/// `count` distinct indices below `size` (count < size), sorted.
fn sample_distinct(rng: &mut Rng, size: usize, count: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..size).collect();
    for i in 0..count {
        let j = i + rng.below(size - i);
        idx.swap(i, j);
    }
    idx.truncate(count);
    idx.sort_unstable();
    idx
}

/// Largest absolute field expiry time in ms (Redis's `HFE_MAX_ABS_TIME_MSEC`,
/// `EB_EXPIRE_TIME_MAX >> 2`).
const HFE_MAX_ABS_TIME_MSEC: i64 = 0x0000_FFFF_FFFF_FFFF >> 2;
const FIELDS_MISSING: &str =
    "ERR Mandatory argument FIELDS is missing or not at the right position";
const NUMFIELDS_MISMATCH: &str = "ERR The `numfields` parameter must match the number of arguments";

/// Reads `FIELDS numfields field ...` starting at `argv[at]` (the FIELDS
/// token); `bad_count` is the error for a numfields below 1 or not a number.
fn fields_arg<'a>(argv: &'a [Bytes], at: usize, bad_count: &'static str) -> Res<&'a [Bytes]> {
    if !argv.get(at).is_some_and(|a| is(a, "fields")) {
        return Err(Reply::err(FIELDS_MISSING));
    }
    let n = argv.get(at + 1).and_then(|a| parse_i64(a)).filter(|&n| n >= 1);
    let Some(n) = n else { return Err(Reply::err(bad_count)) };
    let fields = &argv[at + 2..];
    if n as u64 != fields.len() as u64 {
        return Err(Reply::err(NUMFIELDS_MISMATCH));
    }
    Ok(fields)
}

/// Redis's `parseExpireTime` for field TTLs: `arg` counts `unit` ms from
/// `basetime` (0 for absolute times); the absolute expiry in ms.
fn field_expiry(arg: &[u8], name: &str, basetime: i64, unit: i64) -> Res<i64> {
    let mut at = args::int(arg)?;
    if at < 0 {
        return Err(Reply::err("ERR invalid expire time, must be >= 0"));
    }
    let bad_time = || Reply::error(format!("ERR invalid expire time in '{name}' command"));
    if unit == 1000 {
        if at > HFE_MAX_ABS_TIME_MSEC / 1000 {
            return Err(bad_time());
        }
        at *= 1000;
    }
    if at > HFE_MAX_ABS_TIME_MSEC - basetime {
        return Err(bad_time());
    }
    Ok(at + basetime)
}

/// HGETDEL key FIELDS numfields field [field ...] (Redis 8.0): the values
/// (nil for a missing field), and the fields are deleted; the hash goes
/// with its last field.
fn hgetdel(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let now = x.now;
    let key = &argv[1];
    let exists = x.db().hash_mut(key, now)?.is_some();
    let fields = fields_arg(argv, 2, NUMFIELDS_NOT_POSITIVE)?;
    let Some(h) = x.db().hash_mut(key, now)?.filter(|_| exists) else {
        return Ok(Reply::Array(vec![Reply::Nil; fields.len()]));
    };
    let mut deleted = 0;
    let replies = fields
        .iter()
        .map(|field| match h.get(field).cloned() {
            Some(value) => {
                h.remove(field);
                deleted += 1;
                Reply::Bulk(value)
            }
            None => Reply::Nil,
        })
        .collect();
    if deleted > 0 {
        let gone = x.db().remove_if_empty(key);
        x.modified(key);
        x.notify(Class::Hash, "hdel", key);
        if gone {
            x.notify(Class::Generic, "del", key);
        }
    }
    Ok(Reply::Array(replies))
}

/// HGETEX's and HSETEX's EX | PX | EXAT | PXAT: the base time and unit (ms)
/// of the time that follows, for [`field_expiry`].
fn timed_option(arg: &[u8], now: i64) -> Option<(i64, i64)> {
    [("ex", now, 1000), ("px", now, 1), ("exat", 0, 1000), ("pxat", 0, 1)]
        .into_iter()
        .find(|(name, ..)| is(arg, name))
        .map(|(_, base, unit)| (base, unit))
}

/// What HGETEX and HSETEX do to the TTL of the fields they touch.
#[derive(Clone, Copy, PartialEq)]
enum FieldTtl {
    /// Nothing said: HGETEX leaves it, HSETEX removes it (as HSET).
    Unset,
    /// An absolute expiry in ms.
    At(i64),
    Persist,
    KeepTtl,
}

/// HGETEX key [EX seconds | PX milliseconds | EXAT unix-time-seconds |
/// PXAT unix-time-milliseconds | PERSIST] FIELDS numfields field [field ...]
/// (Redis 8.0): the values, and the TTL of every field that exists is set
/// (a time already passed deletes the field) or removed.
fn hgetex(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let now = x.now;
    let key = &argv[1];
    let exists = x.db().hash_mut(key, now)?.is_some();
    let (ttl, fields_at) = if is(&argv[2], "persist") {
        (FieldTtl::Persist, 3)
    } else if let Some((base, unit)) = timed_option(&argv[2], now) {
        (FieldTtl::At(field_expiry(&argv[3], "hgetex", base, unit)?), 4)
    } else {
        (FieldTtl::Unset, 2)
    };
    if fields_at + 1 >= argv.len() && argv.get(fields_at).is_some_and(|a| is(a, "fields")) {
        return Err(arity_error("hgetex"));
    }
    let fields = fields_arg(argv, fields_at, NUMFIELDS_NOT_POSITIVE)?;
    let Some(h) = x.db().hash_mut(key, now)?.filter(|_| exists) else {
        return Ok(Reply::Array(vec![Reply::Nil; fields.len()]));
    };
    let (mut updated, mut deleted) = (0, 0);
    let mut replies = Vec::with_capacity(fields.len());
    for field in fields {
        let Some(value) = h.get(field).cloned() else {
            replies.push(Reply::Nil);
            continue;
        };
        replies.push(Reply::Bulk(value));
        match ttl {
            FieldTtl::At(at) if at <= now => {
                h.remove(field);
                deleted += 1;
            }
            FieldTtl::At(at) => {
                h.mark_listpack_ex();
                h.set_ttl(field, at);
                updated += 1;
            }
            FieldTtl::Persist => updated += i32::from(h.persist(field)),
            FieldTtl::Unset | FieldTtl::KeepTtl => {}
        }
    }
    if updated + deleted > 0 {
        let gone = x.db().remove_if_empty(key);
        x.modified(key);
        let event = match ttl {
            _ if updated == 0 => "hdel",
            FieldTtl::Persist => "hpersist",
            _ => "hexpire",
        };
        x.notify(Class::Hash, event, key);
        if gone {
            x.notify(Class::Generic, "del", key);
        }
    }
    Ok(Reply::Array(replies))
}

/// HSETEX key [FNX | FXX] [EX seconds | PX milliseconds | EXAT
/// unix-time-seconds | PXAT unix-time-milliseconds | KEEPTTL] FIELDS
/// numfields field value [field value ...] (Redis 8.0): sets the fields
/// (FNX: only if none exists, FXX: only if all do) and their TTL; 1 if they
/// were set, 0 if the condition was not met.
fn hsetex(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let now = x.now;
    let key = &argv[1];
    let only_expiry =
        || Reply::err("ERR Only one of EX, PX, EXAT, PXAT or KEEPTTL arguments can be specified");
    let (mut ttl, mut fnx, mut fxx) = (FieldTtl::Unset, false, false);
    let mut i = 2;
    let pairs = loop {
        let Some(arg) = argv.get(i) else { return Err(arity_error("hsetex")) };
        if is(arg, "fields") {
            if i + 3 >= argv.len() {
                return Err(arity_error("hsetex"));
            }
            let n = parse_i64(&argv[i + 1]).filter(|n| (1..=i32::MAX as i64).contains(n));
            let Some(n) = n else { return Err(Reply::err("ERR invalid number of fields")) };
            let rest = &argv[i + 2..];
            if !rest.len().is_multiple_of(2) || n as usize != rest.len() / 2 {
                return Err(arity_error("hsetex"));
            }
            break rest;
        }
        if let Some((base, unit)) = timed_option(arg, now) {
            if ttl != FieldTtl::Unset {
                return Err(only_expiry());
            }
            let Some(time) = argv.get(i + 1) else {
                return Err(Reply::err("ERR missing expire time"));
            };
            ttl = FieldTtl::At(field_expiry(time, "hsetex", base, unit)?);
            i += 2;
        } else if is(arg, "keepttl") {
            if ttl != FieldTtl::Unset {
                return Err(only_expiry());
            }
            ttl = FieldTtl::KeepTtl;
            i += 1;
        } else if is(arg, "fnx") || is(arg, "fxx") {
            if fnx || fxx {
                return Err(Reply::err("ERR Only one of FXX or FNX arguments can be specified"));
            }
            fnx = is(arg, "fnx");
            fxx = !fnx;
            i += 1;
        } else {
            return Err(Reply::error(format!(
                "ERR unknown argument: {}",
                String::from_utf8_lossy(arg)
            )));
        }
    };
    let exists = x.db().hash_mut(key, now)?.is_some();
    if !exists && fxx {
        return Ok(Reply::Int(0));
    }
    if fnx || fxx {
        let h = x.db().get_hash(key, now)?;
        let found = pairs.chunks(2).filter(|p| h.is_some_and(|h| h.get(&p[0]).is_some())).count();
        if (fnx && found > 0) || (fxx && found < pairs.len() / 2) {
            return Ok(Reply::Int(0));
        }
    }
    let adds = adds_key(x, x.db, key);
    let h = x.db().hash_or_create(key, now, HashVal::default)?;
    let (mut updated, mut deleted) = (0, 0);
    for pair in pairs.chunks(2) {
        let (field, value) = (own(&pair[0]), own(&pair[1]));
        match ttl {
            FieldTtl::Unset | FieldTtl::Persist => {
                h.insert(field, value);
            }
            FieldTtl::KeepTtl => {
                h.insert_keep_ttl(field, value);
            }
            FieldTtl::At(at) => {
                h.insert_keep_ttl(field.clone(), value);
                if at <= now {
                    h.remove(&field);
                    deleted += 1;
                } else {
                    h.mark_listpack_ex();
                    h.set_ttl(&field, at);
                    updated += 1;
                }
            }
        }
    }
    let gone = x.db().remove_if_empty(key);
    let db = x.db;
    notify_new(x, db, key, adds && !gone);
    x.modified(key);
    x.notify(Class::Hash, "hset", key);
    if deleted + updated > 0 {
        x.notify(Class::Hash, if deleted > 0 { "hdel" } else { "hexpire" }, key);
    }
    if gone {
        x.notify(Class::Generic, "del", key);
    }
    Ok(Reply::Int(1))
}

/// HEXPIRE's NX | XX | GT | LT.
#[derive(Clone, Copy, PartialEq)]
enum Cond {
    Always,
    Nx,
    Xx,
    Gt,
    Lt,
}

/// HEXPIRE key seconds [NX | XX | GT | LT] FIELDS numfields field [field ...]
fn hexpire(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let now = x.now;
    hexpire_generic(x, argv, "hexpire", now, 1000)
}

/// HPEXPIRE key milliseconds [NX | XX | GT | LT] FIELDS numfields field [field ...]
fn hpexpire(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let now = x.now;
    hexpire_generic(x, argv, "hpexpire", now, 1)
}

/// HEXPIREAT key unix-time-seconds [NX | XX | GT | LT] FIELDS numfields field [field ...]
fn hexpireat(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    hexpire_generic(x, argv, "hexpireat", 0, 1000)
}

/// HPEXPIREAT key unix-time-milliseconds [NX | XX | GT | LT] FIELDS numfields field [field ...]
fn hpexpireat(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    hexpire_generic(x, argv, "hpexpireat", 0, 1)
}

/// Redis's `hexpireGenericCommand`: the time is relative to `basetime`
/// (ms) and counted in units of `unit` ms. Checks in Redis's order: the
/// type, the time, the condition, FIELDS and the count. Per field: -2 no
/// such field, 0 the condition is not met, 1 the TTL is set, 2 the time has
/// passed and the field is deleted.
fn hexpire_generic(
    x: &mut Exec,
    argv: &[Bytes],
    name: &str,
    basetime: i64,
    unit: i64,
) -> Res<Reply> {
    let now = x.now;
    let key = &argv[1];
    let exists = x.db().hash_mut(key, now)?.is_some();
    let at = field_expiry(&argv[2], name, basetime, unit)?;
    let cond = match &argv[3] {
        a if is(a, "nx") => Cond::Nx,
        a if is(a, "xx") => Cond::Xx,
        a if is(a, "gt") => Cond::Gt,
        a if is(a, "lt") => Cond::Lt,
        _ => Cond::Always,
    };
    let fields_at = if cond == Cond::Always { 3 } else { 4 };
    let fields = fields_arg(argv, fields_at, "ERR Parameter `numFields` should be greater than 0")?;
    if !exists {
        return Ok(Reply::Array(vec![Reply::Int(-2); fields.len()]));
    }
    let Some(h) = x.db().hash_mut(key, now)? else { unreachable!("checked above") };
    h.mark_listpack_ex();
    let (mut updated, mut deleted) = (0, 0);
    let mut replies = Vec::with_capacity(fields.len());
    for field in fields {
        if h.get(field).is_none() {
            replies.push(Reply::Int(-2));
            continue;
        }
        let prev = h.ttl(field);
        let met = match (cond, prev) {
            (Cond::Always, _) => true,
            (Cond::Nx, p) => p.is_none(),
            (Cond::Xx | Cond::Gt, None) => false,
            (Cond::Lt, None) => true,
            (Cond::Xx, Some(_)) => true,
            (Cond::Gt, Some(p)) => at > p,
            (Cond::Lt, Some(p)) => at < p,
        };
        if !met {
            replies.push(Reply::Int(0));
        } else if at <= now {
            h.remove(field);
            deleted += 1;
            replies.push(Reply::Int(2));
        } else {
            h.set_ttl(field, at);
            updated += 1;
            replies.push(Reply::Int(1));
        }
    }
    if updated + deleted > 0 {
        let gone = x.db().remove_if_empty(key);
        x.modified(key);
        x.notify(Class::Hash, if deleted > 0 { "hdel" } else { "hexpire" }, key);
        if gone {
            x.notify(Class::Generic, "del", key);
        }
    }
    Ok(Reply::Array(replies))
}

/// HTTL key FIELDS numfields field [field ...]
fn httl(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let now = q.now;
    httl_generic(q, argv, |at| (at + 999 - now) / 1000)
}

/// HPTTL key FIELDS numfields field [field ...]
fn hpttl(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let now = q.now;
    httl_generic(q, argv, |at| at - now)
}

/// HEXPIRETIME key FIELDS numfields field [field ...]
fn hexpiretime(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    // Rounded up, as Redis 7.4 does.
    httl_generic(q, argv, |at| (at + 999) / 1000)
}

/// HPEXPIRETIME key FIELDS numfields field [field ...]
fn hpexpiretime(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    httl_generic(q, argv, |at| at)
}

const NUMFIELDS_NOT_POSITIVE: &str = "ERR Number of fields must be a positive integer";

/// Redis's `httlGenericCommand`: per field -2 (no such field), -1 (no TTL)
/// or `show(expiry)`.
fn httl_generic(q: &mut Query, argv: &[Bytes], show: impl Fn(i64) -> i64) -> Res<Reply> {
    let now = q.now;
    let h = q.db().get_hash(&argv[1], now)?;
    let fields = fields_arg(argv, 2, NUMFIELDS_NOT_POSITIVE)?;
    let code = |field: &Bytes| match h {
        Some(h) if h.get_live(field, now).is_some() => h.ttl(field).map_or(-1, &show),
        _ => -2,
    };
    Ok(Reply::Array(fields.iter().map(|f| Reply::Int(code(f))).collect()))
}

/// HPERSIST key FIELDS numfields field [field ...]
///
/// Per field: -2 no such field, -1 no TTL, 1 the TTL is removed.
fn hpersist(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let now = x.now;
    let key = &argv[1];
    let exists = x.db().hash_mut(key, now)?.is_some();
    let fields = fields_arg(argv, 2, NUMFIELDS_NOT_POSITIVE)?;
    let Some(h) = x.db().hash_mut(key, now)?.filter(|_| exists) else {
        return Ok(Reply::Array(vec![Reply::Int(-2); fields.len()]));
    };
    let mut changed = false;
    let replies = fields
        .iter()
        .map(|field| {
            Reply::Int(if h.get(field).is_none() {
                -2
            } else if h.persist(field) {
                changed = true;
                1
            } else {
                -1
            })
        })
        .collect();
    if changed {
        x.notify(Class::Hash, "hpersist", key);
        x.modified(key);
    }
    Ok(Reply::Array(replies))
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    use crate::Reply;

    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

    fn long(n: usize) -> String {
        "x".repeat(n)
    }

    fn map(items: &[(&str, &str)]) -> Reply {
        Reply::Map(items.iter().map(|(f, v)| (bulk(f), bulk(v))).collect())
    }

    fn nils(n: usize) -> Reply {
        Reply::Array(vec![Reply::Nil; n])
    }

    #[test]
    fn hset_hget_hmset_hsetnx() {
        let mut h = Harness::new();
        assert_eq!(h.run("HSET h a 1 b 2 a 3"), int(2));
        assert_eq!(h.run("HSET h a 4 c 5"), int(1));
        assert_eq!(h.run("HGET h a"), bulk("4"));
        assert_eq!(h.run("HGET h zz"), Reply::Nil);
        assert_eq!(h.run("HGET nokey a"), Reply::Nil);
        assert_eq!(h.run("HMSET h d 6"), Reply::Ok);
        assert_eq!(h.run("HGETALL h"), map(&[("a", "4"), ("b", "2"), ("c", "5"), ("d", "6")]));
        assert_eq!(h.run("HSETNX h a 9"), int(0));
        assert_eq!(h.run("HSETNX h e 9"), int(1));
        assert_eq!(h.run("HSETNX new f v"), int(1));
        assert_eq!(h.run("HGET h e"), bulk("9"));
        assert_eq!(h.run("HGET h \"\""), Reply::Nil);
        assert_eq!(h.run("HSET h \"\" \"\""), int(1));
        assert_eq!(h.run("HGET h \"\""), bulk(""));
        // Arity: odd pairs are checked by the handler, before the type.
        h.run("SET s x");
        assert_eq!(h.run("HSET s a"), err("ERR wrong number of arguments for 'hset' command"));
        assert_eq!(h.run("HSET s a b c"), err("ERR wrong number of arguments for 'hset' command"));
        assert_eq!(
            h.run("HMSET s a b c"),
            err("ERR wrong number of arguments for 'hmset' command")
        );
        assert_eq!(h.run("HSET s a b"), err(WRONGTYPE));
        assert_eq!(h.run("HMSET s a b"), err(WRONGTYPE));
        assert_eq!(h.run("HSETNX s a b"), err(WRONGTYPE));
        assert_eq!(h.run("HGET s a"), err(WRONGTYPE));
        assert_eq!(h.run("GET s"), bulk("x"));
    }

    #[test]
    fn reads_on_missing_and_wrong_type() {
        let mut h = Harness::new();
        h.run("HSET h f hello g 1");
        assert_eq!(
            h.run("HMGET h f nope g"),
            Reply::Array(vec![bulk("hello"), Reply::Nil, bulk("1")])
        );
        assert_eq!(h.run("HMGET nokey a b"), nils(2));
        assert_eq!(h.run("HGETALL nokey"), Reply::Map(vec![]));
        assert_eq!(h.run("HKEYS nokey"), array(&[]));
        assert_eq!(h.run("HVALS nokey"), array(&[]));
        assert_eq!(h.run("HKEYS h"), array(&["f", "g"]));
        assert_eq!(h.run("HVALS h"), array(&["hello", "1"]));
        assert_eq!(h.run("HLEN h"), int(2));
        assert_eq!(h.run("HLEN nokey"), int(0));
        assert_eq!(h.run("HSTRLEN h f"), int(5));
        assert_eq!(h.run("HSTRLEN h nope"), int(0));
        assert_eq!(h.run("HSTRLEN nokey f"), int(0));
        assert_eq!(h.run("HEXISTS h f"), int(1));
        assert_eq!(h.run("HEXISTS h nope"), int(0));
        assert_eq!(h.run("HEXISTS nokey f"), int(0));
        h.run("RPUSH l a");
        for cmd in [
            "HMGET l a",
            "HGETALL l",
            "HKEYS l",
            "HVALS l",
            "HLEN l",
            "HSTRLEN l a",
            "HEXISTS l a",
            "HDEL l a",
            "HINCRBY l a 1",
            "HINCRBYFLOAT l a 1",
            "HRANDFIELD l",
            "HRANDFIELD l 0",
            "HSCAN l 0",
        ] {
            assert_eq!(h.run(cmd), err(WRONGTYPE), "{cmd}");
        }
    }

    #[test]
    fn hdel_deletes_emptied_key() {
        let mut h = Harness::new();
        h.run("HSET h a 1 b 2 c 3");
        assert_eq!(h.run("HDEL h a a nope"), int(1));
        assert_eq!(h.run("HDEL nokey a"), int(0));
        assert_eq!(h.run("HDEL h b c d"), int(2));
        assert_eq!(h.run("EXISTS h"), int(0));
        assert_eq!(h.run("TYPE h"), Reply::status("none"));
        // A table-encoded hash stays a table when it shrinks, as in Redis.
        h.run(&format!("HSET t a 1 {} 2", long(70)));
        assert_eq!(h.run(&format!("HDEL t {}", long(70))), int(1));
        assert_eq!(h.run("OBJECT ENCODING t"), bulk("hashtable"));
        assert_eq!(h.run("HDEL t a"), int(1));
        assert_eq!(h.run("EXISTS t"), int(0));
    }

    #[test]
    fn hincrby_errors_and_overflow() {
        let mut h = Harness::new();
        assert_eq!(h.run("HINCRBY h a 5"), int(5));
        assert_eq!(h.run("HINCRBY h a -7"), int(-2));
        assert_eq!(h.run("HGET h a"), bulk("-2"));
        assert_eq!(h.run("HINCRBY h a abc"), err("ERR value is not an integer or out of range"));
        assert_eq!(h.run("HINCRBY h a 1.5"), err("ERR value is not an integer or out of range"));
        h.run("HSET h x 007 y abc m -9223372036854775808");
        assert_eq!(h.run("HINCRBY h x 1"), err("ERR hash value is not an integer"));
        assert_eq!(h.run("HINCRBY h y 1"), err("ERR hash value is not an integer"));
        assert_eq!(h.run("HINCRBY h m -1"), err("ERR increment or decrement would overflow"));
        assert_eq!(h.run("HINCRBY h m 0"), int(i64::MIN));
        assert_eq!(h.run("HINCRBY h big 9223372036854775807"), int(i64::MAX));
        assert_eq!(h.run("HINCRBY h big 1"), err("ERR increment or decrement would overflow"));
        h.run("SET s x");
        // The increment is parsed before the key is looked up.
        assert_eq!(h.run("HINCRBY s f abc"), err("ERR value is not an integer or out of range"));
        assert_eq!(h.run("HINCRBY s f 1"), err(WRONGTYPE));
    }

    #[test]
    fn hincrbyfloat_like_redis() {
        let mut h = Harness::new();
        assert_eq!(h.run("HINCRBYFLOAT h f 10.5"), bulk("10.5"));
        assert_eq!(h.run("HINCRBYFLOAT h f 0.1"), bulk("10.6"));
        h.run("HSET h g 1 inf inf y abc x 007");
        assert_eq!(h.run("HINCRBYFLOAT h g 1.0"), bulk("2"));
        assert_eq!(h.run("HINCRBYFLOAT h x 1"), bulk("8"));
        assert_eq!(h.run("HINCRBYFLOAT h z -0.0"), bulk("0"));
        assert_eq!(h.run("HINCRBYFLOAT h e 1e-5"), bulk("0.00001"));
        assert_eq!(h.run("HINCRBYFLOAT h w 0x10"), bulk("16"));
        assert_eq!(h.run("HINCRBYFLOAT h y 1"), err("ERR hash value is not a float"));
        assert_eq!(
            h.run("HINCRBYFLOAT h inf 1"),
            err("ERR increment would produce NaN or Infinity")
        );
        assert_eq!(h.run("HINCRBYFLOAT h f abc"), err("ERR value is not a valid float"));
        assert_eq!(h.run("HINCRBYFLOAT h f nan"), err("ERR value is not a valid float"));
        assert_eq!(h.run("HINCRBYFLOAT h f inf"), err("ERR value is NaN or Infinity"));
        h.run("SET s x");
        // The increment is checked before the key.
        assert_eq!(h.run("HINCRBYFLOAT s f abc"), err("ERR value is not a valid float"));
        assert_eq!(h.run("HINCRBYFLOAT s f inf"), err("ERR value is NaN or Infinity"));
        assert_eq!(h.run("HINCRBYFLOAT s f 1"), err(WRONGTYPE));
        // A long result converts the hash to a table (Redis 7.0.15 agrees).
        assert_eq!(
            h.run("HINCRBYFLOAT n a 1e60"),
            bulk("999999999999999999999373423426722168652130621984886772203520")
        );
        assert_eq!(h.run("OBJECT ENCODING n"), bulk("listpack"));
        h.run("HINCRBYFLOAT n b 1e70");
        assert_eq!(h.run("OBJECT ENCODING n"), bulk("hashtable"));
    }

    #[test]
    fn encoding_conversions() {
        let mut h = Harness::new();
        // 512 entries (hash-max-listpack-entries) stay a listpack; the 513th
        // converts.
        for i in 0..512 {
            h.run(&format!("HSET h f{i} v"));
        }
        assert_eq!(h.run("OBJECT ENCODING h"), bulk("listpack"));
        assert_eq!(h.run("HSET h f0 w f512 v"), int(1));
        assert_eq!(h.run("OBJECT ENCODING h"), bulk("hashtable"));
        assert_eq!(h.run("HLEN h"), int(513));
        assert_eq!(h.run("HGET h f0"), bulk("w"));
        // A value or field longer than 64 bytes converts.
        h.run(&format!("HSET v a {}", long(64)));
        assert_eq!(h.run("OBJECT ENCODING v"), bulk("listpack"));
        h.run(&format!("HSET v b {}", long(65)));
        assert_eq!(h.run("OBJECT ENCODING v"), bulk("hashtable"));
        assert_eq!(h.run("HSTRLEN v b"), int(65));
        h.run(&format!("HINCRBY k {} 1", long(70)));
        assert_eq!(h.run("OBJECT ENCODING k"), bulk("hashtable"));
        // HSETNX on an existing field never converts.
        h.run("HSET n a 1");
        assert_eq!(h.run(&format!("HSETNX n a {}", long(70))), int(0));
        assert_eq!(h.run("OBJECT ENCODING n"), bulk("listpack"));
        assert_eq!(h.run(&format!("HSETNX n {} 1", long(70))), int(1));
        assert_eq!(h.run("OBJECT ENCODING n"), bulk("hashtable"));
    }

    #[test]
    fn expired_hash_is_invisible_and_recreated_fresh() {
        let mut h = Harness::new();
        h.run("HSET h a 1 b 2");
        h.run("PEXPIRE h 100");
        h.advance(100);
        assert_eq!(h.run("HGET h a"), Reply::Nil);
        assert_eq!(h.run("HLEN h"), int(0));
        assert_eq!(h.run("HGETALL h"), Reply::Map(vec![]));
        assert_eq!(h.run("HEXISTS h a"), int(0));
        assert_eq!(h.run("HRANDFIELD h"), Reply::Nil);
        assert_eq!(h.run("HSCAN h 0"), Reply::Array(vec![bulk("0"), array(&[])]));
        assert_eq!(h.run("HDEL h a"), int(0));
        assert_eq!(h.run("HSET h c 3"), int(1));
        assert_eq!(h.run("HGETALL h"), map(&[("c", "3")]));
        assert_eq!(h.run("TTL h"), int(-1));
        // Counters start from zero on an expired hash.
        h.run("HSET k a 10");
        h.run("PEXPIRE k 5");
        h.advance(5);
        assert_eq!(h.run("HINCRBY k a 1"), int(1));
        h.run("PEXPIRE k 5");
        h.advance(5);
        assert_eq!(h.run("HINCRBYFLOAT k a 1.5"), bulk("1.5"));
        h.run("PEXPIRE k 5");
        h.advance(5);
        assert_eq!(h.run("HSETNX k a x"), int(1));
        assert_eq!(h.run("HGETALL k"), map(&[("a", "x")]));
    }

    #[test]
    fn hscan_small_and_large() {
        let mut h = Harness::new();
        h.run("SET s x");
        assert_eq!(h.run("HSCAN nokey abc"), err("ERR invalid cursor"));
        assert_eq!(h.run("HSCAN s abc"), err("ERR invalid cursor"));
        // Options are only parsed for an existing hash.
        assert_eq!(h.run("HSCAN nokey 0 COUNT 0"), Reply::Array(vec![bulk("0"), array(&[])]));
        assert_eq!(h.run("HSCAN s 0 COUNT 0"), err(WRONGTYPE));
        h.run("HSET h a 1 b 2 c 3");
        assert_eq!(h.run("HSCAN h 0 COUNT 0"), err("ERR syntax error"));
        assert_eq!(
            h.run("HSCAN h 0 COUNT abc"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(h.run("HSCAN h 0 TYPE string"), err("ERR syntax error"));
        assert_eq!(h.run("HSCAN h 0 MATCH"), err("ERR syntax error"));
        assert_eq!(h.run("HSCAN h 0 NOVALUES"), err("ERR syntax error"));
        assert_eq!(h.run("HSCAN h 0 MATCH a*"), Reply::Array(vec![bulk("0"), array(&["a", "1"])]));
        let all = Reply::Array(vec![bulk("0"), array(&["a", "1", "b", "2", "c", "3"])]);
        // A listpack is returned whole whatever the cursor and COUNT.
        assert_eq!(h.run("HSCAN h 123 COUNT 1"), all);
        assert_eq!(h.run("HSCAN h -1"), all);

        for i in 0..600 {
            h.run(&format!("HSET big f{i} v{i}"));
        }
        assert_eq!(h.run("OBJECT ENCODING big"), bulk("hashtable"));
        let mut seen = std::collections::BTreeMap::new();
        let mut cursor = "0".to_string();
        let mut calls = 0;
        loop {
            let Reply::Array(parts) = h.run(&format!("HSCAN big {cursor} COUNT 20")) else {
                panic!("scan reply")
            };
            let (Reply::Bulk(next), Reply::Array(items)) = (&parts[0], &parts[1]) else {
                panic!("scan reply shape")
            };
            assert!(items.len() % 2 == 0);
            for pair in items.chunks(2) {
                seen.insert(text(&pair[0]), text(&pair[1]));
            }
            calls += 1;
            cursor = String::from_utf8(next.to_vec()).unwrap();
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(seen.len(), 600);
        assert_eq!(seen.get("f7").map(String::as_str), Some("v7"));
        assert!(calls > 20, "COUNT is honoured on a table: {calls} calls");
        let Reply::Array(parts) = h.run("HSCAN big 0 COUNT 600 MATCH f1?") else { panic!() };
        let Reply::Array(items) = &parts[1] else { panic!() };
        assert_eq!(items.len(), 20, "f1? matches f10..f19, ten pairs");
    }

    #[test]
    fn hrandfield_argument_errors() {
        let mut h = Harness::new();
        h.run("SET s x");
        assert_eq!(h.run("HRANDFIELD nokey"), Reply::Nil);
        assert_eq!(h.run("HRANDFIELD nokey 5"), array(&[]));
        assert_eq!(h.run("HRANDFIELD nokey -5 WITHVALUES"), array(&[]));
        assert_eq!(h.run("HRANDFIELD nokey 0"), array(&[]));
        assert_eq!(h.run("HRANDFIELD s"), err(WRONGTYPE));
        assert_eq!(h.run("HRANDFIELD s 0"), err(WRONGTYPE));
        assert_eq!(h.run("HRANDFIELD s abc"), err("ERR value is not an integer or out of range"));
        assert_eq!(
            h.run("HRANDFIELD nokey abc WITHVALUES"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(h.run("HRANDFIELD s 1 foo"), err("ERR syntax error"));
        assert_eq!(h.run("HRANDFIELD nokey 1 WITHVALUES x"), err("ERR syntax error"));
        assert_eq!(
            h.run("HRANDFIELD nokey -9223372036854775808"),
            err("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807")
        );
        assert_eq!(
            h.run("HRANDFIELD nokey 9223372036854775807 WITHVALUES"),
            err("ERR value is out of range")
        );
        assert_eq!(
            h.run("HRANDFIELD nokey -4611686018427387904 WITHVALUES"),
            err("ERR value is out of range")
        );
        assert_eq!(
            h.run("HRANDFIELD nokey 4611686018427387904 WITHVALUES"),
            err("ERR value is out of range")
        );
        assert_eq!(h.run("HRANDFIELD nokey -4611686018427387903 WITHVALUES"), array(&[]));
    }

    fn fields(reply: Reply) -> Vec<Reply> {
        match reply {
            Reply::Array(items) => items,
            other => panic!("not an array: {other:?}"),
        }
    }

    #[test]
    fn hrandfield_counts() {
        let mut h = Harness::new();
        h.run("HSET h a 1 b 2 c 3");
        assert_eq!(h.run("HRANDFIELD h 0"), array(&[]));
        assert_eq!(h.run("HRANDFIELD h 0 WITHVALUES"), array(&[]));
        let whole = Reply::Pairs(vec![
            (bulk("a"), bulk("1")),
            (bulk("b"), bulk("2")),
            (bulk("c"), bulk("3")),
        ]);
        assert_eq!(h.run("HRANDFIELD h 3 WITHVALUES"), whole);
        assert_eq!(h.run("HRANDFIELD h 5 withvalues"), whole);
        assert_eq!(h.run("HRANDFIELD h 5"), array(&["a", "b", "c"]));
        let valid = [bulk("a"), bulk("b"), bulk("c")];
        for seed in 0..20 {
            h.seed = seed;
            let one = h.run("HRANDFIELD h");
            assert!(valid.contains(&one), "{one:?}");
            let two = fields(h.run("HRANDFIELD h 2"));
            assert_eq!(two.len(), 2);
            assert_ne!(two[0], two[1]);
            assert!(two.iter().all(|f| valid.contains(f)));
            let many = fields(h.run("HRANDFIELD h -10"));
            assert_eq!(many.len(), 10);
            assert!(many.iter().all(|f| valid.contains(f)));
            let Reply::Pairs(pairs) = h.run("HRANDFIELD h -4 WITHVALUES") else { panic!() };
            assert_eq!(pairs.len(), 4);
            for (f, v) in pairs {
                assert_eq!(h.run(&format!("HGET h {}", text(&f))), v);
            }
            let Reply::Pairs(pairs) = h.run("HRANDFIELD h 1 WITHVALUES") else { panic!() };
            assert_eq!(pairs.len(), 1);
        }
        // Deterministic for a given seed.
        h.seed = 7;
        assert_eq!(h.run("HRANDFIELD h -20"), h.run("HRANDFIELD h -20"));
        // Repeats happen with a negative count, every field shows up eventually.
        let many = fields(h.run("HRANDFIELD h -300"));
        assert!(valid.iter().all(|f| many.contains(f)));
        // Distinct picks on a large table hash.
        for i in 0..600 {
            h.run(&format!("HSET big f{i} {i}"));
        }
        assert_eq!(h.run("OBJECT ENCODING big"), bulk("hashtable"));
        for count in [10, 150, 599] {
            let mut got = fields(h.run(&format!("HRANDFIELD big {count}")));
            got.sort_by_key(text);
            got.dedup();
            assert_eq!(got.len(), count);
        }
        assert_eq!(fields(h.run("HRANDFIELD big 600")).len(), 600);
        assert_eq!(fields(h.run("HRANDFIELD big -1000")).len(), 1000);
        let Reply::Pairs(pairs) = h.run("HRANDFIELD big 3 WITHVALUES") else { panic!() };
        for (f, v) in pairs {
            assert_eq!(text(&f), format!("f{}", text(&v)));
        }
    }

    fn ints(v: &[i64]) -> Reply {
        Reply::Array(v.iter().map(|&n| int(n)).collect())
    }

    /// The examples of the redis.io pages of HEXPIRE, HEXPIREAT, HTTL,
    /// HEXPIRETIME, HPEXPIRE, HPTTL and HPERSIST. Where a page shows `(nil)`
    /// for a missing key (written before 7.4.0 GA), Redis 7.4 replies -2 per
    /// field (`hexpireGenericCommand`), and so does this engine.
    #[test]
    fn hfe_documented_examples() {
        let mut h = Harness::new();
        h.now = 1_715_704_404_000;
        // HEXPIRE
        assert_eq!(h.run("HEXPIRE no-key 20 NX FIELDS 2 field1 field2"), ints(&[-2, -2]));
        assert_eq!(h.run("HSET mykey field1 hello field2 world"), int(2));
        assert_eq!(h.run("HEXPIRE mykey 10 FIELDS 3 field1 field2 field3"), ints(&[1, 1, -2]));
        h.advance(10_000);
        assert_eq!(h.run("HGETALL mykey"), Reply::Map(vec![]));
        // HEXPIREAT: 1715704971 is 567 s after the example's clock.
        let mut h = Harness::new();
        h.now = 1_715_704_404_000;
        h.run("HSET mykey field1 hello field2 world");
        assert_eq!(h.run("HEXPIREAT mykey 1715704971 FIELDS 2 field1 field2"), ints(&[1, 1]));
        assert_eq!(h.run("HTTL mykey FIELDS 2 field1 field2"), ints(&[567, 567]));
        // HTTL
        h.run("DEL mykey");
        assert_eq!(h.run("HTTL no-key FIELDS 3 field1 field2 field3"), ints(&[-2, -2, -2]));
        h.run("HSET mykey field1 hello field2 world");
        assert_eq!(h.run("HEXPIRE mykey 300 FIELDS 2 field1 field3"), ints(&[1, -2]));
        h.advance(17_000);
        assert_eq!(h.run("HTTL mykey FIELDS 3 field1 field2 field3"), ints(&[283, -1, -2]));
        // HEXPIRETIME / HPEXPIRETIME
        let mut h = Harness::new();
        h.now = 1_715_705_614_000;
        h.run("HSET mykey field1 hello field2 world");
        assert_eq!(h.run("HEXPIRE mykey 300 FIELDS 2 field1 field2"), ints(&[1, 1]));
        assert_eq!(
            h.run("HEXPIRETIME mykey FIELDS 2 field1 field2"),
            ints(&[1_715_705_914, 1_715_705_914])
        );
        assert_eq!(
            h.run("HPEXPIRETIME mykey FIELDS 2 field1 field2"),
            ints(&[1_715_705_914_000, 1_715_705_914_000])
        );
        // HPERSIST
        h.run("DEL mykey");
        h.run("HSET mykey field1 hello field2 world");
        assert_eq!(h.run("HEXPIRE mykey 300 FIELDS 2 field1 field2"), ints(&[1, 1]));
        assert_eq!(h.run("HPERSIST mykey FIELDS 1 field2"), ints(&[1]));
        assert_eq!(h.run("HTTL mykey FIELDS 2 field1 field2"), ints(&[300, -1]));
        // HPEXPIRE / HPTTL
        h.run("DEL mykey");
        h.run("HSET mykey field1 hello field2 world");
        assert_eq!(h.run("HPEXPIRE mykey 2000 FIELDS 2 field1 field2"), ints(&[1, 1]));
        h.advance(350);
        assert_eq!(h.run("HPTTL mykey FIELDS 2 field1 field2"), ints(&[1650, 1650]));
    }

    #[test]
    fn hexpire_conditions_and_codes() {
        let mut h = Harness::new();
        h.run("HSET h a 1 b 2 c 3");
        assert_eq!(h.run("HPEXPIRE h 1000 NX FIELDS 2 a zz"), ints(&[1, -2]));
        assert_eq!(h.run("HPEXPIRE h 2000 NX FIELDS 2 a b"), ints(&[0, 1]));
        assert_eq!(h.run("HPEXPIRE h 500 XX FIELDS 2 a c"), ints(&[1, 0]));
        assert_eq!(h.run("HPEXPIRE h 400 GT FIELDS 2 a c"), ints(&[0, 0]));
        assert_eq!(h.run("HPEXPIRE h 600 GT FIELDS 1 a"), ints(&[1]));
        // LT: a field without TTL counts as infinite.
        assert_eq!(h.run("HPEXPIRE h 700 LT FIELDS 3 a b c"), ints(&[0, 1, 1]));
        assert_eq!(h.run("HPTTL h FIELDS 3 a b c"), ints(&[600, 700, 700]));
        // A time not in the future deletes the field (2); the last one
        // deletes the hash.
        assert_eq!(h.run("HPEXPIRE h 0 FIELDS 2 a a"), ints(&[2, -2]));
        assert_eq!(h.run("HEXPIREAT h 1 FIELDS 2 b c"), ints(&[2, 2]));
        assert_eq!(h.run("EXISTS h"), int(0));
        // Errors, in Redis's order.
        h.run("SET s x");
        assert_eq!(h.run("HEXPIRE s abc FIELDS 1 a"), err(WRONGTYPE));
        assert_eq!(h.run("HTTL s FIELDS 0 a"), err(WRONGTYPE));
        assert_eq!(
            h.run("HEXPIRE h abc FIELDS 1 a"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(h.run("HEXPIRE h -1 FIELDS 1 a"), err("ERR invalid expire time, must be >= 0"));
        assert_eq!(
            h.run("HEXPIRE h 70368744177664 FIELDS 1 a"),
            err("ERR invalid expire time in 'hexpire' command")
        );
        assert_eq!(
            h.run("HPEXPIREAT h 70368744177664 FIELDS 1 a"),
            err("ERR invalid expire time in 'hpexpireat' command")
        );
        assert_eq!(
            h.run("HEXPIRE h 10 XX 1 a"),
            err("ERR Mandatory argument FIELDS is missing or not at the right position")
        );
        assert_eq!(
            h.run("HEXPIRE h 10 FIELDS 0 a"),
            err("ERR Parameter `numFields` should be greater than 0")
        );
        assert_eq!(
            h.run("HEXPIRE h 10 FIELDS 2 a"),
            err("ERR The `numfields` parameter must match the number of arguments")
        );
        assert_eq!(
            h.run("HTTL h FIELDS x a"),
            err("ERR Number of fields must be a positive integer")
        );
        assert_eq!(
            h.run("HPERSIST h FIELDS 3 a"),
            err("ERR The `numfields` parameter must match the number of arguments")
        );
        assert_eq!(h.run("HPERSIST nokey FIELDS 2 a b"), ints(&[-2, -2]));
    }

    #[test]
    fn expired_fields_are_never_read() {
        let mut h = Harness::new();
        h.run("HSET h a 1 b 2 c 3");
        h.run("HPEXPIRE h 100 FIELDS 2 a b");
        h.advance(99);
        assert_eq!(h.run("HGET h a"), bulk("1"));
        h.advance(1);
        // Expired at its time, before any purge or write.
        assert_eq!(h.run("HGET h a"), Reply::Nil);
        assert_eq!(h.run("HMGET h a c"), Reply::Array(vec![Reply::Nil, bulk("3")]));
        assert_eq!(h.run("HEXISTS h b"), int(0));
        assert_eq!(h.run("HLEN h"), int(1));
        assert_eq!(h.run("HSTRLEN h a"), int(0));
        assert_eq!(h.run("HGETALL h"), map(&[("c", "3")]));
        assert_eq!(h.run("HKEYS h"), array(&["c"]));
        assert_eq!(h.run("HVALS h"), array(&["3"]));
        assert_eq!(h.run("HSCAN h 0"), Reply::Array(vec![bulk("0"), array(&["c", "3"])]));
        assert_eq!(h.run("HRANDFIELD h"), bulk("c"));
        assert_eq!(h.run("HRANDFIELD h -5"), array(&["c", "c", "c", "c", "c"]));
        assert_eq!(h.run("HTTL h FIELDS 2 a c"), ints(&[-2, -1]));
        assert_eq!(h.run("SORT l BY nosort GET h->a"), array(&[]));
        // A write removes them first: HINCRBY starts from 0, HSETNX sets.
        assert_eq!(h.run("HINCRBY h a 5"), int(5));
        assert_eq!(h.run("HSETNX h b x"), int(1));
        assert_eq!(h.run("HTTL h FIELDS 2 a b"), ints(&[-1, -1]));
        // The last fields expiring leave an empty hash nobody reads.
        h.run("HPEXPIRE h 10 FIELDS 3 a b c");
        h.advance(10);
        assert_eq!(h.run("HGETALL h"), Reply::Map(vec![]));
        assert_eq!(h.run("HRANDFIELD h"), Reply::Nil);
        assert_eq!(h.run("HRANDFIELD h 2 WITHVALUES"), array(&[]));
        assert_eq!(h.run("HSET h z 1"), int(1));
        assert_eq!(h.run("HGETALL h"), map(&[("z", "1")]));
    }

    #[test]
    fn hset_clears_and_hincrby_keeps_field_ttl() {
        let mut h = Harness::new();
        h.run("HSET h a 1 b 2");
        h.run("HEXPIRE h 100 FIELDS 2 a b");
        h.run("HINCRBY h a 1");
        h.run("HINCRBYFLOAT h b 1.5");
        assert_eq!(h.run("HTTL h FIELDS 2 a b"), ints(&[100, 100]));
        h.run("HSET h a 9");
        assert_eq!(h.run("HTTL h FIELDS 2 a b"), ints(&[-1, 100]));
        assert_eq!(h.run("HSETNX h b 7"), int(0));
        assert_eq!(h.run("HTTL h FIELDS 1 b"), ints(&[100]));
        h.run("HDEL h b");
        h.run("HSET h b 1");
        assert_eq!(h.run("HTTL h FIELDS 1 b"), ints(&[-1]));
        assert_eq!(h.run("HPERSIST h FIELDS 2 a b"), ints(&[-1, -1]));
    }

    #[test]
    fn listpackex_encoding_and_order() {
        let mut h = Harness::new();
        h.run("HSET h a 1 b 2 c 3 d 4");
        assert_eq!(h.run("OBJECT ENCODING h"), bulk("listpack"));
        // Any HEXPIRE on the hash switches it, even one that sets nothing.
        assert_eq!(h.run("HEXPIRE h 100 FIELDS 1 nope"), ints(&[-2]));
        assert_eq!(h.run("OBJECT ENCODING h"), bulk("listpackex"));
        // Fields with a TTL come first by expiry, the rest keep their order.
        h.run("HEXPIRE h 300 FIELDS 1 c");
        h.run("HEXPIRE h 200 FIELDS 1 d");
        assert_eq!(h.run("HKEYS h"), array(&["d", "c", "a", "b"]));
        // Equal times: the field set last goes first.
        h.run("HEXPIRE h 200 FIELDS 1 b");
        assert_eq!(h.run("HKEYS h"), array(&["b", "d", "c", "a"]));
        // HPERSIST and HSET move a field to the end; HINCRBY does not.
        h.run("HPERSIST h FIELDS 1 d");
        assert_eq!(h.run("HKEYS h"), array(&["b", "c", "a", "d"]));
        h.run("HSET h b 9");
        assert_eq!(h.run("HKEYS h"), array(&["c", "a", "d", "b"]));
        h.run("HINCRBY h c 1");
        assert_eq!(h.run("HKEYS h"), array(&["c", "a", "d", "b"]));
        h.run("HPERSIST h FIELDS 1 c");
        assert_eq!(h.run("OBJECT ENCODING h"), bulk("listpackex"));
        h.run(&format!("HSET h long {}", long(70)));
        assert_eq!(h.run("OBJECT ENCODING h"), bulk("hashtable"));
        h.run("HEXPIRE h 50 FIELDS 1 a");
        assert_eq!(h.run("HTTL h FIELDS 1 a"), ints(&[50]));
    }

    #[test]
    fn field_ttls_travel_with_the_key_and_dump_refuses() {
        let mut h = Harness::new();
        h.run("HSET h a 1 b 2");
        h.run("HPEXPIRE h 5000 FIELDS 1 a");
        assert_eq!(h.run("RENAME h r"), Reply::Ok);
        assert_eq!(h.run("HPTTL r FIELDS 2 a b"), ints(&[5000, -1]));
        assert_eq!(h.run("COPY r c"), int(1));
        assert_eq!(h.run("HPTTL c FIELDS 1 a"), ints(&[5000]));
        assert_eq!(h.run("MOVE c 1"), int(1));
        assert_eq!(
            h.run("DUMP r"),
            err("ERR DUMP of a hash with field expiration times is not supported")
        );
        // Once the TTL ran out, DUMP writes the fields that are left.
        h.advance(5000);
        let Reply::Bulk(payload) = h.run("DUMP r") else { panic!("DUMP") };
        h.run("DEL r");
        let argv = vec![
            bytes::Bytes::from_static(b"RESTORE"),
            bytes::Bytes::from_static(b"r"),
            bytes::Bytes::from_static(b"0"),
            payload,
        ];
        h.index += 1;
        let stamp = crate::state::Stamp { index: h.index, time_ms: h.now, seed: 1 };
        assert_eq!(h.state.apply(&stamp, &crate::state::Op::Command { db: 0, argv }), Reply::Ok);
        assert_eq!(h.run("HGETALL r"), map(&[("b", "2")]));
        assert_eq!(h.run("OBJECT ENCODING r"), bulk("listpack"));
    }

    fn text(r: &Reply) -> String {
        match r {
            Reply::Bulk(b) => String::from_utf8(b.to_vec()).unwrap(),
            other => panic!("not bulk: {other:?}"),
        }
    }
}

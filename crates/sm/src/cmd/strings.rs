//! String commands: GET SET and its variants, counters, APPEND, ranges.

use bytes::{Bytes, BytesMut};

use crate::args::{self, Res};
use crate::cmd::conditional::digest_matches;
use crate::cmd::keys::{adds_key, invalid_expire, notify_new};
use crate::command::{arity_error, Spec};
use crate::db::Object;
use crate::event::Class;
use crate::float::{self, AddError};
use crate::reply::{errors, Reply};
use crate::state::{Exec, Query};
use crate::value::Value;

/// `proto-max-bulk-len`: the largest string a command may build. Fixed (not
/// CONFIG SET-able) because every replica must refuse the same writes.
pub const MAX_STRING_LEN: i64 = 512 * 1024 * 1024;

pub const COMMANDS: &[Spec] = &[
    Spec::read("get", 2, (1, 1, 1), get),
    Spec::write("set", -3, (1, 1, 1), set),
    Spec::write("setnx", 3, (1, 1, 1), setnx),
    Spec::write("setex", 4, (1, 1, 1), setex),
    Spec::write("psetex", 4, (1, 1, 1), psetex),
    Spec::write("getset", 3, (1, 1, 1), getset),
    Spec::write("getdel", 2, (1, 1, 1), getdel),
    Spec::write("getex", -2, (1, 1, 1), getex),
    Spec::read("mget", -2, (1, -1, 1), mget),
    Spec::write("mset", -3, (1, -1, 2), mset),
    Spec::write("msetnx", -3, (1, -1, 2), msetnx),
    Spec::write("incr", 2, (1, 1, 1), incr),
    Spec::write("decr", 2, (1, 1, 1), decr),
    Spec::write("incrby", 3, (1, 1, 1), incrby),
    Spec::write("decrby", 3, (1, 1, 1), decrby),
    Spec::write("incrbyfloat", 3, (1, 1, 1), incrbyfloat),
    Spec::write("append", 3, (1, 1, 1), append),
    Spec::read("strlen", 2, (1, 1, 1), strlen),
    Spec::read("getrange", 4, (1, 1, 1), getrange),
    Spec::read("substr", 4, (1, 1, 1), getrange),
    Spec::write("setrange", 4, (1, 1, 1), setrange),
];

fn own(b: &[u8]) -> Bytes {
    Bytes::copy_from_slice(b)
}

/// GET key
fn get(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    Ok(q.db().get_str(&argv[1], q.now)?.cloned().into())
}

/// How SET and GETEX were told to change the TTL.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ttl {
    Unchanged,
    /// EX/PX: relative to the entry time.
    Relative,
    /// EXAT/PXAT: absolute.
    Absolute,
    Keep,
    Persist,
}

/// SET's value conditions (Redis 8.4): compare the current string, or its
/// digest, with the argument.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cond<'a> {
    /// IFEQ: set only if the value equals (a missing key is not created).
    Eq(&'a [u8]),
    /// IFNE: set only if the value differs (a missing key is created).
    Ne(&'a [u8]),
    /// IFDEQ: set only if the value's digest equals (missing: not created).
    DigestEq(&'a [u8]),
    /// IFDNE: set only if the value's digest differs (missing: created).
    DigestNe(&'a [u8]),
}

impl<'a> Cond<'a> {
    fn parse(word: &[u8], arg: &'a [u8]) -> Option<Cond<'a>> {
        Some(match word.to_ascii_uppercase().as_slice() {
            b"IFEQ" => Cond::Eq(arg),
            b"IFNE" => Cond::Ne(arg),
            b"IFDEQ" => Cond::DigestEq(arg),
            b"IFDNE" => Cond::DigestNe(arg),
            _ => return None,
        })
    }

    /// Whether the condition lets SET write over `current` (`None`: the key
    /// does not exist). A digest argument is checked only when there is a
    /// value to compare it with, as Redis does.
    fn allows(self, current: Option<&[u8]>) -> Res<bool> {
        Ok(match (self, current) {
            (Cond::Eq(_) | Cond::DigestEq(_), None) => false,
            (Cond::Ne(_) | Cond::DigestNe(_), None) => true,
            (Cond::Eq(v), Some(cur)) => cur == v,
            (Cond::Ne(v), Some(cur)) => cur != v,
            (Cond::DigestEq(d), Some(cur)) => digest_matches(cur, d)?,
            (Cond::DigestNe(d), Some(cur)) => !digest_matches(cur, d)?,
        })
    }

    fn same_kind(self, other: Cond) -> bool {
        std::mem::discriminant(&self) == std::mem::discriminant(&other)
    }
}

/// The parsed options of SET / GETEX (Redis's `parseExtendedStringArgumentsOrReply`).
struct StringOpts<'a> {
    nx: bool,
    xx: bool,
    /// IFEQ / IFNE / IFDEQ / IFDNE (SET only).
    cond: Option<Cond<'a>>,
    get: bool,
    ttl: Ttl,
    /// The EX/PX/EXAT/PXAT argument and whether it is in seconds.
    expire: Option<(&'a [u8], bool)>,
}

fn parse_string_opts(argv: &[Bytes], first: usize, is_set: bool) -> Res<StringOpts<'_>> {
    let mut o = StringOpts {
        nx: false,
        xx: false,
        cond: None,
        get: false,
        ttl: Ttl::Unchanged,
        expire: None,
    };
    let mut j = first;
    while j < argv.len() {
        let opt = argv[j].as_ref();
        let has_next = j + 1 < argv.len();
        let no_ttl = o.ttl == Ttl::Unchanged;
        let upper = opt.to_ascii_uppercase();
        // The conditions exclude each other, in either order (Redis 8.10:
        // `SET k v IFEQ a NX` and `SET k v NX IFEQ a` are syntax errors). The
        // same one may repeat, as NX and XX always could; for IF* the last
        // argument wins. Choice: the repeat of an IF* option is not covered
        // by the docs or tests; it is treated like a repeated EX.
        let cond = match (is_set, has_next) {
            (true, true) => Cond::parse(&upper, &argv[j + 1]),
            _ => None,
        };
        if let Some(cond) = cond {
            if o.nx || o.xx || o.cond.is_some_and(|c| !c.same_kind(cond)) {
                return Err(Reply::err(errors::SYNTAX));
            }
            o.cond = Some(cond);
            j += 2;
            continue;
        }
        match upper.as_slice() {
            b"NX" if is_set && !o.xx && o.cond.is_none() => o.nx = true,
            b"XX" if is_set && !o.nx && o.cond.is_none() => o.xx = true,
            b"GET" if is_set => o.get = true,
            b"KEEPTTL" if is_set && (no_ttl || o.ttl == Ttl::Keep) => o.ttl = Ttl::Keep,
            b"PERSIST" if !is_set && (no_ttl || o.ttl == Ttl::Persist) => o.ttl = Ttl::Persist,
            b"EX" | b"PX" | b"EXAT" | b"PXAT" if has_next => {
                // The same option may repeat (the last one wins); a different
                // TTL option conflicts.
                let seconds = upper[0] == b'E';
                let absolute = upper.len() == 4;
                let kind = if absolute { Ttl::Absolute } else { Ttl::Relative };
                let same = o.ttl == kind && o.expire.is_some_and(|(_, s)| s == seconds);
                if !(o.ttl == Ttl::Unchanged || same) {
                    return Err(Reply::err(errors::SYNTAX));
                }
                o.ttl = kind;
                o.expire = Some((&argv[j + 1], seconds));
                j += 1;
            }
            _ => return Err(Reply::err(errors::SYNTAX)),
        }
        j += 1;
    }
    Ok(o)
}

/// Resolves an EX/PX/EXAT/PXAT argument to absolute milliseconds, with Redis's
/// checks (`getExpireMillisecondsOrReply`).
fn expire_ms(o: &StringOpts, now: i64, name: &str) -> Res<Option<i64>> {
    let Some((arg, seconds)) = o.expire else { return Ok(None) };
    let n = args::int(arg)?;
    if n <= 0 || (seconds && n > i64::MAX / 1000) {
        return Err(invalid_expire(name));
    }
    let mut ms = if seconds { n * 1000 } else { n };
    if o.ttl == Ttl::Relative {
        ms = ms.checked_add(now).ok_or_else(|| invalid_expire(name))?;
    }
    Ok(Some(ms))
}

/// SET key value [NX | XX | IFEQ ifeq-value | IFNE ifne-value |
///   IFDEQ ifdeq-digest | IFDNE ifdne-digest] [GET] [EX seconds |
///   PX milliseconds | EXAT unix-time-seconds | PXAT unix-time-milliseconds |
///   KEEPTTL]
///
/// The IF* conditions are Redis 8.4's (redis.io/commands/set): a failed
/// condition replies nil (or, with GET, the old value) and changes nothing;
/// IFEQ/IFDEQ never create a missing key, IFNE/IFDNE do; a key of another type
/// is WRONGTYPE (with GET, from GET itself); a digest of the wrong length is
/// an error only when there is a value to compare. Choice: with GET and a
/// digest of the wrong length Redis sends the old value and then the error
/// (two replies to one command); here the reply is the error alone.
fn set(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let o = parse_string_opts(argv, 3, true)?;
    set_generic(x, &argv[1], &argv[2], &o, "set", Reply::Ok, Reply::Nil)
}

fn set_generic(
    x: &mut Exec,
    key: &[u8],
    value: &[u8],
    o: &StringOpts,
    name: &str,
    ok: Reply,
    abort: Reply,
) -> Res<Reply> {
    let now = x.now;
    let expire_at = expire_ms(o, now, name)?;
    let db = x.db();
    db.expire_if_needed(key, now);
    let old = if o.get { Some(db.get_str(key, now)?.cloned()) } else { None };
    if o.nx || o.xx {
        let found = db.contains(key, now);
        if (o.nx && found) || (o.xx && !found) {
            return Ok(old.map_or(abort, Reply::from));
        }
    }
    if let Some(cond) = o.cond {
        let current = match db.object(key, now) {
            None => None,
            Some(Object { value: Value::Str(s), .. }) => Some(s),
            Some(_) => return Err(Reply::err(errors::WRONGTYPE)),
        };
        if !cond.allows(current.map(|s| s.as_ref()))? {
            return Ok(old.map_or(abort, Reply::from));
        }
    }
    let value = Value::Str(own(value));
    let adds = adds_key(x, x.db, key);
    let db = x.db();
    if o.ttl == Ttl::Keep {
        db.set_keep_ttl(key, value, now);
    } else {
        db.set_object(key, Object::with(value, expire_at, false));
    }
    let db = x.db;
    notify_new(x, db, key, adds);
    x.modified(key);
    x.notify(Class::String, "set", key);
    if expire_at.is_some() {
        x.notify(Class::Generic, "expire", key);
    }
    Ok(old.map_or(ok, Reply::from))
}

/// SETNX key value
fn setnx(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let o = StringOpts {
        nx: true,
        xx: false,
        cond: None,
        get: false,
        ttl: Ttl::Unchanged,
        expire: None,
    };
    set_generic(x, &argv[1], &argv[2], &o, "setnx", Reply::Int(1), Reply::Int(0))
}

/// SETEX key seconds value
fn setex(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let o = StringOpts {
        nx: false,
        xx: false,
        cond: None,
        get: false,
        ttl: Ttl::Relative,
        expire: Some((&argv[2], true)),
    };
    set_generic(x, &argv[1], &argv[3], &o, "setex", Reply::Ok, Reply::Nil)
}

/// PSETEX key milliseconds value
fn psetex(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let o = StringOpts {
        nx: false,
        xx: false,
        cond: None,
        get: false,
        ttl: Ttl::Relative,
        expire: Some((&argv[2], false)),
    };
    set_generic(x, &argv[1], &argv[3], &o, "psetex", Reply::Ok, Reply::Nil)
}

/// GETSET key value
fn getset(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let now = x.now;
    let db = x.db();
    db.expire_if_needed(&argv[1], now);
    let old = db.get_str(&argv[1], now)?.cloned();
    let adds = adds_key(x, x.db, &argv[1]);
    x.db().set(&argv[1], Value::Str(own(&argv[2])));
    let db = x.db;
    notify_new(x, db, &argv[1], adds);
    x.modified(&argv[1]);
    x.notify(Class::String, "set", &argv[1]);
    Ok(old.into())
}

/// GETDEL key
fn getdel(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let now = x.now;
    let db = x.db();
    db.expire_if_needed(&argv[1], now);
    let old = db.get_str(&argv[1], now)?.cloned();
    if old.is_some() {
        db.remove(&argv[1]);
        x.modified(&argv[1]);
        x.notify(Class::Generic, "del", &argv[1]);
    }
    Ok(old.into())
}

/// GETEX key [EX seconds | PX milliseconds | EXAT unix-time-seconds |
///   PXAT unix-time-milliseconds | PERSIST]
fn getex(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let o = parse_string_opts(argv, 2, false)?;
    let now = x.now;
    let db = x.db();
    db.expire_if_needed(&argv[1], now);
    let Some(value) = db.get_str(&argv[1], now)?.cloned() else { return Ok(Reply::Nil) };
    let expire_at = expire_ms(&o, now, "getex")?;
    let event = match (o.ttl, expire_at) {
        (Ttl::Relative | Ttl::Absolute, Some(at)) => {
            // A time already past (EXAT/PXAT only) deletes the key.
            db.set_expire(&argv[1], at, now);
            Some(if at <= now { "del" } else { "expire" })
        }
        (Ttl::Persist, _) => db.persist(&argv[1], now).then_some("persist"),
        _ => None,
    };
    if let Some(event) = event {
        x.modified(&argv[1]);
        x.notify(Class::Generic, event, &argv[1]);
    }
    Ok(Reply::Bulk(value))
}

/// MGET key [key ...]
fn mget(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let db = q.db();
    Ok(Reply::Array(
        argv[1..]
            .iter()
            .map(|k| match db.get(k, q.now) {
                Some(Value::Str(s)) => Reply::Bulk(s.clone()),
                _ => Reply::Nil,
            })
            .collect(),
    ))
}

/// MSET key value [key value ...]
fn mset(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    if argv.len().is_multiple_of(2) {
        return Err(arity_error("mset"));
    }
    set_pairs(x, argv);
    Ok(Reply::Ok)
}

/// MSETNX key value [key value ...]
fn msetnx(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    if argv.len().is_multiple_of(2) {
        return Err(arity_error("msetnx"));
    }
    let now = x.now;
    let db = x.db();
    if argv[1..].chunks(2).any(|pair| db.contains(&pair[0], now)) {
        return Ok(Reply::Int(0));
    }
    set_pairs(x, argv);
    Ok(Reply::Int(1))
}

/// MSET's and MSETNX's writes: each key is set, signalled and notified in
/// turn (a repeated key twice).
fn set_pairs(x: &mut Exec, argv: &[Bytes]) {
    for pair in argv[1..].chunks(2) {
        let adds = adds_key(x, x.db, &pair[0]);
        x.db().set(&pair[0], Value::Str(own(&pair[1])));
        let db = x.db;
        notify_new(x, db, &pair[0], adds);
        x.modified(&pair[0]);
        x.notify(Class::String, "set", &pair[0]);
    }
}

/// Adds `incr` to the integer at `key`, keeping its TTL.
fn incr_by(x: &mut Exec, key: &[u8], incr: i64) -> Res<Reply> {
    let now = x.now;
    let db = x.db();
    let current = match db.get_str(key, now)? {
        Some(s) => args::int(s)?,
        None => 0,
    };
    let value = current.checked_add(incr).ok_or(Reply::err(errors::OVERFLOW))?;
    let adds = adds_key(x, x.db, key);
    x.db().set_keep_ttl(key, Value::Str(args::int_bytes(value)), now);
    let db = x.db;
    notify_new(x, db, key, adds);
    x.modified(key);
    x.notify(Class::String, "incrby", key);
    Ok(Reply::Int(value))
}

/// INCR key
fn incr(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    incr_by(x, &argv[1], 1)
}

/// DECR key
fn decr(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    incr_by(x, &argv[1], -1)
}

/// INCRBY key increment
fn incrby(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let n = args::int(&argv[2])?;
    incr_by(x, &argv[1], n)
}

/// DECRBY key decrement
fn decrby(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let n = args::int(&argv[2])?;
    if n == i64::MIN {
        return Err(Reply::err("ERR decrement would overflow"));
    }
    incr_by(x, &argv[1], -n)
}

/// INCRBYFLOAT key increment
fn incrbyfloat(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let now = x.now;
    let db = x.db();
    let current = db.get_str(&argv[1], now)?.cloned().unwrap_or_else(|| Bytes::from_static(b"0"));
    let value = float::long_double_add(&current, &argv[2]).map_err(|e| match e {
        AddError::CurrentNotFloat | AddError::IncrementNotFloat => Reply::err(errors::NOT_FLOAT),
        AddError::NanOrInfinity => Reply::err(errors::NAN_OR_INF),
    })?;
    let adds = adds_key(x, x.db, &argv[1]);
    x.db().set_keep_ttl(&argv[1], Value::Str(value.clone()), now);
    let db = x.db;
    notify_new(x, db, &argv[1], adds);
    x.modified(&argv[1]);
    x.notify(Class::String, "incrbyfloat", &argv[1]);
    Ok(Reply::Bulk(value))
}

/// Redis's `checkStringLength`: the result of growing a string must fit.
fn check_len(size: i64, append: i64) -> Res<()> {
    match size.checked_add(append) {
        Some(total) if total <= MAX_STRING_LEN => Ok(()),
        _ => Err(Reply::err(errors::STRING_TOO_LONG)),
    }
}

/// APPEND key value
fn append(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let now = x.now;
    let adds = adds_key(x, x.db, &argv[1]);
    let db = x.db();
    db.expire_if_needed(&argv[1], now);
    let len = match db.object_mut(&argv[1], now) {
        None => {
            db.set(&argv[1], Value::Str(own(&argv[2])));
            argv[2].len()
        }
        Some(obj) => {
            let Value::Str(s) = &mut obj.value else {
                return Err(Reply::err(errors::WRONGTYPE));
            };
            check_len(s.len() as i64, argv[2].len() as i64)?;
            let mut buf = BytesMut::with_capacity(s.len() + argv[2].len());
            buf.extend_from_slice(s);
            buf.extend_from_slice(&argv[2]);
            *s = buf.freeze();
            obj.raw = true;
            s.len()
        }
    };
    // Even an empty APPEND signals (and creates an empty string).
    let db = x.db;
    notify_new(x, db, &argv[1], adds);
    x.modified(&argv[1]);
    x.notify(Class::String, "append", &argv[1]);
    Ok(Reply::Int(len as i64))
}

/// STRLEN key
fn strlen(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    Ok(Reply::Int(q.db().get_str(&argv[1], q.now)?.map_or(0, |s| s.len() as i64)))
}

/// GETRANGE key start end (and its old name SUBSTR)
fn getrange(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let mut start = args::int(&argv[2])?;
    let mut end = args::int(&argv[3])?;
    let empty = Reply::Bulk(Bytes::new());
    let Some(s) = q.db().get_str(&argv[1], q.now)? else { return Ok(empty) };
    let len = s.len() as i64;
    if start < 0 && end < 0 && start > end {
        return Ok(empty);
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return Ok(empty);
    }
    Ok(Reply::Bulk(s.slice(start as usize..=end as usize)))
}

/// SETRANGE key offset value
fn setrange(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let offset = args::int(&argv[2])?;
    if offset < 0 {
        return Err(Reply::err("ERR offset is out of range"));
    }
    let value = &argv[3];
    let now = x.now;
    let db = x.db();
    db.expire_if_needed(&argv[1], now);
    let current = match db.object(&argv[1], now) {
        None => {
            if value.is_empty() {
                return Ok(Reply::Int(0));
            }
            check_len(offset, value.len() as i64)?;
            Bytes::new()
        }
        Some(obj) => {
            let Value::Str(s) = &obj.value else { return Err(Reply::err(errors::WRONGTYPE)) };
            if value.is_empty() {
                return Ok(Reply::Int(s.len() as i64));
            }
            check_len(offset, value.len() as i64)?;
            s.clone()
        }
    };
    let offset = offset as usize;
    let mut buf = BytesMut::from(current.as_ref());
    if buf.len() < offset + value.len() {
        buf.resize(offset + value.len(), 0);
    }
    buf[offset..offset + value.len()].copy_from_slice(value);
    let len = buf.len();
    let adds = adds_key(x, x.db, &argv[1]);
    let db = x.db();
    db.set_keep_ttl(&argv[1], Value::Str(buf.freeze()), now);
    if let Some(obj) = db.object_mut(&argv[1], now) {
        obj.raw = true;
    }
    let db = x.db;
    notify_new(x, db, &argv[1], adds);
    x.modified(&argv[1]);
    x.notify(Class::String, "setrange", &argv[1]);
    Ok(Reply::Int(len as i64))
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    use crate::Reply;

    #[test]
    fn set_options_and_errors() {
        let mut h = Harness::new();
        assert_eq!(h.run("SET k v NX"), Reply::Ok);
        assert_eq!(h.run("SET k w NX"), Reply::Nil);
        assert_eq!(h.run("SET k w XX GET"), bulk("v"));
        assert_eq!(h.run("SET k v NX XX"), err("ERR syntax error"));
        assert_eq!(h.run("SET k v EX 10 PX 100"), err("ERR syntax error"));
        assert_eq!(h.run("SET k v EX 10 EX 20"), Reply::Ok);
        assert_eq!(h.run("TTL k"), int(20));
        assert_eq!(h.run("SET k v EX 0"), err("ERR invalid expire time in 'set' command"));
        assert_eq!(h.run("SET k v EX abc"), err("ERR value is not an integer or out of range"));
        assert_eq!(h.run("SET k v KEEPTTL"), Reply::Ok);
        assert_eq!(h.run("TTL k"), int(20));
        assert_eq!(h.run("SET k v"), Reply::Ok);
        assert_eq!(h.run("TTL k"), int(-1));
    }

    #[test]
    fn ttl_expires_at_the_exact_millisecond() {
        let mut h = Harness::new();
        h.run("SET k v PX 1500");
        h.advance(1499);
        assert_eq!(h.run("GET k"), bulk("v"));
        assert_eq!(h.run("PTTL k"), int(1));
        h.advance(1);
        assert_eq!(h.run("GET k"), Reply::Nil);
        assert_eq!(h.run("PTTL k"), int(-2));
        assert_eq!(h.run("EXISTS k"), int(0));
    }

    #[test]
    fn counters_keep_ttl_and_detect_overflow() {
        let mut h = Harness::new();
        assert_eq!(h.run("INCR c"), int(1));
        assert_eq!(h.run("EXPIRE c 60"), int(1));
        assert_eq!(h.run("INCRBY c 41"), int(42));
        assert_eq!(h.run("TTL c"), int(60));
        h.run("SET big 9223372036854775807");
        assert_eq!(h.run("INCR big"), err("ERR increment or decrement would overflow"));
        assert_eq!(h.run("DECRBY c -9223372036854775808"), err("ERR decrement would overflow"));
        h.run("SET s abc");
        assert_eq!(h.run("INCR s"), err("ERR value is not an integer or out of range"));
        assert_eq!(h.run("INCRBYFLOAT f 1.1"), bulk("1.1"));
        assert_eq!(h.run("INCRBYFLOAT f 2.2"), bulk("3.3"));
        assert_eq!(h.run("INCRBYFLOAT s 1"), err("ERR value is not a valid float"));
    }

    #[test]
    fn ranges_and_append() {
        let mut h = Harness::new();
        assert_eq!(h.run("APPEND s Hello"), int(5));
        assert_eq!(h.run("APPEND s World"), int(10));
        assert_eq!(h.run("GETRANGE s 0 4"), bulk("Hello"));
        assert_eq!(h.run("GETRANGE s -5 -1"), bulk("World"));
        assert_eq!(h.run("GETRANGE s 5 1"), bulk(""));
        assert_eq!(h.run("SETRANGE s 12 !"), int(13));
        assert_eq!(h.run("GET s"), bulk("HelloWorld\0\0!"));
        assert_eq!(h.run("SETRANGE n 0 \"\""), int(0));
        assert_eq!(h.run("EXISTS n"), int(0));
        assert_eq!(h.run("SETRANGE s -1 x"), err("ERR offset is out of range"));
    }
}

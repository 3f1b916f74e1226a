//! Conditional writes from releases after Redis 7.0: DELIFEQ (Valkey 9.0),
//! DELEX and DIGEST (Redis 8.4), INCREX (Redis 8.8 / Valkey 9.2). SET's
//! IFEQ/IFNE/IFDEQ/IFDNE options live with SET in `strings.rs` and use the
//! digest helpers here.
//!
//! A real redis-server 7.0 has none of these, so they are written against the
//! commands' documentation and, where it is silent, against what the newer
//! servers do (their test suites and sources, as cited per command). Choices
//! made where neither says anything are marked "Choice:" in the comments.
//!
//! Like every handler, these read the entry's time (`x.now`) and nothing else,
//! so every replica gives the same reply and makes the same change.

use std::cmp::Ordering;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::args::{self, is, Res};
use crate::cmd::keys::{adds_key, notify_new};
use crate::command::{arity_error, Spec};
use crate::event::Class;
use crate::float::{self, AddError, LongDouble};
use crate::reply::{errors, Reply};
use crate::state::{Exec, Query};
use crate::value::Value;

pub const COMMANDS: &[Spec] = &[
    Spec::write("delifeq", 3, (1, 1, 1), delifeq),
    Spec::write("delex", -2, (1, 1, 1), delex),
    Spec::read("digest", 2, (1, 1, 1), digest),
    Spec::write("increx", -2, (1, 1, 1), increx),
];

/// Length of a digest in hex characters (Redis's `DIGEST_HEX_LENGTH`).
pub const DIGEST_HEX_LEN: usize = 16;

/// Redis's `validateHexDigest` reply. The docs give no text; Redis's tests
/// match `*must be exactly 16 hexadecimal characters*`. redis/redis #14502
/// added it as `addReplyError(c, "must be exactly 16 hexadecimal
/// characters")` (so with "ERR "), later moved into `validateHexDigest` as an
/// `addReplyErrorFormat` of `DIGEST_HEX_LENGTH`. Only the length is checked,
/// as Redis does: 16 characters that are not hex simply never match.
pub const DIGEST_LENGTH_ERR: &str = "ERR must be exactly 16 hexadecimal characters";

/// DELEX with a condition on a key that is not a string (Redis 8.4's
/// `delexCommand`; what redis-server 8.10.2 replies).
pub const DELEX_TYPE_ERR: &str = "ERR Key should be of string type if conditions are specified";

/// DELEX with a fourth argument that is none of the conditions.
pub const DELEX_CONDITION_ERR: &str = "ERR Invalid condition. Use IFEQ, IFNE, IFDEQ, or IFDNE";

/// The digest of a string value, as DIGEST replies it: XXH3 64-bit with the
/// default seed (0) and secret, over the string's bytes (an integer-encoded
/// value hashes its decimal text, which is what is stored here), printed as
/// 16 lowercase hex digits with leading zeros (Redis's `stringDigest`,
/// `"%016" PRIx64` since redis/redis #14502).
pub fn digest_hex(value: &[u8]) -> [u8; DIGEST_HEX_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let h = xxhash_rust::xxh3::xxh3_64(value);
    let mut out = [0u8; DIGEST_HEX_LEN];
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((h >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// True if `digest` names the digest of `value`: the IFDEQ/IFDNE comparison.
/// The argument must be 16 characters long ([`DIGEST_LENGTH_ERR`]) and is
/// compared ignoring case (Redis compares with `strcasecmp`).
pub fn digest_matches(value: &[u8], digest: &[u8]) -> Res<bool> {
    if digest.len() != DIGEST_HEX_LEN {
        return Err(Reply::err(DIGEST_LENGTH_ERR));
    }
    Ok(digest_hex(value).eq_ignore_ascii_case(digest))
}

/// Deletes the visible `key` of the selected database as DEL does: signals
/// it and emits "del". Returns whether there was one.
fn delete_key(x: &mut Exec, key: &[u8]) -> bool {
    let now = x.now;
    if x.db().delete(key, now).is_none() {
        return false;
    }
    x.modified(key);
    x.notify(Class::Generic, "del", key);
    true
}

/// DELIFEQ key value (Valkey 9.0)
///
/// Valkey's `delifeqCommand` (with valkey-io/valkey #2120): `lookupKeyWrite`
/// (an expired key is absent), 0 if absent, WRONGTYPE if not a string, 0 if
/// the bytes differ; otherwise the key is deleted, signalled, and notified
/// as "del" (it is propagated as DEL), and the reply is 1.
fn delifeq(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let key = &argv[1];
    let now = x.now;
    let db = x.db();
    db.expire_if_needed(key, now);
    let matches = db.get_str(key, now)?.is_some_and(|s| s == &argv[2]);
    Ok(Reply::Int(i64::from(matches && delete_key(x, key))))
}

/// DELEX key [IFEQ ifeq-value | IFNE ifne-value | IFDEQ ifdeq-digest |
///   IFDNE ifdne-digest] (Redis 8.4)
///
/// Redis's `delexCommand` (db.c, after redis/redis #14529): with only the key
/// it is DEL of one key (any type); with a condition the argument count must
/// be exactly 4 (checked before the key is looked up); a missing key replies
/// 0 before the condition is even read (`DELEX missing FOO bar` is 0); a
/// non-string key is an error before the condition is read; then the
/// condition decides. A deletion is signalled and notified as "del".
fn delex(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    match argv.len() {
        2 => return Ok(Reply::Int(i64::from(delete_key(x, &argv[1])))),
        4 => {}
        _ => return Err(arity_error("delex")),
    }
    let key = &argv[1];
    let (condition, operand) = (&argv[2], &argv[3]);
    let now = x.now;
    let db = x.db();
    db.expire_if_needed(key, now);
    let Some(obj) = db.object(key, now) else { return Ok(Reply::Int(0)) };
    let Value::Str(current) = &obj.value else {
        return Err(Reply::err(DELEX_TYPE_ERR));
    };
    let delete = if is(condition, "ifeq") {
        current == operand
    } else if is(condition, "ifne") {
        current != operand
    } else if is(condition, "ifdeq") {
        digest_matches(current, operand)?
    } else if is(condition, "ifdne") {
        !digest_matches(current, operand)?
    } else {
        return Err(Reply::err(DELEX_CONDITION_ERR));
    };
    Ok(Reply::Int(i64::from(delete && delete_key(x, key))))
}

/// DIGEST key (Redis 8.4): nil for a missing key, WRONGTYPE for another type,
/// else the value's digest ([`digest_hex`]) as a bulk string.
fn digest(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    Ok(match q.db().get_str(&argv[1], q.now)? {
        None => Reply::Nil,
        Some(s) => Reply::bulk(&digest_hex(s)),
    })
}

// ---------------------------------------------------------------------------
// INCREX
// ---------------------------------------------------------------------------

/// INCREX's error texts, from Redis 8.8's tests (tests/unit/type/incr.tcl of
/// redis/redis, INCREX section) and Valkey's (which checks full texts).
const INCR_NOT_INT: &str = "ERR Increment is not an integer or out of range";
const INCR_NOT_FLOAT: &str = "ERR Increment is not a valid float";
const INCR_INFINITE: &str = "ERR BYFLOAT increment cannot be Infinity";
const LBOUND_NOT_INT: &str = "ERR LBOUND is not an integer or out of range";
const UBOUND_NOT_INT: &str = "ERR UBOUND is not an integer or out of range";
const LBOUND_NOT_FLOAT: &str = "ERR LBOUND is not a valid float";
const UBOUND_NOT_FLOAT: &str = "ERR UBOUND is not a valid float";
const BOUNDS_CROSSED: &str = "ERR LBOUND can't be greater than UBOUND";
const ENX_WITHOUT_EXPIRE: &str = "ERR ENX flag requires an expiration";
/// Choice: the tests only match `*value cannot be Infinity*`; this is the
/// shortest text that matches, in the style of "value is not a valid float".
const VALUE_INFINITE: &str = "ERR value cannot be Infinity";
const DELTA_OVERFLOW: &str = "ERR applied increment would overflow";
const DELTA_INFINITE: &str = "ERR applied increment would be Infinity";
const INVALID_EXPIRE: &str = "ERR invalid expire time in 'increx' command";

/// What INCREX was told to do with the TTL.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ExpireArg<'a> {
    /// EX / PX / EXAT / PXAT and their argument.
    At {
        arg: &'a [u8],
        seconds: bool,
        relative: bool,
    },
    Persist,
}

/// The parsed (not yet validated) options of INCREX.
#[derive(Default)]
struct IncrexOpts<'a> {
    /// BYINT / BYFLOAT and the increment; `true` for BYFLOAT.
    by: Option<(bool, &'a [u8])>,
    lbound: Option<&'a [u8]>,
    ubound: Option<&'a [u8]>,
    saturate: bool,
    expire: Option<ExpireArg<'a>>,
    enx: bool,
}

/// Reads INCREX's options, in any order. Every option may appear once (a
/// second one, even the same, is a syntax error: "duplicate options are
/// rejected" in Redis's tests), BYINT/BYFLOAT exclude each other, as do the
/// TTL options, and PERSIST excludes ENX; ENX needs one of EX/PX/EXAT/PXAT.
fn parse_increx(argv: &[Bytes]) -> Res<IncrexOpts<'_>> {
    let mut o = IncrexOpts::default();
    let syntax = || Reply::err(errors::SYNTAX);
    let mut j = 2;
    while j < argv.len() {
        let opt = argv[j].as_ref();
        let next = argv.get(j + 1).map(|b| b.as_ref());
        let mut takes_value = false;
        if is(opt, "byint") || is(opt, "byfloat") {
            let (None, Some(v)) = (o.by, next) else { return Err(syntax()) };
            o.by = Some((is(opt, "byfloat"), v));
            takes_value = true;
        } else if is(opt, "lbound") {
            let (None, Some(v)) = (o.lbound, next) else { return Err(syntax()) };
            o.lbound = Some(v);
            takes_value = true;
        } else if is(opt, "ubound") {
            let (None, Some(v)) = (o.ubound, next) else { return Err(syntax()) };
            o.ubound = Some(v);
            takes_value = true;
        } else if is(opt, "saturate") && !o.saturate {
            o.saturate = true;
        } else if is(opt, "enx") && !o.enx && o.expire != Some(ExpireArg::Persist) {
            o.enx = true;
        } else if is(opt, "persist") && o.expire.is_none() && !o.enx {
            o.expire = Some(ExpireArg::Persist);
        } else if is(opt, "ex") || is(opt, "px") || is(opt, "exat") || is(opt, "pxat") {
            let (None, Some(arg)) = (o.expire, next) else { return Err(syntax()) };
            let seconds = opt[0].eq_ignore_ascii_case(&b'e');
            o.expire = Some(ExpireArg::At { arg, seconds, relative: opt.len() == 2 });
            takes_value = true;
        } else {
            return Err(syntax());
        }
        j += if takes_value { 2 } else { 1 };
    }
    if o.enx && !matches!(o.expire, Some(ExpireArg::At { .. })) {
        return Err(Reply::err(ENX_WITHOUT_EXPIRE));
    }
    Ok(o)
}

/// Resolves EX/PX/EXAT/PXAT to absolute milliseconds with SET's checks
/// (Redis's `getExpireMillisecondsOrReply`): a positive integer whose
/// milliseconds, from now for EX/PX, still fit.
fn expire_at_ms(arg: &[u8], seconds: bool, relative: bool, now: i64) -> Res<i64> {
    let n = args::int(arg)?;
    if n <= 0 || (seconds && n > i64::MAX / 1000) {
        return Err(Reply::err(INVALID_EXPIRE));
    }
    let ms = if seconds { n * 1000 } else { n };
    if relative {
        ms.checked_add(now).ok_or(Reply::err(INVALID_EXPIRE))
    } else {
        Ok(ms)
    }
}

/// INCREX's arithmetic, with its validated arguments.
enum Mode<'a> {
    /// BYINT or no increment option: 64-bit integers.
    Int { incr: i64, lb: i64, ub: i64 },
    /// BYFLOAT: C `long double`, like INCRBYFLOAT.
    Float { incr: &'a [u8], lb: Ld, ub: Ld },
}

/// What the arithmetic decided.
enum Outcome {
    /// Out of bounds without SATURATE: nothing changes; the reply is the
    /// current value and a zero increment.
    Rejected(Reply),
    /// Store `value` (its text); reply `[value, applied]`.
    Apply { stored: Bytes, reply: Reply },
}

/// INCREX key [BYFLOAT increment | BYINT increment] [LBOUND lowerbound]
///   [UBOUND upperbound] [SATURATE] [EX seconds | PX milliseconds |
///   EXAT unix-time-seconds | PXAT unix-time-milliseconds | PERSIST] [ENX]
///
/// Redis 8.8's syntax (redis.io/commands/increx, src/commands/increx.json).
/// Valkey 9.2's INCREX also takes NX | XX; Redis does not, and Redis is this
/// engine's reference, so they are syntax errors here.
///
/// The reply is `[new value, applied increment]`. A result outside
/// [LBOUND, UBOUND] (by default the type's limits, so an integer overflow
/// too) is rejected, replying `[current value, 0]` and changing nothing (no
/// key created, no TTL touched), unless SATURATE caps it at the bound. Written
/// values keep the TTL unless EX/PX/EXAT/PXAT (which ENX applies only to a key
/// without a TTL) or PERSIST say otherwise; a new expiry already in the past
/// deletes the key instead (and replies as if the write happened).
fn increx(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let o = parse_increx(argv)?;
    // Choice: the argument values are checked in this order (increment,
    // bounds, their order, expiry) after the whole syntax; the tests only
    // exercise one bad value at a time.
    let mode = if matches!(o.by, Some((true, _))) {
        let incr = o.by.map_or(&b"1"[..], |(_, v)| v); // always Some here
        match float::classify_long_double(incr) {
            LongDouble::Invalid => return Err(Reply::err(INCR_NOT_FLOAT)),
            LongDouble::Infinite => return Err(Reply::err(INCR_INFINITE)),
            LongDouble::Finite => {}
        }
        let lb = o.lbound.map(|b| Ld::parse(b, LBOUND_NOT_FLOAT)).transpose()?.unwrap_or(Ld::Min);
        let ub = o.ubound.map(|b| Ld::parse(b, UBOUND_NOT_FLOAT)).transpose()?.unwrap_or(Ld::Max);
        if lb > ub {
            return Err(Reply::err(BOUNDS_CROSSED));
        }
        Mode::Float { incr, lb, ub }
    } else {
        let incr = match o.by {
            Some((_, v)) => args::parse_i64(v).ok_or(Reply::err(INCR_NOT_INT))?,
            None => 1,
        };
        let bound = |b: Option<&[u8]>, err: &'static str, default: i64| -> Res<i64> {
            b.map_or(Ok(default), |b| args::parse_i64(b).ok_or(Reply::err(err)))
        };
        let lb = bound(o.lbound, LBOUND_NOT_INT, i64::MIN)?;
        let ub = bound(o.ubound, UBOUND_NOT_INT, i64::MAX)?;
        if lb > ub {
            return Err(Reply::err(BOUNDS_CROSSED));
        }
        Mode::Int { incr, lb, ub }
    };
    let now = x.now;
    let expire = match o.expire {
        Some(ExpireArg::At { arg, seconds, relative }) => {
            Some(expire_at_ms(arg, seconds, relative, now)?)
        }
        _ => None,
    };

    let key = &argv[1];
    let db = x.db();
    db.expire_if_needed(key, now);
    let current = db.get_str(key, now)?;
    let had_ttl = db.expire_at(key, now).is_some();
    let existed = current.is_some();
    let current = current.map(|b| b.as_ref());
    let outcome = match &mode {
        Mode::Int { incr, lb, ub } => int_increment(current, *incr, *lb, *ub, o.saturate)?,
        Mode::Float { incr, lb, ub } => float_increment(current, incr, lb, ub, o.saturate)?,
    };
    let (stored, reply) = match outcome {
        Outcome::Rejected(reply) => return Ok(reply),
        Outcome::Apply { stored, reply } => (stored, reply),
    };

    // ENX leaves an existing TTL alone, whatever the expiry asked for.
    let expire = expire.filter(|_| !(o.enx && had_ttl));
    if expire.is_some_and(|at| at <= now) {
        // Redis's early return: the new expiry has passed, so the key goes
        // (propagated as DEL, notified "del"). Choice: a key that did not
        // exist is not created, signalled or notified (Valkey's test: the
        // reply is still [1, 1] and the key does not exist).
        if existed {
            x.db().remove(key);
            x.modified(key);
            x.notify(Class::Generic, "del", key);
        }
        return Ok(reply);
    }
    let adds = adds_key(x, x.db, key);
    x.db().set_keep_ttl(key, Value::Str(stored), now);
    let dbi = x.db;
    notify_new(x, dbi, key, adds);
    x.modified(key);
    let event = if matches!(mode, Mode::Float { .. }) { "incrbyfloat" } else { "incrby" };
    x.notify(Class::String, event, key);
    if o.expire == Some(ExpireArg::Persist) {
        // "persist" only if there was a TTL to remove (Redis's test: PERSIST
        // on a key with a TTL notifies "incrby" then "persist").
        if x.db().persist(key, now) {
            x.notify(Class::Generic, "persist", key);
        }
    } else if let Some(at) = expire {
        x.db().set_expire(key, at, now);
        x.notify(Class::Generic, "expire", key);
    }
    Ok(reply)
}

/// Integer mode: `current + incr` in 64 bits, checked against [lb, ub].
/// With SATURATE an overflow first saturates to the type's limit (in the
/// increment's direction), then the result is clamped to the bounds, even
/// when that moves it against the increment (a value already outside the
/// bounds is brought to the nearest one). The applied increment must fit.
fn int_increment(
    current: Option<&[u8]>,
    incr: i64,
    lb: i64,
    ub: i64,
    saturate: bool,
) -> Res<Outcome> {
    let value = match current {
        Some(s) => args::int(s)?,
        None => 0,
    };
    let sum = value.checked_add(incr);
    let in_bounds = sum.is_some_and(|s| (lb..=ub).contains(&s));
    if !in_bounds && !saturate {
        return Ok(Outcome::Rejected(Reply::Array(vec![Reply::Int(value), Reply::Int(0)])));
    }
    let unbounded = sum.unwrap_or(if incr >= 0 { i64::MAX } else { i64::MIN });
    let result = unbounded.clamp(lb, ub);
    let applied = result.checked_sub(value).ok_or(Reply::err(DELTA_OVERFLOW))?;
    Ok(Outcome::Apply {
        stored: args::int_bytes(result),
        reply: Reply::Array(vec![Reply::Int(result), Reply::Int(applied)]),
    })
}

/// A C `long double` as INCREX's float mode sees it. Finite values are kept
/// as Redis prints them (`ld2string` human form: `%.17Lf` without trailing
/// zeros), which compare exactly as decimals. `Min`/`Max` stand for
/// `-LDBL_MAX`/`LDBL_MAX`, the default bounds: every finite value lies
/// between them.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ld {
    NegInf,
    Min,
    Fin(Bytes),
    Max,
    PosInf,
}

impl Ld {
    /// A bound argument: a valid long double (infinities allowed), else `err`.
    fn parse(arg: &[u8], err: &'static str) -> Res<Ld> {
        match float::classify_long_double(arg) {
            LongDouble::Invalid => Err(Reply::err(err)),
            LongDouble::Infinite if arg.first() == Some(&b'-') => Ok(Ld::NegInf),
            LongDouble::Infinite => Ok(Ld::PosInf),
            LongDouble::Finite => Ok(Ld::Fin(normalize(arg).ok_or(Reply::err(err))?)),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Ld::NegInf => 0,
            Ld::Min => 1,
            Ld::Fin(_) => 2,
            Ld::Max => 3,
            Ld::PosInf => 4,
        }
    }

    /// Decimal text of a finite value (`Min`/`Max` spelled out).
    fn text(&self) -> Option<Bytes> {
        match self {
            Ld::Fin(t) => Some(t.clone()),
            Ld::Max => Some(ldbl_max().clone()),
            Ld::Min => Some(negate(ldbl_max())),
            _ => None,
        }
    }
}

impl Ord for Ld {
    fn cmp(&self, other: &Ld) -> Ordering {
        match (self, other) {
            (Ld::Fin(a), Ld::Fin(b)) => cmp_decimal(a, b),
            // A finite value equal to ±LDBL_MAX ties with Min/Max as it should
            // for every use here (bounds may be equal; a value is inside).
            (Ld::Fin(_), Ld::Min) | (Ld::Max, Ld::Fin(_)) => Ordering::Greater,
            (Ld::Min, Ld::Fin(_)) | (Ld::Fin(_), Ld::Max) => Ordering::Less,
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Ld {
    fn partial_cmp(&self, other: &Ld) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `s` read as a long double and printed back the Redis way (`s + 0`);
/// `None` if it is not a finite long double.
fn normalize(s: &[u8]) -> Option<Bytes> {
    float::long_double_add(s, b"0").ok()
}

/// `LDBL_MAX` in the printed form (x86-64's 80-bit extended precision, like
/// the rest of the long-double arithmetic; see `float.rs`).
fn ldbl_max() -> &'static Bytes {
    static MAX: OnceLock<Bytes> = OnceLock::new();
    MAX.get_or_init(|| {
        normalize(b"0x1.fffffffffffffffep+16383").expect("LDBL_MAX is a finite long double")
    })
}

/// The negation of a printed decimal.
fn negate(d: &[u8]) -> Bytes {
    match d {
        [b'-', rest @ ..] => Bytes::copy_from_slice(rest),
        b"0" => Bytes::from_static(b"0"),
        _ => {
            let mut v = Vec::with_capacity(d.len() + 1);
            v.push(b'-');
            v.extend_from_slice(d);
            Bytes::from(v)
        }
    }
}

/// Compares two printed decimals (`-?[0-9]+(\.[0-9]+)?`, no leading zeros,
/// no trailing fractional zeros, zero only as "0").
fn cmp_decimal(a: &[u8], b: &[u8]) -> Ordering {
    let split = |d: &[u8]| -> (bool, Vec<u8>, Vec<u8>) {
        let (neg, d) = match d {
            [b'-', rest @ ..] => (true, rest),
            _ => (false, d),
        };
        let mut parts = d.splitn(2, |&c| c == b'.');
        let int = parts.next().unwrap_or_default().to_vec();
        let frac = parts.next().unwrap_or_default().to_vec();
        (neg, int, frac)
    };
    let (na, ia, fa) = split(a);
    let (nb, ib, fb) = split(b);
    let magnitude = ia.len().cmp(&ib.len()).then_with(|| ia.cmp(&ib)).then_with(|| {
        let n = fa.len().max(fb.len());
        let pad = |f: &[u8]| {
            let mut f = f.to_vec();
            f.resize(n, b'0');
            f
        };
        pad(&fa).cmp(&pad(&fb))
    });
    match (na, nb) {
        (false, false) => magnitude,
        (true, true) => magnitude.reverse(),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
    }
}

/// Float mode (BYFLOAT), in C `long double` like INCRBYFLOAT: the sum is
/// `current + incr` computed and printed exactly as INCRBYFLOAT does; an
/// infinite sum is out of bounds. With SATURATE the result is clamped to the
/// bound it passed (a bound may be infinite, and the default bounds are
/// ±LDBL_MAX). The applied increment is `result - current`; if that is
/// infinite the command fails. Replies are the printed values as bulk
/// strings, Redis's RESP2 reply. Choice: Redis 8.8 answers RESP3 clients with
/// doubles, but [`Reply::Double`] holds an f64 that RESP2 prints with
/// `%.17g` ("0.1" would become "0.10000000000000001"), so both protocols get
/// the exact long-double text as bulk strings.
///
/// The comparison and the subtraction use the printed forms (17 decimals),
/// so values closer than 1e-17 compare equal here where a long double might
/// tell them apart.
fn float_increment(
    current: Option<&[u8]>,
    incr: &[u8],
    lb: &Ld,
    ub: &Ld,
    saturate: bool,
) -> Res<Outcome> {
    let raw = current.unwrap_or(b"0");
    let value = match float::classify_long_double(raw) {
        LongDouble::Invalid => return Err(Reply::err(errors::NOT_FLOAT)),
        LongDouble::Infinite => return Err(Reply::err(VALUE_INFINITE)),
        LongDouble::Finite => normalize(raw).ok_or(Reply::err(errors::NOT_FLOAT))?,
    };
    let sum = match float::long_double_add(raw, incr) {
        Ok(s) => Ld::Fin(s),
        Err(AddError::NanOrInfinity) => {
            // Both operands are finite: the sum overflowed in the increment's
            // direction.
            if incr.first() == Some(&b'-') {
                Ld::NegInf
            } else {
                Ld::PosInf
            }
        }
        Err(AddError::CurrentNotFloat) => return Err(Reply::err(errors::NOT_FLOAT)),
        Err(AddError::IncrementNotFloat) => return Err(Reply::err(INCR_NOT_FLOAT)),
    };
    let (result, outside) = if sum > *ub {
        (ub.clone(), true)
    } else if sum < *lb {
        (lb.clone(), true)
    } else {
        (sum, false)
    };
    if outside && !saturate {
        let zero = Reply::Bulk(Bytes::from_static(b"0"));
        return Ok(Outcome::Rejected(Reply::Array(vec![Reply::Bulk(value), zero])));
    }
    let Some(text) = result.text() else { return Err(Reply::err(DELTA_INFINITE)) };
    let applied = match float::long_double_add(&text, &negate(&value)) {
        Ok(d) => d,
        Err(_) => return Err(Reply::err(DELTA_INFINITE)),
    };
    Ok(Outcome::Apply {
        stored: text.clone(),
        reply: Reply::Array(vec![Reply::Bulk(text), Reply::Bulk(applied)]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Notify};
    use crate::testing::*;

    const WRONGTYPE: &str = errors::WRONGTYPE;

    fn ints(a: i64, b: i64) -> Reply {
        Reply::Array(vec![int(a), int(b)])
    }

    fn floats(a: &str, b: &str) -> Reply {
        Reply::Array(vec![bulk(a), bulk(b)])
    }

    #[test]
    fn digest_is_xxh3_64_as_16_lowercase_hex_digits() {
        // redis.io/commands/digest
        assert_eq!(&digest_hex(b"Hello world"), b"b6acb9d84a38ff74");
        // Redis's "DIGEST always returns exactly 16 hex characters with
        // leading zeros" test.
        let v = b"v8lf0c11xh8ymlqztfd3eeq16kfn4sspw7fqmnuuq3k3t75em5wdizgcdw7uc26nnf961u2jkfzkjytls2kwlj7626sd";
        assert_eq!(&digest_hex(v), b"00006c38adf31777");
        // fakeredis's vectors, checked there against redis-server 8.4.
        assert_eq!(&digest_hex(b"hello"), b"9555e8555c62dcfd");
        assert_eq!(&digest_hex(b""), b"2d06800538d394c2");
        assert_eq!(&digest_hex(b"123"), b"404a763b3f4c8c9a");
        assert_eq!(&digest_hex(b"v8"), b"0cc76dbb41381419");
    }

    #[test]
    fn digest_matching_checks_only_the_length_and_ignores_case() {
        assert_eq!(digest_matches(b"hello", b"9555E8555C62DCFD"), Ok(true));
        assert_eq!(digest_matches(b"hello", b"zzzzzzzzzzzzzzzz"), Ok(false));
        let short = Err(Reply::err(DIGEST_LENGTH_ERR));
        assert_eq!(digest_matches(b"hello", b"9555e8555c62dcf"), short);
        assert_eq!(digest_matches(b"hello", b""), short);
    }

    #[test]
    fn decimals_compare_by_value() {
        let c = |a: &str, b: &str| cmp_decimal(a.as_bytes(), b.as_bytes());
        assert_eq!(c("10", "9.5"), Ordering::Greater);
        assert_eq!(c("-10", "-9.5"), Ordering::Less);
        assert_eq!(c("1.5", "1.25"), Ordering::Greater);
        assert_eq!(c("0", "-0.1"), Ordering::Greater);
        assert_eq!(c("42.5", "42.5"), Ordering::Equal);
        assert_eq!(c("100", "99.99999"), Ordering::Greater);
        assert!(Ld::NegInf < Ld::Min && Ld::Min < Ld::Fin(Bytes::from("-1000000000")));
        assert!(Ld::Fin(Bytes::from("5")) < Ld::Max && Ld::Max < Ld::PosInf);
        assert_eq!(&negate(b"-2.5")[..], b"2.5");
        assert_eq!(&negate(b"0")[..], b"0");
        assert!(ldbl_max().len() > 4900, "LDBL_MAX has 4933 digits");
    }

    // --- DIGEST ---------------------------------------------------------

    #[test]
    fn digest_command() {
        let mut h = Harness::new();
        // The page's example.
        assert_eq!(h.run("SET key1 \"Hello world\""), Reply::Ok);
        assert_eq!(h.run("DIGEST key1"), bulk("b6acb9d84a38ff74"));
        assert_eq!(h.run("DIGEST missing"), Reply::Nil);
        h.run("SET n 12345");
        assert_eq!(h.run("DIGEST n"), bulk(std::str::from_utf8(&digest_hex(b"12345")).unwrap()));
        h.run("SET e \"\"");
        assert_eq!(h.run("DIGEST e"), bulk("2d06800538d394c2"));
        for setup in ["RPUSH l a", "HSET l f v", "SADD l m", "ZADD l 1 m"] {
            h.run("DEL l");
            h.run(setup);
            assert_eq!(h.run("DIGEST l"), err(WRONGTYPE), "{setup}");
        }
        h.run("SET t v PX 100");
        h.advance(100);
        assert_eq!(h.run("DIGEST t"), Reply::Nil, "an expired key is missing");
        let arity = err("ERR wrong number of arguments for 'digest' command");
        assert_eq!(h.run("DIGEST"), arity);
        assert_eq!(h.run("DIGEST a b"), arity);
    }

    // --- DELIFEQ --------------------------------------------------------

    #[test]
    fn delifeq_documented_examples() {
        // valkey.io/commands/delifeq, each example from a fresh key (the
        // page's "Wrong type" example runs SADD on a fresh `mykey`).
        let mut h = Harness::new();
        assert_eq!(h.run("SET mykey abc123"), Reply::Ok);
        assert_eq!(h.run("DELIFEQ mykey abc123"), int(1));
        assert_eq!(h.run("DELIFEQ mykey abc123"), int(0));
        assert_eq!(h.run("SET mykey xyz789"), Reply::Ok);
        assert_eq!(h.run("DELIFEQ mykey abc123"), int(0));
        h.run("DEL mykey");
        assert_eq!(h.run("SADD mykey somevalue"), int(1));
        assert_eq!(h.run("DELIFEQ mykey somevalue"), err(WRONGTYPE));
    }

    #[test]
    fn delifeq_edges() {
        let mut h = Harness::new();
        assert_eq!(h.run("DELIFEQ missing v"), int(0));
        h.run("SET n 10");
        assert_eq!(h.run("DELIFEQ n 010"), int(0), "compares bytes, not numbers");
        assert_eq!(h.run("DELIFEQ n 10"), int(1));
        h.run("SET e \"\"");
        assert_eq!(h.run("DELIFEQ e \"\""), int(1));
        h.run("SET t tok PX 50");
        h.advance(50);
        assert_eq!(h.run("DELIFEQ t tok"), int(0), "an expired key is missing");
        h.run("SET k v");
        assert_eq!(h.run("DELIFEQ k V"), int(0), "case matters");
        assert_eq!(h.run("EXISTS k"), int(1));
        let arity = err("ERR wrong number of arguments for 'delifeq' command");
        assert_eq!(h.run("DELIFEQ k"), arity);
        assert_eq!(h.run("DELIFEQ k v w"), arity);
    }

    // --- DELEX ----------------------------------------------------------

    #[test]
    fn delex_documented_examples() {
        // valkey.io/commands/delex (Valkey 9.2's IFEQ/IFNE subset).
        let mut h = Harness::new();
        assert_eq!(h.run("SET x 1"), Reply::Ok);
        assert_eq!(h.run("DELEX x IFEQ 1"), int(1));
        assert_eq!(h.run("SET x 1"), Reply::Ok);
        assert_eq!(h.run("DELEX x IFNE 2"), int(1));
    }

    #[test]
    fn delex_conditions() {
        let mut h = Harness::new();
        // Without a condition it is DEL, for any type.
        h.run("SET s hello");
        assert_eq!(h.run("DELEX s"), int(1));
        h.run("HSET h f v");
        assert_eq!(h.run("DELEX h"), int(1));
        assert_eq!(h.run("DELEX h"), int(0));

        h.run("SET k hello");
        assert_eq!(h.run("DELEX k IFEQ world"), int(0));
        assert_eq!(h.run("DELEX k IFNE hello"), int(0));
        assert_eq!(h.run("GET k"), bulk("hello"));
        assert_eq!(h.run("DELEX k ifeq hello"), int(1));
        h.run("SET k hello");
        assert_eq!(h.run("DELEX k IfNe other"), int(1));
        h.run("SET k 0123");
        assert_eq!(h.run("DELEX k IFEQ 123"), int(0), "bytes, not numbers");
        assert_eq!(h.run("DELEX k IFNE 123"), int(1));

        // Digests: equal ignoring case; 16 non-hex characters never match.
        h.run("SET k hello");
        assert_eq!(h.run("DELEX k IFDEQ 0000000000000000"), int(0));
        assert_eq!(h.run("DELEX k IFDNE 9555E8555C62DCFD"), int(0));
        assert_eq!(h.run("DELEX k IFDEQ zzzzzzzzzzzzzzzz"), int(0));
        assert_eq!(h.run("DELEX k IFDEQ 9555E8555C62DCFD"), int(1));
        h.run("SET k hello");
        assert_eq!(h.run("DELEX k IFDNE zzzzzzzzzzzzzzzz"), int(1));
        h.run("SET k hello");
        assert_eq!(h.run("DELEX k IFDNE 0000000000000000"), int(1));
        h.run("SET k \"\"");
        assert_eq!(h.run("DELEX k IFEQ \"\""), int(1));
    }

    #[test]
    fn delex_errors_and_missing_keys() {
        let mut h = Harness::new();
        // A missing key is 0 whatever the condition (it is not even read).
        for cond in ["IFEQ v", "IFNE v", "IFDEQ 1234567890", "IFDNE 1234567890", "FOO bar"] {
            assert_eq!(h.run(&format!("DELEX missing {cond}")), int(0), "{cond}");
        }
        h.run("SET t v PX 10");
        h.advance(10);
        assert_eq!(h.run("DELEX t IFEQ v"), int(0), "an expired key is missing");
        // Another type: the error comes before the condition is read.
        h.run("RPUSH l a");
        for cond in ["IFEQ a", "IFNE a", "IFDEQ a", "IFDNE a", "FOO a"] {
            assert_eq!(h.run(&format!("DELEX l {cond}")), err(DELEX_TYPE_ERR), "{cond}");
        }
        assert_eq!(h.run("EXISTS l"), int(1));
        h.run("SET k hello");
        for cond in ["INVALID", "IF", "EQ"] {
            assert_eq!(h.run(&format!("DELEX k {cond} hello")), err(DELEX_CONDITION_ERR));
        }
        let digest = "9555e8555c62dcfd";
        for d in [&digest[1..], &format!("0{digest}")[..], "\"\""] {
            for cond in ["IFDEQ", "IFDNE"] {
                let line = format!("DELEX k {cond} {d}");
                assert_eq!(h.run(&line), err(DIGEST_LENGTH_ERR), "{line}");
            }
        }
        assert_eq!(h.run("GET k"), bulk("hello"));
        // Arity: 2 or 4 arguments, checked before the key is looked up.
        let arity = err("ERR wrong number of arguments for 'delex' command");
        assert_eq!(h.run("DELEX"), arity);
        assert_eq!(h.run("DELEX k IFEQ"), arity);
        assert_eq!(h.run("DELEX missing IFEQ"), arity);
        assert_eq!(h.run("DELEX k IFEQ hello extra"), arity);
        assert_eq!(h.run("GET k"), bulk("hello"));
    }

    // --- SET IF* --------------------------------------------------------

    /// Redis's "Extended SET with IF*" tests (tests/unit/type/string.tcl).
    #[test]
    fn set_value_conditions() {
        let mut h = Harness::new();
        let hello = "9555e8555c62dcfd";
        let cases: &[(&str, &str, Reply, &str)] = &[
            // (value before or "" for none, command, reply, value after or "" for none)
            ("hello", "SET k world IFEQ hello", Reply::Ok, "world"),
            ("hello", "SET k world IFEQ different", Reply::Nil, "hello"),
            ("", "SET k world IFEQ hello", Reply::Nil, ""),
            ("hello", "SET k world IFNE different", Reply::Ok, "world"),
            ("hello", "SET k world IFNE hello", Reply::Nil, "hello"),
            ("", "SET k world IFNE hello", Reply::Ok, "world"),
            ("hello", &format!("SET k world IFDEQ {hello}"), Reply::Ok, "world"),
            ("hello", "SET k world IFDEQ 9555e8555c62dcfe", Reply::Nil, "hello"),
            ("", "SET k world IFDEQ 1234567890", Reply::Nil, ""),
            ("hello", "SET k world IFDNE 9555e8555c62dcfe", Reply::Ok, "world"),
            ("hello", &format!("SET k world IFDNE {hello}"), Reply::Nil, "hello"),
            ("", "SET k world IFDNE 1234567890", Reply::Ok, "world"),
            // With GET: the old value (nil if none) whether or not it was set.
            ("hello", "SET k world IFEQ hello GET", bulk("hello"), "world"),
            ("hello", "SET k world IFEQ different GET", bulk("hello"), "hello"),
            ("", "SET k world IFEQ hello GET", Reply::Nil, ""),
            ("hello", "SET k world IFNE different GET", bulk("hello"), "world"),
            ("hello", "SET k world IFNE hello GET", bulk("hello"), "hello"),
            ("", "SET k world IFNE hello GET", Reply::Nil, "world"),
            ("hello", &format!("SET k world IFDEQ {hello} GET"), bulk("hello"), "world"),
            ("", "SET k world IFDEQ 1234567890 GET", Reply::Nil, ""),
            ("hello", &format!("SET k world IFDNE {hello} GET"), bulk("hello"), "hello"),
            ("", "SET k world IFDNE 1234567890 GET", Reply::Nil, "world"),
            // Case-insensitive options and digests; bytes compared exactly.
            ("hello", "SET k world ifeq hello", Reply::Ok, "world"),
            ("hello", "SET k world IfEq hello", Reply::Ok, "world"),
            ("hello", "SET k world IFDEQ 9555E8555C62DCFD", Reply::Ok, "world"),
            ("hello", "SET k world IFDNE 9555E8555C62DCFD", Reply::Nil, "hello"),
            ("12345", "SET k world IFEQ 12345", Reply::Ok, "world"),
            ("12345", "SET k world IFNE 54321", Reply::Ok, "world"),
            ("0123", "SET k world IFEQ 123", Reply::Nil, "0123"),
        ];
        for (before, line, reply, after) in cases {
            h.run("DEL k");
            if !before.is_empty() {
                h.run(&format!("SET k {before}"));
            }
            assert_eq!(&h.run(line), reply, "{line}");
            let expect = if after.is_empty() { Reply::Nil } else { bulk(after) };
            assert_eq!(h.run("GET k"), expect, "{line}: value after");
        }
        // The empty string is a value.
        h.run("SET k \"\"");
        assert_eq!(h.run("SET k world IFNE \"\""), Reply::Nil);
        assert_eq!(h.run("SET k world IFEQ \"\""), Reply::Ok);
    }

    #[test]
    fn set_value_conditions_with_expiry_and_errors() {
        let mut h = Harness::new();
        h.run("SET k hello");
        assert_eq!(h.run("SET k world IFEQ hello EX 10"), Reply::Ok);
        assert_eq!(h.run("TTL k"), int(10));
        assert_eq!(h.run("SET k again IFNE x KEEPTTL"), Reply::Ok);
        assert_eq!(h.run("TTL k"), int(10));
        assert_eq!(h.run("SET k more IFEQ again"), Reply::Ok);
        assert_eq!(h.run("TTL k"), int(-1), "a successful SET drops the TTL");
        // A failed condition changes nothing, the TTL included.
        h.run("SET k v EX 50");
        assert_eq!(h.run("SET k w IFEQ nope EX 5"), Reply::Nil);
        assert_eq!(h.run("TTL k"), int(50));
        // A past EXAT on success deletes, as SET does.
        assert_eq!(h.run("SET k w IFEQ v PXAT 1"), Reply::Ok);
        assert_eq!(h.run("EXISTS k"), int(0));

        // Another type: WRONGTYPE before any comparison or digest check.
        h.run("RPUSH l element");
        for cond in ["IFEQ element", "IFNE element", "IFDEQ 1234567890", "IFDNE 1234567890"] {
            assert_eq!(h.run(&format!("SET l v {cond}")), err(WRONGTYPE), "{cond}");
            assert_eq!(h.run(&format!("SET l v {cond} GET")), err(WRONGTYPE), "{cond} GET");
        }
        assert_eq!(h.run("TYPE l"), Reply::status("list"));

        // The conditions exclude each other, in either order.
        let syntax = err("ERR syntax error");
        for line in [
            "SET k v IFEQ a NX",
            "SET k v NX IFEQ a",
            "SET k v IFEQ a XX",
            "SET k v XX IFDNE 0123456789abcdef",
            "SET k v IFEQ a IFNE b",
            "SET k v IFDEQ 0123456789abcdef IFNE b",
            "SET k v IFEQ",
            "SET k v GET IFDEQ",
        ] {
            assert_eq!(h.run(line), syntax, "{line}");
        }
        assert_eq!(h.run("GETEX k IFEQ a"), syntax, "GETEX has no conditions");
        // Choice: the same condition twice, the last one counts.
        h.run("SET k a");
        assert_eq!(h.run("SET k b IFEQ x IFEQ a"), Reply::Ok);
        assert_eq!(h.run("SET k c IFEQ b IFEQ x"), Reply::Nil);

        // Digests of the wrong length, when there is a value to compare.
        h.run("SET k test");
        let digest = std::str::from_utf8(&digest_hex(b"test")).unwrap().to_string();
        for d in [digest[1..].to_string(), format!("0{digest}"), "\"\"".to_string()] {
            for cond in ["IFDEQ", "IFDNE"] {
                let line = format!("SET k new {cond} {d}");
                assert_eq!(h.run(&line), err(DIGEST_LENGTH_ERR), "{line}");
            }
        }
        assert_eq!(h.run("GET k"), bulk("test"));
        // An expired key is a missing one.
        h.run("SET t v PX 10");
        h.advance(10);
        assert_eq!(h.run("SET t w IFEQ v"), Reply::Nil);
        assert_eq!(h.run("SET t w IFNE v"), Reply::Ok);
        assert_eq!(h.run("GET t"), bulk("w"));
    }

    // --- INCREX ---------------------------------------------------------

    /// The examples of redis.io/commands/increx, in order.
    #[test]
    fn increx_documented_examples() {
        let mut h = Harness::new();
        h.run("DEL mykey");
        assert_eq!(h.run("INCREX mykey"), ints(1, 1));
        assert_eq!(h.run("INCREX mykey"), ints(2, 1));

        assert_eq!(h.run("SET mykey 100"), Reply::Ok);
        assert_eq!(h.run("INCREX mykey BYINT 5"), ints(105, 5));
        assert_eq!(h.run("INCREX mykey BYINT -10"), ints(95, -10));

        assert_eq!(h.run("SET mykey 1.5"), Reply::Ok);
        assert_eq!(h.run("INCREX mykey BYFLOAT 0.25"), floats("1.75", "0.25"));

        h.run("DEL mykey");
        assert_eq!(h.run("INCREX mykey BYINT 1 EX 100"), ints(1, 1));
        assert_eq!(h.run("TTL mykey"), int(100));

        assert_eq!(h.run("SET mykey 10"), Reply::Ok);
        assert_eq!(h.run("INCREX mykey BYINT 1 EX 100 ENX"), ints(11, 1));
        assert_eq!(h.run("TTL mykey"), int(100));
        assert_eq!(h.run("SET mykey 10 EX 500"), Reply::Ok);
        assert_eq!(h.run("INCREX mykey BYINT 1 EX 10 ENX"), ints(11, 1));
        assert_eq!(h.run("TTL mykey"), int(500));

        assert_eq!(h.run("SET mykey 5 EX 1000"), Reply::Ok);
        assert_eq!(h.run("TTL mykey"), int(1000));
        assert_eq!(h.run("INCREX mykey BYINT 1 PERSIST"), ints(6, 1));
        assert_eq!(h.run("TTL mykey"), int(-1));

        assert_eq!(h.run("SET mykey 99"), Reply::Ok);
        assert_eq!(h.run("INCREX mykey BYINT 5 UBOUND 100"), ints(99, 0));
        assert_eq!(h.run("SET mykey 99"), Reply::Ok);
        assert_eq!(h.run("INCREX mykey BYINT 5 UBOUND 100 SATURATE"), ints(100, 1));
    }

    /// Integer mode: Redis's INCREX tests (BYINT behavior, bounds, overflow).
    #[test]
    fn increx_integers_bounds_and_saturation() {
        let mut h = Harness::new();
        let cases: &[(&str, &str, (i64, i64), &str)] = &[
            // (value before or "" for none, command, reply, value after or "" for none)
            ("10", "INCREX k", (11, 1), "11"),
            ("100", "INCREX k BYINT 0", (100, 0), "100"),
            ("50", "INCREX k BYINT 100 UBOUND 80 SATURATE", (80, 30), "80"),
            ("10", "INCREX k BYINT -100 LBOUND 0 SATURATE", (0, -10), "0"),
            ("5", "INCREX k BYINT 1 LBOUND 0 UBOUND 10", (6, 1), "6"),
            ("5", "INCREX k BYINT 10 LBOUND 0 UBOUND 10", (5, 0), "5"),
            ("5", "INCREX k BYINT -20 LBOUND 0 UBOUND 10", (5, 0), "5"),
            ("7", "INCREX k BYINT 10 LBOUND 0 UBOUND 10 SATURATE", (10, 3), "10"),
            ("10", "INCREX k BYINT -20 LBOUND 0 UBOUND 10 SATURATE", (0, -10), "0"),
            ("5", "INCREX k BYINT 5 UBOUND 10", (10, 5), "10"),
            ("10", "INCREX k BYINT -10 LBOUND 0", (0, -10), "0"),
            ("10", "INCREX k BYINT 10 UBOUND 15", (10, 0), "10"),
            ("10", "INCREX k BYINT 10 UBOUND 15 SATURATE", (15, 5), "15"),
            ("10", "INCREX k BYINT -3 LBOUND 0 SATURATE", (7, -3), "7"),
            // A value already outside the bounds: rejected, or brought to
            // the bound (even against the increment) with SATURATE.
            ("50", "INCREX k BYINT 5 UBOUND 30", (50, 0), "50"),
            ("50", "INCREX k BYINT 5 UBOUND 30 SATURATE", (30, -20), "30"),
            ("-50", "INCREX k BYINT -5 LBOUND -30 SATURATE", (-30, 20), "-30"),
            ("50", "INCREX k BYINT -25 UBOUND 30", (25, -25), "25"),
            ("10", "INCREX k BYINT -5 LBOUND 20 SATURATE", (20, 10), "20"),
            // Overflow: rejected, or saturated to the type limit then bounds.
            (
                "9223372036854775800",
                "INCREX k BYINT 9223372036854775800",
                (9223372036854775800, 0),
                "9223372036854775800",
            ),
            (
                "9223372036854775800",
                "INCREX k BYINT 9223372036854775800 SATURATE",
                (i64::MAX, 7),
                "9223372036854775807",
            ),
            (
                "9223372036854775800",
                "INCREX k BYINT 9223372036854775800 UBOUND 9223372036854775807 SATURATE",
                (i64::MAX, 7),
                "9223372036854775807",
            ),
            (
                "-9223372036854775800",
                "INCREX k BYINT -9223372036854775800 SATURATE",
                (i64::MIN, -8),
                "-9223372036854775808",
            ),
            (
                "-9223372036854775800",
                "INCREX k BYINT -9223372036854775800 LBOUND -9223372036854775808",
                (-9223372036854775800, 0),
                "-9223372036854775800",
            ),
            (
                "9223372036854775807",
                "INCREX k BYINT 1 SATURATE",
                (i64::MAX, 0),
                "9223372036854775807",
            ),
            ("10", "INCREX k BYINT 9223372036854775807 UBOUND 100 SATURATE", (100, 90), "100"),
            ("10", "INCREX k BYINT 9223372036854775807 UBOUND 100", (10, 0), "10"),
            // A missing key starts at 0; a rejected result does not create it.
            ("", "INCREX k BYINT 5 UBOUND 10", (5, 5), "5"),
            ("", "INCREX k BYINT 15 UBOUND 10", (0, 0), ""),
            ("", "INCREX k BYINT 5 LBOUND 10", (0, 0), ""),
            ("", "INCREX k UBOUND 0 SATURATE", (0, 0), "0"),
            ("", "INCREX k LBOUND 5 SATURATE", (5, 5), "5"),
            // Options in any order.
            ("5", "INCREX k LBOUND 0 BYINT 100 UBOUND 10 SATURATE", (10, 5), "10"),
        ];
        for (before, line, (a, b), after) in cases {
            h.run("DEL k");
            if !before.is_empty() {
                h.run(&format!("SET k {before}"));
            }
            assert_eq!(h.run(line), ints(*a, *b), "{line}");
            let expect = if after.is_empty() { Reply::Nil } else { bulk(after) };
            assert_eq!(h.run("GET k"), expect, "{line}: value after");
        }
        // The applied increment must fit in 64 bits.
        h.run("SET k 9223372036854775800");
        assert_eq!(
            h.run("INCREX k BYINT 1 SATURATE UBOUND -9223372036854775808"),
            err(DELTA_OVERFLOW)
        );
        assert_eq!(h.run("GET k"), bulk("9223372036854775800"));
    }

    /// Float mode: Redis's and Valkey's INCREX BYFLOAT tests.
    #[test]
    fn increx_floats() {
        let mut h = Harness::new();
        let cases: &[(&str, &str, (&str, &str), &str)] = &[
            ("1.5", "INCREX k BYFLOAT 0.25", ("1.75", "0.25"), "1.75"),
            ("1.75", "INCREX k BYFLOAT 1", ("2.75", "1"), "2.75"),
            ("6", "INCREX k BYFLOAT 0.5", ("6.5", "0.5"), "6.5"),
            ("10", "INCREX k BYFLOAT 100 UBOUND 42.5 SATURATE", ("42.5", "32.5"), "42.5"),
            ("0", "INCREX k BYFLOAT -100 LBOUND -5.5 SATURATE", ("-5.5", "-5.5"), "-5.5"),
            ("10.0", "INCREX k BYFLOAT 10.0 UBOUND 15.5", ("10", "0"), "10.0"),
            ("10.0", "INCREX k BYFLOAT 10.0 UBOUND 15.5 SATURATE", ("15.5", "5.5"), "15.5"),
            ("10.0", "INCREX k BYFLOAT -10.0 LBOUND 5.5 SATURATE", ("5.5", "-4.5"), "5.5"),
            ("5.0", "INCREX k BYFLOAT 1.5 LBOUND 0 UBOUND 10", ("6.5", "1.5"), "6.5"),
            ("5.0", "INCREX k BYFLOAT 5.0 UBOUND 10.0", ("10", "5"), "10"),
            ("50.5", "INCREX k BYFLOAT 5.5 UBOUND 30 SATURATE", ("30", "-20.5"), "30"),
            ("-50.5", "INCREX k BYFLOAT -5.5 LBOUND -30 SATURATE", ("-30", "20.5"), "-30"),
            ("", "INCREX k BYFLOAT 5.5 UBOUND 10", ("5.5", "5.5"), "5.5"),
            ("", "INCREX k BYFLOAT 15.5 UBOUND 10", ("0", "0"), ""),
            ("", "INCREX k BYFLOAT -0.5 UBOUND -1.5", ("0", "0"), ""),
            ("10", "INCREX k BYFLOAT 2.5 LBOUND 5.0 UBOUND 15.0", ("12.5", "2.5"), "12.5"),
            ("10", "INCREX k BYFLOAT 12.5 UBOUND 12.5", ("10", "0"), "10"),
            ("10", "INCREX k BYFLOAT 1.0 UBOUND inf", ("11", "1"), "11"),
            ("10", "INCREX k BYFLOAT 1.0 LBOUND -inf", ("11", "1"), "11"),
            ("10", "INCREX k BYFLOAT 1.0 LBOUND -inf UBOUND -inf", ("10", "0"), "10"),
            ("10", "INCREX k BYFLOAT 1.0 LBOUND inf UBOUND inf", ("10", "0"), "10"),
            ("10", "INCREX k BYFLOAT 1.0 LBOUND 0.5 UBOUND 15.5", ("11", "1"), "11"),
            ("1.1", "INCREX k BYFLOAT 2.2", ("3.3", "2.2"), "3.3"),
            // Big values: the long-double sum overflows to infinity.
            ("10", "INCREX k BYFLOAT 1e4932 UBOUND 100 SATURATE", ("100", "90"), "100"),
            ("10", "INCREX k BYFLOAT 1e4932 UBOUND 100", ("10", "0"), "10"),
            ("10", "INCREX k BYFLOAT -1e4932 LBOUND -100 SATURATE", ("-100", "-110"), "-100"),
        ];
        for (before, line, (a, b), after) in cases {
            h.run("DEL k");
            if !before.is_empty() {
                h.run(&format!("SET k {before}"));
            }
            assert_eq!(h.run(line), floats(a, b), "{line}");
            let expect = if after.is_empty() { Reply::Nil } else { bulk(after) };
            assert_eq!(h.run("GET k"), expect, "{line}: value after");
        }
        // No negative zero (INCRBYFLOAT's rule).
        h.run("DEL k");
        h.run("INCREX k BYFLOAT 0.5");
        assert_eq!(h.run("INCREX k BYFLOAT -0.5"), floats("0", "-0.5"));
        assert_eq!(h.run("GET k"), bulk("0"));
        // An overflowing sum is rejected, or saturated to LDBL_MAX.
        h.run("SET k 1e4932");
        let Reply::Array(r) = h.run("INCREX k BYFLOAT 1e4932") else { panic!() };
        assert_eq!(r[1], bulk("0"));
        assert_eq!(h.run("GET k"), bulk("1e4932"));
        let Reply::Array(r) = h.run("INCREX k BYFLOAT 1e4932 SATURATE") else { panic!() };
        assert_eq!(r[0], Reply::Bulk(ldbl_max().clone()));
        assert_eq!(h.run("GET k"), r[0]);
        // The applied increment must be finite.
        h.run("SET k -1e4932");
        assert_eq!(h.run("INCREX k BYFLOAT 1e4932 LBOUND 1e4932 SATURATE"), err(DELTA_INFINITE));
        h.run("SET k 10");
        for line in [
            "INCREX k BYFLOAT 1.0 LBOUND -inf UBOUND -inf SATURATE",
            "INCREX k BYFLOAT 1.0 LBOUND inf UBOUND inf SATURATE",
        ] {
            assert_eq!(h.run(line), err(DELTA_INFINITE), "{line}");
        }
        assert_eq!(h.run("GET k"), bulk("10"));
    }

    #[test]
    fn increx_argument_errors() {
        let mut h = Harness::new();
        h.run("SET mykey 5");
        let syntax = err("ERR syntax error");
        for line in [
            "INCREX mykey FOO",
            "INCREX mykey BYINT 1 FOO",
            "INCREX mykey BYINT 1 BYFLOAT 1.5",
            "INCREX mykey BYFLOAT 1.5 BYINT 1",
            "INCREX mykey BYINT 1 EX 10 PX 5000",
            "INCREX mykey BYINT 1 EX 10 EXAT 9999999999",
            "INCREX mykey BYINT 1 PX 5000 PXAT 9999999999000",
            "INCREX mykey BYINT 1 EX 10 PERSIST",
            "INCREX mykey BYINT 1 PERSIST EX 10",
            "INCREX mykey BYINT 1 PERSIST ENX",
            "INCREX mykey BYINT 1 ENX PERSIST",
            "INCREX mykey BYINT 1 BYINT 2",
            "INCREX mykey BYFLOAT 1.0 BYFLOAT 2.0",
            "INCREX mykey LBOUND 0 LBOUND 1",
            "INCREX mykey UBOUND 9 UBOUND 8",
            "INCREX mykey SATURATE SATURATE LBOUND 0",
            "INCREX mykey SAT LBOUND 0",
            "INCREX mykey ENX ENX EX 10",
            "INCREX mykey PERSIST PERSIST",
            "INCREX mykey EX 10 EX 20",
            "INCREX mykey PXAT 9999999999000 PXAT 9999999998000",
            "INCREX mykey BYINT",
            "INCREX mykey LBOUND",
            "INCREX mykey UBOUND",
            "INCREX mykey EX",
            // Valkey's NX | XX are not Redis's.
            "INCREX mykey NX",
            "INCREX mykey XX BYINT 1",
        ] {
            assert_eq!(h.run(line), syntax, "{line}");
        }
        let cases: &[(&str, &'static str)] = &[
            ("INCREX mykey BYINT 1 ENX", ENX_WITHOUT_EXPIRE),
            ("INCREX mykey ENX", ENX_WITHOUT_EXPIRE),
            ("INCREX mykey BYINT abc", INCR_NOT_INT),
            ("INCREX mykey BYINT 1.5", INCR_NOT_INT),
            ("INCREX mykey BYFLOAT abc", INCR_NOT_FLOAT),
            ("INCREX mykey BYFLOAT nan", INCR_NOT_FLOAT),
            ("INCREX mykey BYFLOAT 1e99999", INCR_NOT_FLOAT),
            ("INCREX mykey BYFLOAT +inf", INCR_INFINITE),
            ("INCREX mykey BYFLOAT -inf", INCR_INFINITE),
            ("INCREX mykey BYINT 1 LBOUND 10 UBOUND 5", BOUNDS_CROSSED),
            ("INCREX mykey BYFLOAT 0.5 LBOUND 10.5 UBOUND 1.5", BOUNDS_CROSSED),
            ("INCREX mykey BYFLOAT 1.0 UBOUND -inf", BOUNDS_CROSSED),
            ("INCREX mykey BYFLOAT 1.0 LBOUND inf", BOUNDS_CROSSED),
            ("INCREX mykey BYFLOAT 1.0 LBOUND +inf", BOUNDS_CROSSED),
            ("INCREX mykey BYINT 1 LBOUND 1.5", LBOUND_NOT_INT),
            ("INCREX mykey BYINT 5 UBOUND 12.5", UBOUND_NOT_INT),
            ("INCREX mykey UBOUND abc", UBOUND_NOT_INT),
            ("INCREX mykey UBOUND inf", UBOUND_NOT_INT),
            ("INCREX mykey LBOUND inf", LBOUND_NOT_INT),
            ("INCREX mykey BYFLOAT 1.0 UBOUND abc", UBOUND_NOT_FLOAT),
            ("INCREX mykey BYFLOAT 1.5 LBOUND abc", LBOUND_NOT_FLOAT),
            ("INCREX mykey BYINT 1 EX 0", INVALID_EXPIRE),
            ("INCREX mykey BYINT 1 PX 0", INVALID_EXPIRE),
            ("INCREX mykey BYINT 1 EX -1", INVALID_EXPIRE),
            ("INCREX mykey BYINT 1 EX 9223372036854775807", INVALID_EXPIRE),
            ("INCREX mykey BYINT 1 EX abc", errors::NOT_INTEGER),
        ];
        for (line, text) in cases {
            assert_eq!(h.run(line), err(text), "{line}");
        }
        assert_eq!(h.run("GET mykey"), bulk("5"), "no error changed anything");
        assert_eq!(h.run("INCREX"), err("ERR wrong number of arguments for 'increx' command"));
    }

    #[test]
    fn increx_stored_value_errors() {
        let mut h = Harness::new();
        h.run("RPUSH mylist a b c");
        for line in [
            "INCREX mylist",
            "INCREX mylist BYINT 1",
            "INCREX mylist BYFLOAT 1.5",
            "INCREX mylist EXAT 1",
        ] {
            assert_eq!(h.run(line), err(WRONGTYPE), "{line}");
        }
        h.run("SET mykey hello");
        assert_eq!(h.run("INCREX mykey BYFLOAT 1.5"), err(errors::NOT_FLOAT));
        assert_eq!(h.run("INCREX mykey BYINT 1"), err(errors::NOT_INTEGER));
        assert_eq!(h.run("INCREX mykey EXAT 1"), err(errors::NOT_INTEGER));
        h.run("SET mykey 1.5");
        assert_eq!(h.run("INCREX mykey"), err(errors::NOT_INTEGER));
        h.run("SET mykey inf");
        assert_eq!(h.run("INCREX mykey BYFLOAT 1"), err(VALUE_INFINITE));
        assert_eq!(h.run("INCREX mykey BYINT 1"), err(errors::NOT_INTEGER));
        h.run("SET mykey -inf");
        assert_eq!(h.run("INCREX mykey BYFLOAT 0 LBOUND -100"), err(VALUE_INFINITE));
        assert_eq!(h.run("GET mykey"), bulk("-inf"));
    }

    #[test]
    fn increx_expiry() {
        let mut h = Harness::new();
        // EX/PX relative to the entry's time, EXAT/PXAT absolute.
        assert_eq!(h.run("INCREX k BYINT 1 EX 100"), ints(1, 1));
        assert_eq!(h.run("PTTL k"), int(100_000));
        assert_eq!(h.run("INCREX k BYINT 1 PX 1500"), ints(2, 1));
        assert_eq!(h.run("PTTL k"), int(1500));
        let at = h.now / 1000 + 100;
        assert_eq!(h.run(&format!("INCREX k BYINT 1 EXAT {at}")), ints(3, 1));
        assert_eq!(h.run("PEXPIRETIME k"), int(at * 1000));
        let at = h.now + 777;
        assert_eq!(h.run(&format!("INCREX k PXAT {at}")), ints(4, 1));
        assert_eq!(h.run("PEXPIRETIME k"), int(at));
        // No expiry option keeps the TTL.
        assert_eq!(h.run("INCREX k"), ints(5, 1));
        assert_eq!(h.run("PEXPIRETIME k"), int(at));
        // PERSIST removes it; on a key without one it is a no-op.
        assert_eq!(h.run("INCREX k PERSIST"), ints(6, 1));
        assert_eq!(h.run("TTL k"), int(-1));
        assert_eq!(h.run("INCREX k PERSIST"), ints(7, 1));
        assert_eq!(h.run("TTL k"), int(-1));
        h.run("DEL k");
        assert_eq!(h.run("INCREX k PERSIST"), ints(1, 1));
        assert_eq!(h.run("TTL k"), int(-1));

        // ENX: only a key without a TTL gets one.
        h.run("SET k 10");
        assert_eq!(h.run("INCREX k EX 100 ENX"), ints(11, 1));
        assert_eq!(h.run("TTL k"), int(100));
        h.run("SET k 10 EX 500");
        assert_eq!(h.run("INCREX k PX 100000 ENX"), ints(11, 1));
        assert_eq!(h.run("TTL k"), int(500));
        h.run("DEL k");
        assert_eq!(h.run("INCREX k BYINT 5 EX 100 ENX"), ints(5, 5));
        assert_eq!(h.run("TTL k"), int(100));

        // A rejected increment touches no TTL; a saturated one applies it.
        h.run("SET k 10");
        assert_eq!(h.run("INCREX k BYINT 100 UBOUND 15 EX 100"), ints(10, 0));
        assert_eq!(h.run("TTL k"), int(-1));
        h.run("SET k 10 EX 500");
        assert_eq!(h.run("INCREX k BYINT 5 UBOUND 5 EX 100"), ints(10, 0));
        assert_eq!(h.run("TTL k"), int(500));
        assert_eq!(h.run("INCREX k BYINT 5 UBOUND 5 PERSIST"), ints(10, 0));
        assert_eq!(h.run("TTL k"), int(500));
        h.run("SET k 9223372036854775807 EX 500");
        assert_eq!(h.run("INCREX k BYINT 1 EX 100 ENX"), ints(i64::MAX, 0));
        assert_eq!(h.run("TTL k"), int(500));
        h.run("SET k 10");
        assert_eq!(h.run("INCREX k BYINT 100 UBOUND 15 SATURATE EX 200"), ints(15, 5));
        assert_eq!(h.run("TTL k"), int(200));
        h.run("SET k 1e4932 EX 100");
        h.run("INCREX k BYFLOAT 1e4932 EX 60");
        assert_eq!(h.run("TTL k"), int(100), "a rejected float overflow keeps the TTL");

        // An expiry already past deletes the key (the reply is the write's).
        h.run("SET k 10");
        assert_eq!(h.run("INCREX k BYINT 1 EXAT 1"), ints(11, 1));
        assert_eq!(h.run("EXISTS k"), int(0));
        h.run("SET k 10");
        assert_eq!(h.run("INCREX k PXAT 1"), ints(11, 1));
        assert_eq!(h.run("EXISTS k"), int(0));
        assert_eq!(h.run("INCREX missing EXAT 1"), ints(1, 1));
        assert_eq!(h.run("EXISTS missing"), int(0));
        // ...unless ENX keeps the TTL the key has.
        h.run("SET k 10 EX 500");
        assert_eq!(h.run("INCREX k BYINT 1 EXAT 1 ENX"), ints(11, 1));
        assert_eq!(h.run("GET k"), bulk("11"));
        assert_eq!(h.run("TTL k"), int(500));
        h.run("SET k 10");
        assert_eq!(h.run("INCREX k EXAT 100 ENX"), ints(11, 1));
        assert_eq!(h.run("EXISTS k"), int(0));

        // An expired key counts as missing.
        h.run("SET k 41 PX 10");
        h.advance(10);
        assert_eq!(h.run("INCREX k"), ints(1, 1));
        assert_eq!(h.run("TTL k"), int(-1));
    }

    #[test]
    fn increx_keeps_string_encodings() {
        let mut h = Harness::new();
        h.run("SET foo 1");
        h.run("APPEND foo 2");
        assert_eq!(h.run("OBJECT ENCODING foo"), bulk("raw"));
        assert_eq!(h.run("INCREX foo"), ints(13, 1));
        assert_eq!(h.run("OBJECT ENCODING foo"), bulk("int"));
    }

    // --- keyspace events ------------------------------------------------

    fn all_events() -> Notify {
        let classes = [
            Class::Generic,
            Class::String,
            Class::List,
            Class::Set,
            Class::Hash,
            Class::Expired,
            Class::New,
        ];
        Notify(classes.iter().fold(Notify::KEYSPACE | Notify::KEYEVENT, |b, c| b | c.bit()))
    }

    fn events_of(setup: &str, command: &str) -> Vec<String> {
        let mut h = Harness::new();
        h.state.set_notify(all_events());
        for line in setup.split(';').map(str::trim).filter(|l| !l.is_empty()) {
            h.run(line);
        }
        h.state.take_events();
        h.run(command);
        h.state
            .take_events()
            .iter()
            .map(|e| match e {
                Event::Keyspace { event, key, .. } => {
                    format!("{event} {}", String::from_utf8_lossy(key))
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// The events Redis's INCREX test ("keyspace notifications fire expected
    /// events in order") and Valkey's DELIFEQ change (#2120) name; the rest
    /// follow DEL and SET, whose events these commands are.
    #[test]
    fn events() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("SET k v", "DELIFEQ k v", &["del k"]),
            ("SET k v", "DELIFEQ k w", &[]),
            ("SET k v", "DELEX k", &["del k"]),
            ("SET k v", "DELEX k IFNE w", &["del k"]),
            ("SET k v", "DELEX k IFEQ w", &[]),
            ("SET k v", "SET k w IFEQ v", &["set k"]),
            ("SET k v", "SET k w IFEQ x", &[]),
            ("", "SET k w IFNE x EX 10", &["new k", "set k", "expire k"]),
            ("", "INCREX k BYINT 5", &["new k", "incrby k"]),
            ("SET k 1", "INCREX k BYFLOAT 0.5", &["incrbyfloat k"]),
            ("SET k 10 EX 100", "INCREX k BYINT 1 PERSIST", &["incrby k", "persist k"]),
            ("SET k 10", "INCREX k BYINT 1 PERSIST", &["incrby k"]),
            ("SET k 10", "INCREX k BYINT 1 EX 100", &["incrby k", "expire k"]),
            ("SET k 10 EX 100", "INCREX k BYINT 1 EX 200 ENX", &["incrby k"]),
            ("SET k 10", "INCREX k BYINT 1 EXAT 1", &["del k"]),
            ("", "INCREX k BYINT 1 EXAT 1", &[]),
            ("SET k 10", "INCREX k BYINT 10 UBOUND 15", &[]),
            (
                "SET k 10 EX 100",
                "INCREX k BYINT 10 UBOUND 15 SATURATE PX 5",
                &["incrby k", "expire k"],
            ),
        ];
        let mut wrong = Vec::new();
        for &(setup, command, expected) in cases {
            let got = events_of(setup, command);
            if got != expected {
                wrong.push(format!("{setup} | {command}: got {got:?}, want {expected:?}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }
}

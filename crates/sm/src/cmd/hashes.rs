//! Hash commands: HSET and friends, counters, HSCAN and HRANDFIELD.
//!
//! A hash keeps Redis's encodings ([`HashVal`]): insertion-ordered while it is a
//! small "listpack", a [`KeyMap`](crate::keymap::KeyMap) once it outgrows the
//! listpack limits. [`HashVal::insert`] converts exactly when Redis would for
//! every command here (HSET's up-front `hashTypeTryConversion` and the per-insert
//! checks lead to the same final encoding), so handlers just insert.

use bytes::Bytes;

use crate::args::{self, is, parse_i64, Res};
use crate::cmd::keys::{adds_key, notify_if_gone, notify_new, scan_reply, ScanArgs};
use crate::command::{arity_error, Spec};
use crate::event::Class;
use crate::float::{self, AddError, LongDouble};
use crate::reply::{errors, Reply};
use crate::state::{Exec, Query, Rng};
use crate::value::HashVal;

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
    Ok(h.and_then(|h| h.get(&argv[2])).cloned().into())
}

/// HMGET key field [field ...]
fn hmget(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let h = q.db().get_hash(&argv[1], q.now)?;
    Ok(Reply::Array(argv[2..].iter().map(|f| h.and_then(|h| h.get(f)).cloned().into()).collect()))
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
    Ok(h.is_some_and(|h| h.get(&argv[2]).is_some()).into())
}

/// HGETALL key
fn hgetall(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let h = q.db().get_hash(&argv[1], q.now)?;
    Ok(Reply::Map(h.map_or_else(Vec::new, |h| {
        h.iter().map(|(f, v)| (Reply::Bulk(f.clone()), Reply::Bulk(v.clone()))).collect()
    })))
}

/// HKEYS key
fn hkeys(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let h = q.db().get_hash(&argv[1], q.now)?;
    Ok(Reply::bulks(h.into_iter().flat_map(|h| h.iter().map(|(f, _)| f.clone()))))
}

/// HVALS key
fn hvals(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let h = q.db().get_hash(&argv[1], q.now)?;
    Ok(Reply::bulks(h.into_iter().flat_map(|h| h.iter().map(|(_, v)| v.clone()))))
}

/// HLEN key
fn hlen(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    Ok(q.db().get_hash(&argv[1], q.now)?.map_or(0, HashVal::len).into())
}

/// HSTRLEN key field
fn hstrlen(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let h = q.db().get_hash(&argv[1], q.now)?;
    Ok(h.and_then(|h| h.get(&argv[2])).map_or(0, Bytes::len).into())
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
    h.insert(own(&argv[2]), args::int_bytes(value));
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
    h.insert(own(&argv[2]), value.clone());
    hash_written(x, &argv[1], adds, "hincrbyfloat");
    Ok(Reply::Bulk(value))
}

/// HSCAN key cursor [MATCH pattern] [COUNT count]
///
/// As in Redis, the cursor is checked first, then the key, and the options
/// only for an existing hash. A listpack hash is returned whole with cursor 0.
fn hscan(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    args::cursor(&argv[2])?;
    let Some(h) = q.db().get_hash(&argv[1], q.now)? else { return Ok(scan_reply(0, Vec::new())) };
    let opts = ScanArgs::parse(argv, 2, false)?;
    let pair = |(f, v): (&Bytes, &Bytes)| [Reply::Bulk(f.clone()), Reply::Bulk(v.clone())];
    match h {
        HashVal::Listpack(_) => {
            let items = h.iter().filter(|(f, _)| opts.matches(f)).flat_map(pair).collect();
            Ok(scan_reply(0, items))
        }
        HashVal::Table(t) => {
            // COUNT counts entries (a field and its value), not reply items:
            // Redis 7.0.15 returns about 2*COUNT items per call.
            let (next, found) = t.scan(opts.cursor, opts.count);
            let items = found.into_iter().filter(|(f, _)| opts.matches(f)).flat_map(pair).collect();
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
    let Some(h) = q.db().get_hash(&argv[1], q.now)? else { return Ok(Reply::Nil) };
    let entries = entries(h);
    let (field, _) = entries[q.rng.below(entries.len())];
    Ok(Reply::Bulk(field.clone()))
}

/// The entries of a hash in reply order, indexable for random picks.
fn entries(h: &HashVal) -> Vec<(&Bytes, &Bytes)> {
    h.iter().collect()
}

/// Redis's `hrandfieldWithCountCommand`.
fn hrandfield_with_count(q: &mut Query, key: &[u8], count: i64, with_values: bool) -> Res<Reply> {
    let Some(h) = q.db().get_hash(key, q.now)? else { return Ok(Reply::Array(Vec::new())) };
    if count == 0 {
        return Ok(Reply::Array(Vec::new()));
    }
    let entries = entries(h);
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

    fn text(r: &Reply) -> String {
        match r {
            Reply::Bulk(b) => String::from_utf8(b.to_vec()).unwrap(),
            other => panic!("not bulk: {other:?}"),
        }
    }
}

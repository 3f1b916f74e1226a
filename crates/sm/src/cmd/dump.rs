//! DUMP and RESTORE.
//!
//! ```text
//! DUMP key
//! RESTORE key ttl serialized-value [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency]
//! ```
//!
//! The payload is Redis 7.0's (see [`rdb`](crate::cmd::rdb)): DUMP of a value
//! gives the bytes redis-server gives for the same value and encoding, and
//! RESTORE takes what redis-server 7.0 (or an older one) dumps. RESTORE
//! checks every payload as Redis does with `sanitize-dump-payload yes`, so a
//! corrupt one is refused with `ERR Bad data format`, never trusted.
//!
//! IDLETIME and FREQ are checked and then ignored: this engine keeps no
//! access times or frequencies (a replicated engine cannot update state on
//! reads). A relative TTL counts from the entry's time.

use bytes::Bytes;

use crate::args::{self, is, Res};
use crate::cmd::keys::notify_new;
use crate::cmd::rdb::{self, RestoreError};
use crate::command::Spec;
use crate::db::Object;
use crate::event::Class;
use crate::reply::{errors, Reply};
use crate::state::{Exec, Query};
use crate::value::{HashVal, Value};

pub const COMMANDS: &[Spec] =
    &[Spec::read("dump", 2, (1, 1, 1), dump), Spec::write("restore", -4, (1, 1, 1), restore)];

/// DUMP key
///
/// A hash with field TTLs that are still running is refused: Redis 7.4
/// dumps it as a hash with metadata (RDB types 24/25), which this engine
/// does not write, and dumping it without its TTLs would make RESTORE
/// bring back fields for good. Expired fields are left out.
fn dump(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let now = q.now;
    Ok(match q.db().object(&argv[1], now) {
        Some(Object { value: Value::Hash(h), .. }) if h.ttl_count() > 0 => {
            let without_ttl = h.len() - h.ttl_count();
            if h.live_len(now) > without_ttl {
                return Err(Reply::err(DUMP_FIELD_TTLS));
            }
            let mut plain = HashVal::default();
            for (f, v) in h.iter_live(now) {
                plain.insert(f.clone(), v.clone());
            }
            if plain.is_empty() {
                Reply::Nil
            } else {
                Reply::Bulk(Bytes::from(rdb::dump(&Value::Hash(plain))))
            }
        }
        Some(obj) => Reply::Bulk(Bytes::from(rdb::dump(&obj.value))),
        None => Reply::Nil,
    })
}

/// DUMP of a hash whose fields have expiry times.
pub const DUMP_FIELD_TTLS: &str = "ERR DUMP of a hash with field expiration times is not supported";

/// RESTORE key ttl serialized-value [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency]
///
/// Redis's order of checks: the options, then an existing key (BUSYKEY),
/// then the TTL, then the payload's footer, then the object.
fn restore(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let (mut replace, mut absttl) = (false, false);
    let (mut idle, mut freq) = (None::<i64>, None::<i64>);
    let mut j = 4;
    while j < argv.len() {
        let additional = argv.len() - j - 1;
        let opt = &argv[j];
        if is(opt, "replace") {
            replace = true;
        } else if is(opt, "absttl") {
            absttl = true;
        } else if is(opt, "idletime") && additional >= 1 && freq.is_none() {
            let n = args::int(&argv[j + 1])?;
            if n < 0 {
                return Err(Reply::err("ERR Invalid IDLETIME value, must be >= 0"));
            }
            idle = Some(n);
            j += 1;
        } else if is(opt, "freq") && additional >= 1 && idle.is_none() {
            let n = args::int(&argv[j + 1])?;
            if !(0..=255).contains(&n) {
                return Err(Reply::err("ERR Invalid FREQ value, must be >= 0 and <= 255"));
            }
            freq = Some(n);
            j += 1;
        } else {
            return Err(Reply::err(errors::SYNTAX));
        }
        j += 1;
    }
    let key = &argv[1];
    let now = x.now;
    if !replace && x.db().contains(key, now) {
        return Err(Reply::err("BUSYKEY Target key name already exists."));
    }
    let mut ttl = args::int(&argv[2])?;
    if ttl < 0 {
        return Err(Reply::err("ERR Invalid TTL value, must be >= 0"));
    }
    let value = rdb::restore(&argv[3]).map_err(|e| match e {
        RestoreError::VersionOrChecksum => {
            Reply::err("ERR DUMP payload version or checksum are wrong")
        }
        RestoreError::BadData => Reply::err("ERR Bad data format"),
    })?;

    // REPLACE removes the old key first (an expired one goes as an expiry).
    let deleted = replace && x.db().delete(key, now).is_some();
    if ttl != 0 && !absttl {
        ttl = ttl.wrapping_add(now);
    }
    if ttl != 0 && ttl <= now {
        // Already expired: nothing is stored (Redis replicates a DEL).
        if deleted {
            x.modified(key);
            x.notify(Class::Generic, "del", key);
        }
        return Ok(Reply::Ok);
    }
    let adds = x.notify.wants(Class::New);
    let expire_at = (ttl != 0).then_some(ttl);
    x.db().set_object(key, Object::with(value, expire_at, false));
    let db = x.db;
    notify_new(x, db, key, adds);
    x.modified(key);
    x.notify(Class::Generic, "restore", key);
    Ok(Reply::Ok)
}

#[cfg(test)]
mod tests {
    //! Keyspace events and WATCH signals of the commands added with DUMP and
    //! RESTORE (the zset STORE commands and SORT too), as captured from
    //! redis-server 7.0.15 with `notify-keyspace-events KEAn`.

    use bytes::Bytes;

    use crate::event::{Class, Event, Notify};
    use crate::state::{Op, Stamp};
    use crate::testing::*;
    use crate::Reply;

    fn all() -> Notify {
        let classes = [
            Class::Generic,
            Class::String,
            Class::List,
            Class::Set,
            Class::Hash,
            Class::ZSet,
            Class::Expired,
            Class::Evicted,
            Class::New,
        ];
        Notify(classes.iter().fold(Notify::KEYSPACE | Notify::KEYEVENT, |b, c| b | c.bit()))
    }

    fn show(e: &Event) -> String {
        let Event::Keyspace { event, key, .. } = e else { return format!("{e:?}") };
        format!("{event} {}", String::from_utf8_lossy(key))
    }

    /// Runs `line`, with `P` standing for a DUMP payload of the string "v".
    fn run(h: &mut Harness, line: &str) -> Reply {
        let payload =
            Bytes::from(crate::cmd::rdb::dump(&crate::value::Value::Str(Bytes::from("v"))));
        let argv: Vec<Bytes> =
            argv(line).into_iter().map(|a| if a == "P" { payload.clone() } else { a }).collect();
        h.index += 1;
        let stamp = Stamp { index: h.index, time_ms: h.now, seed: h.seed };
        h.state.apply(&stamp, &Op::Command { db: 0, argv })
    }

    const CASES: &[(&str, &str, &[&str])] = &[
        ("ZADD a 1 x;ZADD b 2 x", "ZUNIONSTORE d 2 a b", &["new d", "zunionstore d"]),
        ("ZADD a 1 x;SET d v", "ZINTERSTORE d 2 a missing", &["del d"]),
        ("ZADD a 1 x", "ZDIFFSTORE a 2 a a", &["del a"]),
        ("ZADD z 1 a 2 b", "ZRANGESTORE d z 0 0", &["new d", "zrangestore d"]),
        ("ZADD z 1 a;ZADD d 1 x", "ZRANGESTORE d z 5 6", &["del d"]),
        ("RPUSH l 2 1", "SORT l STORE d", &["new d", "sortstore d"]),
        ("RPUSH l 2 1;SET d x", "SORT l STORE d", &["sortstore d"]),
        ("SET d x", "SORT missing STORE d", &["del d"]),
        ("ZADD z 2 b 1 a", "SORT z ALPHA", &[]),
        ("", "RESTORE k 0 P", &["new k", "restore k"]),
        ("SET k v", "RESTORE k 0 P REPLACE", &["new k", "restore k"]),
        ("SET k v", "RESTORE k 1 P ABSTTL REPLACE", &["del k"]),
        ("", "RESTORE k 1 P ABSTTL", &[]),
        ("", "RESTORE k 5000 P", &["new k", "restore k"]),
    ];

    #[test]
    fn events_are_redis_events() {
        let mut wrong = Vec::new();
        for &(setup, command, expected) in CASES {
            let mut h = Harness::new();
            h.state.set_notify(all());
            for line in setup.split(';').filter(|l| !l.is_empty()) {
                run(&mut h, line);
            }
            h.state.take_events();
            let reply = run(&mut h, command);
            assert!(!reply.is_error(), "{command}: {reply:?}");
            let got: Vec<String> = h.state.take_events().iter().map(show).collect();
            if got != expected {
                wrong.push(format!("{setup} | {command}: got {got:?}, Redis {expected:?}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    /// Every change is signalled (WATCH sees it); a read, an error or a
    /// sort without STORE is not a change.
    #[test]
    fn changes_are_signalled_for_watch() {
        let cases: &[(&str, &str, &str, bool)] = &[
            ("ZADD a 1 x", "ZUNIONSTORE d 1 a", "d", true),
            ("ZADD a 1 x;ZADD d 1 y", "ZINTERSTORE d 2 a missing", "d", true),
            ("ZADD a 1 x", "ZRANGESTORE d a 0 -1", "d", true),
            ("RPUSH l 1", "SORT l STORE d", "d", true),
            ("RPUSH l 1", "SORT l", "l", false),
            ("ZADD z 1 a", "SORT z", "z", false),
            ("", "RESTORE k 0 P", "k", true),
            ("SET k v", "RESTORE k 0 P", "k", false),
            ("SET k v", "RESTORE k 0 P REPLACE", "k", true),
            ("SET k v", "RESTORE k 0 bogus REPLACE", "k", false),
        ];
        for &(setup, command, key, changes) in cases {
            let mut h = Harness::new();
            for line in setup.split(';').filter(|l| !l.is_empty()) {
                run(&mut h, line);
            }
            let marks = h.state.watch_marks(0, &[Bytes::copy_from_slice(key.as_bytes())], h.now);
            run(&mut h, command);
            let changed =
                marks.iter().any(|w| h.state.dbs()[0].changed_since(&w.key, w.mark, w.seen, h.now));
            assert_eq!(changed, changes, "{setup} | {command}");
        }
    }
}

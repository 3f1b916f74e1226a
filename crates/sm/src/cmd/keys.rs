//! Keyspace commands: DEL EXISTS TYPE KEYS SCAN RENAME COPY MOVE RANDOMKEY, the
//! EXPIRE family, TTL family, PERSIST and OBJECT.

use bytes::Bytes;

use crate::args::{self, is, Res};
use crate::command::{arity_error, unknown_subcommand_error, Spec};
use crate::db::{Db, Object};
use crate::event::Class;
use crate::glob;
use crate::reply::{errors, Reply};
use crate::state::{Exec, Query, Rng};
use crate::value::{string_encoding, Value};

pub const COMMANDS: &[Spec] = &[
    Spec::write("del", -2, (1, -1, 1), del),
    Spec::write("unlink", -2, (1, -1, 1), del),
    Spec::read("exists", -2, (1, -1, 1), exists),
    Spec::read("type", 2, (1, 1, 1), type_),
    Spec::read("keys", 2, (0, 0, 0), keys),
    Spec::read("scan", -2, (0, 0, 0), scan),
    Spec::write("rename", 3, (1, 2, 1), rename),
    Spec::write("renamenx", 3, (1, 2, 1), renamenx),
    Spec::read("touch", -2, (1, -1, 1), exists),
    Spec::write("copy", -3, (1, 2, 1), copy),
    Spec::write("move", 3, (1, 1, 1), move_),
    Spec::read("randomkey", 1, (0, 0, 0), randomkey),
    Spec::write("expire", -3, (1, 1, 1), expire),
    Spec::write("pexpire", -3, (1, 1, 1), pexpire),
    Spec::write("expireat", -3, (1, 1, 1), expireat),
    Spec::write("pexpireat", -3, (1, 1, 1), pexpireat),
    Spec::read("ttl", 2, (1, 1, 1), ttl),
    Spec::read("pttl", 2, (1, 1, 1), pttl),
    Spec::read("expiretime", 2, (1, 1, 1), expiretime),
    Spec::read("pexpiretime", 2, (1, 1, 1), pexpiretime),
    Spec::write("persist", 2, (1, 1, 1), persist),
    Spec::read("object", -2, (0, 0, 0), object),
];

/// True if creating `key` in database `db` will emit Redis's "new" event
/// (class `n`, sent by `dbAdd`): the class is wanted and the key is not
/// visible now. Ask before creating the key, emit with [`notify_new`] at the
/// point Redis's `dbAdd` would (before the command's own event).
pub(crate) fn adds_key(x: &Exec, db: usize, key: &[u8]) -> bool {
    x.notify.wants(Class::New) && !x.dbs[db].contains(key, x.now)
}

/// Emits "new" for `key` in database `db` if [`adds_key`] said so.
pub(crate) fn notify_new(x: &mut Exec, db: usize, key: &[u8], adds: bool) {
    if adds {
        x.notify_in(db, Class::New, "new", key);
    }
}

/// What commands that remove a key they emptied do (Redis's `dbDelete`
/// after the last element went): the "del" event if the key is gone. The
/// caller signals the key itself.
pub(crate) fn notify_if_gone(x: &mut Exec, key: &[u8]) {
    let now = x.now;
    // No lookup unless someone listens.
    if x.notify.wants(Class::Generic) && !x.db().contains(key, now) {
        x.notify(Class::Generic, "del", key);
    }
}

/// DEL key [key ...] (and UNLINK, which is the same here: nothing is freed
/// in the background of a state machine).
fn del(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let now = x.now;
    let mut deleted = 0i64;
    for key in &argv[1..] {
        if x.db().delete(key, now).is_some() {
            x.modified(key);
            x.notify(Class::Generic, "del", key);
            deleted += 1;
        }
    }
    Ok(Reply::Int(deleted))
}

/// EXISTS key [key ...]; TOUCH key [key ...] (no access times are kept, so
/// TOUCH only counts).
fn exists(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let db = q.db();
    Ok(argv[1..].iter().filter(|k| db.contains(k, q.now)).count().into())
}

/// TYPE key
fn type_(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    Ok(match q.db().get(&argv[1], q.now) {
        Some(v) => Reply::status(v.type_name()),
        None => Reply::status("none"),
    })
}

/// KEYS pattern
fn keys(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let pattern = &argv[1];
    let all = pattern.as_ref() == b"*";
    let now = q.now;
    Ok(Reply::bulks(
        q.db()
            .iter()
            .filter(|(k, o)| !o.is_expired(now) && (all || glob::matches(pattern, k)))
            .map(|(k, _)| k.clone()),
    ))
}

/// Options shared by SCAN, HSCAN, SSCAN and ZSCAN.
pub struct ScanArgs<'a> {
    pub cursor: u64,
    pub count: usize,
    pub pattern: Option<&'a [u8]>,
    pub type_name: Option<&'a [u8]>,
}

impl<'a> ScanArgs<'a> {
    /// Parses `cursor [MATCH pattern] [COUNT count] [TYPE type]` starting at
    /// `argv[first]` (the cursor). TYPE is accepted only for SCAN.
    pub fn parse(argv: &'a [Bytes], first: usize, allow_type: bool) -> Res<ScanArgs<'a>> {
        let cursor = args::cursor(&argv[first])?;
        let mut out = ScanArgs { cursor, count: 10, pattern: None, type_name: None };
        let mut i = first + 1;
        while i < argv.len() {
            let has_value = i + 1 < argv.len();
            if is(&argv[i], "count") && has_value {
                let n = args::int(&argv[i + 1])?;
                if n < 1 {
                    return Err(Reply::err(errors::SYNTAX));
                }
                out.count = n as usize;
            } else if is(&argv[i], "match") && has_value {
                let p = &argv[i + 1];
                out.pattern = if p.as_ref() == b"*" { None } else { Some(p) };
            } else if is(&argv[i], "type") && allow_type && has_value {
                out.type_name = Some(&argv[i + 1]);
            } else {
                return Err(Reply::err(errors::SYNTAX));
            }
            i += 2;
        }
        Ok(out)
    }

    /// True if `item` passes the MATCH filter.
    pub fn matches(&self, item: &[u8]) -> bool {
        self.pattern.is_none_or(|p| glob::matches(p, item))
    }
}

/// The reply shape of every SCAN command: `[cursor, [items…]]`.
pub fn scan_reply(cursor: u64, items: Vec<Reply>) -> Reply {
    let cursor = Bytes::copy_from_slice(itoa::Buffer::new().format(cursor).as_bytes());
    Reply::Array(vec![Reply::Bulk(cursor), Reply::Array(items)])
}

/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]
fn scan(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let opts = ScanArgs::parse(argv, 1, true)?;
    let now = q.now;
    let (next, found) = q.db().keymap().scan(opts.cursor, opts.count);
    let items = found
        .into_iter()
        .filter(|(k, o)| {
            !o.is_expired(now)
                && opts.matches(k)
                && opts
                    .type_name
                    .is_none_or(|t| t.eq_ignore_ascii_case(o.value.type_name().as_bytes()))
        })
        .map(|(k, _)| Reply::Bulk(k.clone()))
        .collect();
    Ok(scan_reply(next, items))
}

/// RENAME key newkey
fn rename(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    rename_generic(x, argv, false)
}

/// RENAMENX key newkey
fn renamenx(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    rename_generic(x, argv, true)
}

fn rename_generic(x: &mut Exec, argv: &[Bytes], nx: bool) -> Res<Reply> {
    let now = x.now;
    let db = x.db();
    let (src, dst) = (&argv[1], &argv[2]);
    db.expire_if_needed(src, now);
    if !db.contains(src, now) {
        return Err(Reply::err(errors::NO_SUCH_KEY));
    }
    if src == dst {
        return Ok(if nx { Reply::Int(0) } else { Reply::Ok });
    }
    db.expire_if_needed(dst, now);
    if nx && db.contains(dst, now) {
        return Ok(Reply::Int(0));
    }
    let obj = db.remove(src).expect("checked above");
    db.set_object(dst, obj);
    // Redis deletes an existing destination and adds it anew: "new" even
    // when RENAME overwrites.
    if x.notify.wants(Class::New) {
        x.notify(Class::New, "new", dst);
    }
    x.modified(src);
    x.modified(dst);
    x.notify(Class::Generic, "rename_from", src);
    x.notify(Class::Generic, "rename_to", dst);
    Ok(if nx { Reply::Int(1) } else { Reply::Ok })
}

/// COPY source destination [DB destination-db] [REPLACE]
fn copy(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let mut replace = false;
    let mut dst_db = x.db;
    let mut i = 3;
    while i < argv.len() {
        if is(&argv[i], "replace") {
            replace = true;
        } else if is(&argv[i], "db") && i + 1 < argv.len() {
            let id = args::int32(&argv[i + 1])?;
            if id < 0 || id as usize >= x.dbs.len() {
                return Err(Reply::err(errors::DB_INDEX));
            }
            dst_db = id as usize;
            i += 1;
        } else {
            return Err(Reply::err(errors::SYNTAX));
        }
        i += 1;
    }
    let (src, dst) = (&argv[1], &argv[2]);
    if dst_db == x.db && src == dst {
        return Err(Reply::err("ERR source and destination objects are the same"));
    }
    let now = x.now;
    let Some(obj) = x.dbs[x.db].object(src, now).cloned() else { return Ok(Reply::Int(0)) };
    let target = &mut x.dbs[dst_db];
    target.expire_if_needed(dst, now);
    if target.contains(dst, now) && !replace {
        return Ok(Reply::Int(0));
    }
    target.set_object(dst, obj);
    // An existing destination (REPLACE) is deleted and added anew: "new" too.
    if x.notify.wants(Class::New) {
        x.notify_in(dst_db, Class::New, "new", dst);
    }
    x.modified_in(dst_db, dst);
    x.notify_in(dst_db, Class::Generic, "copy_to", dst);
    Ok(Reply::Int(1))
}

/// MOVE key db
fn move_(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let id = args::int32(&argv[2])?;
    if !(i32::MIN as i64..=i32::MAX as i64).contains(&id) {
        return Err(Reply::err(errors::NOT_INTEGER));
    }
    if id < 0 || id as usize >= x.dbs.len() {
        return Err(Reply::err(errors::DB_INDEX));
    }
    let dst_db = id as usize;
    if dst_db == x.db {
        return Err(Reply::err("ERR source and destination objects are the same"));
    }
    let now = x.now;
    let key = &argv[1];
    x.dbs[x.db].expire_if_needed(key, now);
    if !x.dbs[x.db].contains(key, now) {
        return Ok(Reply::Int(0));
    }
    x.dbs[dst_db].expire_if_needed(key, now);
    if x.dbs[dst_db].contains(key, now) {
        return Ok(Reply::Int(0));
    }
    let obj = x.dbs[x.db].remove(key).expect("checked above");
    x.dbs[dst_db].set_object(key, obj);
    let src_db = x.db;
    if x.notify.wants(Class::New) {
        x.notify_in(dst_db, Class::New, "new", key);
    }
    x.modified_in(src_db, key);
    x.modified_in(dst_db, key);
    x.notify_in(src_db, Class::Generic, "move_from", key);
    x.notify_in(dst_db, Class::Generic, "move_to", key);
    Ok(Reply::Int(1))
}

/// RANDOMKEY
fn randomkey(q: &mut Query, _argv: &[Bytes]) -> Res<Reply> {
    let db = &q.dbs[q.db];
    Ok(random_key(db, q.now, &mut q.rng).map_or(Reply::Nil, Reply::Bulk))
}

/// A visible key picked with `rng`, or None if there is none. Like Redis, gives
/// up after many expired picks in a database full of expired keys.
pub fn random_key(db: &Db, now: i64, rng: &mut Rng) -> Option<Bytes> {
    if db.visible_len(now) == 0 {
        return None;
    }
    for _ in 0..100 {
        let (key, obj) = db.keymap().pick(rng.next_u64())?;
        if !obj.is_expired(now) {
            return Some(key.clone());
        }
    }
    // Mostly expired: walk to the first visible key in canonical order.
    db.iter().find(|(_, o)| !o.is_expired(now)).map(|(k, _)| k.clone())
}

#[derive(Default, Clone, Copy)]
struct ExpireFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

fn parse_expire_flags(argv: &[Bytes]) -> Res<ExpireFlags> {
    let mut f = ExpireFlags::default();
    for opt in &argv[3..] {
        if is(opt, "nx") {
            f.nx = true;
        } else if is(opt, "xx") {
            f.xx = true;
        } else if is(opt, "gt") {
            f.gt = true;
        } else if is(opt, "lt") {
            f.lt = true;
        } else {
            return Err(Reply::error(format!("ERR Unsupported option {}", args::text(opt))));
        }
    }
    if f.nx && (f.xx || f.gt || f.lt) {
        return Err(Reply::err(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if f.gt && f.lt {
        return Err(Reply::err("ERR GT and LT options at the same time are not compatible"));
    }
    Ok(f)
}

/// `ERR invalid expire time in 'cmd' command`
pub fn invalid_expire(name: &str) -> Reply {
    Reply::error(format!("ERR invalid expire time in '{name}' command"))
}

fn expire_generic(
    x: &mut Exec,
    argv: &[Bytes],
    base: Option<i64>,
    seconds: bool,
    name: &str,
) -> Res<Reply> {
    let flags = parse_expire_flags(argv)?;
    let mut when = args::int(&argv[2])?;
    if seconds {
        when = when.checked_mul(1000).ok_or_else(|| invalid_expire(name))?;
    }
    let base = base.unwrap_or(0);
    when = when.checked_add(base).ok_or_else(|| invalid_expire(name))?;
    let now = x.now;
    let db = x.db();
    db.expire_if_needed(&argv[1], now);
    let Some(obj) = db.object(&argv[1], now) else { return Ok(Reply::Int(0)) };
    let current = obj.expire_at;
    if (flags.nx && current.is_some())
        || (flags.xx && current.is_none())
        || (flags.gt && current.is_none_or(|c| when <= c))
        || (flags.lt && current.is_some_and(|c| when >= c))
    {
        return Ok(Reply::Int(0));
    }
    // A time already past deletes the key (Redis replicates it as DEL).
    let event = if when <= now { "del" } else { "expire" };
    db.set_expire(&argv[1], when, now);
    x.modified(&argv[1]);
    x.notify(Class::Generic, event, &argv[1]);
    Ok(Reply::Int(1))
}

/// EXPIRE key seconds [NX | XX | GT | LT]
fn expire(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let now = x.now;
    expire_generic(x, argv, Some(now), true, "expire")
}

/// PEXPIRE key milliseconds [NX | XX | GT | LT]
fn pexpire(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let now = x.now;
    expire_generic(x, argv, Some(now), false, "pexpire")
}

/// EXPIREAT key unix-time-seconds [NX | XX | GT | LT]
fn expireat(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    expire_generic(x, argv, None, true, "expireat")
}

/// PEXPIREAT key unix-time-milliseconds [NX | XX | GT | LT]
fn pexpireat(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    expire_generic(x, argv, None, false, "pexpireat")
}

fn ttl_generic(q: &Query, key: &[u8], ms: bool, absolute: bool) -> Reply {
    let Some(obj) = q.db().object(key, q.now) else { return Reply::Int(-2) };
    match obj.expire_at {
        None => Reply::Int(-1),
        Some(at) => {
            let t = if absolute { at } else { (at - q.now).max(0) };
            Reply::Int(if ms { t } else { (t + 500) / 1000 })
        }
    }
}

/// TTL key
fn ttl(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    Ok(ttl_generic(q, &argv[1], false, false))
}

/// PTTL key
fn pttl(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    Ok(ttl_generic(q, &argv[1], true, false))
}

/// EXPIRETIME key
fn expiretime(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    Ok(ttl_generic(q, &argv[1], false, true))
}

/// PEXPIRETIME key
fn pexpiretime(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    Ok(ttl_generic(q, &argv[1], true, true))
}

/// PERSIST key
fn persist(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let now = x.now;
    if !x.db().persist(&argv[1], now) {
        return Ok(Reply::Int(0));
    }
    x.modified(&argv[1]);
    x.notify(Class::Generic, "persist", &argv[1]);
    Ok(Reply::Int(1))
}

const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Print this help.",
];

/// The encoding OBJECT ENCODING reports for an object.
pub fn encoding(obj: &Object) -> &'static str {
    match &obj.value {
        Value::Str(s) => string_encoding(s, obj.raw),
        Value::List(_) => "quicklist",
        Value::Hash(h) => h.encoding(),
        Value::Set(s) => s.encoding(),
        Value::ZSet(z) => z.encoding(),
    }
}

/// OBJECT ENCODING|FREQ|IDLETIME|REFCOUNT key, OBJECT HELP
fn object(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let sub = &argv[1];
    if is(sub, "help") {
        if argv.len() != 2 {
            return Err(arity_error("object|help"));
        }
        return Ok(Reply::Array(OBJECT_HELP.iter().map(|l| Reply::status(l)).collect()));
    }
    let name = ["encoding", "freq", "idletime", "refcount"].into_iter().find(|n| is(sub, n));
    let Some(name) = name else { return Err(unknown_subcommand_error("object", sub)) };
    if argv.len() != 3 {
        return Err(arity_error(&format!("object|{name}")));
    }
    let Some(obj) = q.db().object(&argv[2], q.now) else { return Ok(Reply::Nil) };
    Ok(match name {
        "encoding" => Reply::Bulk(Bytes::from_static(encoding(obj).as_bytes())),
        // Access information is kept (replicated: writes, and the reads the
        // nodes report in `Op::Touch` entries) while an LRU or LFU policy is
        // in force; without one an object was never accessed as far as the
        // engine knows, and its idle time is 0.
        "idletime" if q.memory.policy.lfu() => {
            return Err(Reply::err(
                "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note \
                 that when switching between policies at runtime LRU and LFU data will take \
                 some time to adjust.",
            ))
        }
        "idletime" if obj.access == 0 => Reply::Int(0),
        "idletime" => Reply::Int(
            i64::from(crate::memory::seconds(q.now)).saturating_sub(i64::from(obj.access)).max(0),
        ),
        "refcount" => Reply::Int(1),
        _ if q.memory.policy.lfu() => {
            Reply::Int(i64::from(crate::memory::lfu_decayed(obj, q.now, q.memory.lfu_decay_time)))
        }
        _ => {
            return Err(Reply::err(
                "ERR An LFU maxmemory policy is not selected, access frequency not tracked. \
                 Please note that when switching between policies at runtime LRU and LFU data \
                 will take some time to adjust.",
            ))
        }
    })
}

#[cfg(test)]
mod notify_tests {
    //! The keyspace events each write command emits: names, classes, keys,
    //! databases and order. Every case was run on redis-server 7.0.15 with
    //! `notify-keyspace-events KEAn` and `PSUBSCRIBE __keyevent@*__:*` (same
    //! setup, then the command; the events it published, in order), and the
    //! classes checked by running each case again with one class letter
    //! enabled at a time (`KEg`, `KE$`, `KEl`, `KEs`, `KEh`, `KEz`, `KEn`).

    use crate::event::{Class, Event, Notify};
    use crate::testing::Harness;

    fn letter(class: Class) -> char {
        match class {
            Class::Generic => 'g',
            Class::String => '$',
            Class::List => 'l',
            Class::Set => 's',
            Class::Hash => 'h',
            Class::ZSet => 'z',
            Class::Expired => 'x',
            Class::Evicted => 'e',
            Class::New => 'n',
        }
    }

    /// `"<class> <event> <key>[@<db>]"`
    fn show(e: &Event) -> String {
        let Event::Keyspace { db, class, event, key } = e else {
            return format!("{e:?}");
        };
        let at = if *db == 0 { String::new() } else { format!("@{db}") };
        format!("{} {event} {}{at}", letter(*class), String::from_utf8_lossy(key))
    }

    /// Every class and both channels (`KEAn`).
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

    /// The events of `command` after `setup` (`;`-separated), with `notify`.
    fn events_of(setup: &str, command: &str, notify: Notify) -> Vec<String> {
        let mut h = Harness::new();
        h.state.set_notify(notify);
        for line in setup.split(';').map(str::trim).filter(|l| !l.is_empty()) {
            h.run(line);
        }
        h.state.take_events();
        h.run(command);
        h.state.take_events().iter().map(show).collect()
    }

    /// `(setup, command, events)`.
    const CASES: &[(&str, &str, &[&str])] = &[
        ("", "SET k v EX 100", &["n new k", "$ set k", "g expire k"]),
        ("SET k v EX 100", "SET k w KEEPTTL", &["$ set k"]),
        ("SET k v", "SET k w NX GET", &[]),
        ("", "SETNX k v", &["n new k", "$ set k"]),
        ("", "SETEX k 100 v", &["n new k", "$ set k", "g expire k"]),
        ("SET k v", "GETSET k w", &["$ set k"]),
        ("SET k v", "GETDEL k", &["g del k"]),
        ("SET k v", "GETEX k EX 100", &["g expire k"]),
        ("SET k v EX 100", "GETEX k PERSIST", &["g persist k"]),
        ("SET k v", "GETEX k PXAT 1", &["g del k"]),
        ("", "MSET a 1 b 2 a 3", &["n new a", "$ set a", "n new b", "$ set b", "$ set a"]),
        ("", "MSETNX a 1 b 2", &["n new a", "$ set a", "n new b", "$ set b"]),
        ("", "INCR c", &["n new c", "$ incrby c"]),
        ("SET c 5", "DECRBY c 2", &["$ incrby c"]),
        ("", "INCRBYFLOAT c 1.5", &["n new c", "$ incrbyfloat c"]),
        ("", "APPEND s x", &["n new s", "$ append s"]),
        ("", "SETRANGE s 2 x", &["n new s", "$ setrange s"]),
        ("SET k v; SET j v", "DEL k missing j", &["g del k", "g del j"]),
        ("SET k v", "UNLINK k", &["g del k"]),
        ("SET a 1; SET b 2", "RENAME a b", &["n new b", "g rename_from a", "g rename_to b"]),
        ("SET a 1", "RENAMENX a b", &["n new b", "g rename_from a", "g rename_to b"]),
        ("SET a 1", "MOVE a 1", &["n new a@1", "g move_from a", "g move_to a@1"]),
        ("SET a 1; SET b 2", "COPY a b REPLACE", &["n new b", "g copy_to b"]),
        ("SET a 1", "COPY a b DB 1", &["n new b@1", "g copy_to b@1"]),
        ("SET k v", "EXPIRE k 100", &["g expire k"]),
        ("SET k v", "PEXPIREAT k 1", &["g del k"]),
        ("SET k v EX 100", "PERSIST k", &["g persist k"]),
        ("", "HSET h f v g w", &["n new h", "h hset h"]),
        ("HSET h f v", "HSET h f v", &["h hset h"]),
        ("HSET h f v", "HSETNX h g w", &["h hset h"]),
        ("HSET h f v", "HDEL h f x", &["h hdel h", "g del h"]),
        ("HSET h f 1", "HINCRBY h f 2", &["h hincrby h"]),
        ("", "HINCRBYFLOAT h f 1.5", &["n new h", "h hincrbyfloat h"]),
        ("", "LPUSH l a b", &["n new l", "l lpush l"]),
        ("RPUSH l a b", "RPOP l 5", &["l rpop l", "g del l"]),
        ("RPUSH l a", "LMOVE l m LEFT RIGHT", &["n new m", "l rpush m", "l lpop l", "g del l"]),
        ("RPUSH l a b", "RPOPLPUSH l l", &["l lpush l", "l rpop l"]),
        ("RPUSH l a b", "LTRIM l 5 10", &["l ltrim l", "g del l"]),
        ("RPUSH l a b a", "LREM l 0 a", &["l lrem l"]),
        ("RPUSH l a", "LSET l 0 b", &["l lset l"]),
        ("RPUSH l a", "LINSERT l AFTER a b", &["l linsert l"]),
        ("RPUSH l a", "LPUSHX l b", &["l lpush l"]),
        ("", "SADD s a b", &["n new s", "s sadd s"]),
        ("SADD s a", "SADD s a", &[]),
        ("SADD s a b", "SREM s a b", &["s srem s", "g del s"]),
        ("SADD s a b", "SPOP s 5", &["s spop s", "g del s"]),
        ("SADD s a b c", "SPOP s 1", &["s spop s"]),
        ("SADD s a", "SMOVE s d a", &["s srem s", "g del s", "n new d", "s sadd d"]),
        ("SADD s a; SADD d a", "SMOVE s d a", &["s srem s", "g del s"]),
        ("SADD s a b; SADD t b", "SINTERSTORE d s t", &["n new d", "s sinterstore d"]),
        ("SADD s a b; SET d x", "SUNIONSTORE d missing", &["g del d"]),
        ("SADD s a b; SADD t b", "SDIFFSTORE s s t", &["s sdiffstore s"]),
        ("", "ZADD z 1 a 2 b", &["n new z", "z zadd z"]),
        ("ZADD z 1 a", "ZADD z XX INCR 2 a", &["z zincr z"]),
        ("ZADD z 1 a", "ZINCRBY z 1 b", &["z zincr z"]),
        ("ZADD z 1 a", "ZINCRBY z 0 a", &[]),
        ("ZADD z 1 a 2 b", "ZREM z a b", &["z zrem z", "g del z"]),
        ("ZADD z 1 a 2 b", "ZREMRANGEBYSCORE z 0 1", &["z zremrangebyscore z"]),
        ("ZADD z 0 a 0 b", "ZREMRANGEBYLEX z - +", &["z zremrangebylex z", "g del z"]),
        ("ZADD z 1 a 2 b", "ZREMRANGEBYRANK z 0 0", &["z zremrangebyrank z"]),
        ("ZADD z 1 a 2 b", "ZPOPMAX z 5", &["z zpopmax z", "g del z"]),
        ("ZADD z 1 a 2 b", "ZPOPMIN z", &["z zpopmin z"]),
    ];

    #[test]
    fn events_are_redis_events() {
        let mut wrong = Vec::new();
        for &(setup, command, expected) in CASES {
            let got = events_of(setup, command, all());
            if got != expected {
                wrong.push(format!("{setup} | {command}: got {got:?}, Redis {expected:?}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    /// Only enabled classes are recorded, and nothing without a channel:
    /// `KEA` (no `n`) drops "new", `Kg` keeps only generic events, and the
    /// default records nothing.
    #[test]
    fn only_enabled_classes_are_recorded() {
        let kea = Notify(all().0 & !Class::New.bit());
        assert_eq!(events_of("", "SET k v EX 100", kea), ["$ set k", "g expire k"]);
        let kg = Notify(Notify::KEYSPACE | Class::Generic.bit());
        assert_eq!(events_of("", "SET k v EX 100", kg), ["g expire k"]);
        assert_eq!(events_of("RPUSH l a", "RPOP l", kg), ["g del l"]);
        let no_channel = Notify(all().0 & !(Notify::KEYSPACE | Notify::KEYEVENT));
        assert!(events_of("", "SET k v EX 100", no_channel).is_empty());
        assert!(events_of("", "SET k v EX 100", Notify::default()).is_empty());
    }

    /// An expired key that a write creates anew is "new" again, after the
    /// "expired" of the lazy expiry that found it (`lookupKeyWrite` in Redis).
    #[test]
    fn a_key_recreated_after_expiry_is_new() {
        let mut h = Harness::new();
        h.state.set_notify(all());
        h.run("SET k v PX 10");
        h.advance(20);
        h.state.take_events();
        h.run("SADD k a");
        let got: Vec<String> = h.state.take_events().iter().map(show).collect();
        assert_eq!(got, ["x expired k", "n new k", "s sadd k"]);
    }
}

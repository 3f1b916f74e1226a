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

pub const COMMANDS: &[Spec] =
    &[Spec::read("dump", 2, (1, 1, 1), dump), Spec::write("restore", -4, (1, 1, 1), restore)];

/// DUMP key
fn dump(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    Ok(match q.db().object(&argv[1], q.now) {
        Some(obj) => Reply::Bulk(Bytes::from(rdb::dump(&obj.value))),
        None => Reply::Nil,
    })
}

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
    x.db().set_object(key, Object { value, expire_at, raw: false, version: 0 });
    let db = x.db;
    notify_new(x, db, key, adds);
    x.modified(key);
    x.notify(Class::Generic, "restore", key);
    Ok(Reply::Ok)
}

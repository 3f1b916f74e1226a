//! The snapshot format and the state digest.
//!
//! # Format (version 3; version 2 when no key has access information)
//!
//! ```text
//! header   "RCACHESN" (8 bytes), version u16 LE, reserved u16 LE (0)
//! meta     clock_ms (zigzag varint), applied_index (varint), cluster_id (varint)
//! sessions count (varint), then per session in id order: id, ack_below
//!          (varints), last_seen_ms (zigzag varint), cached reply count, then
//!          per cached proposal: seq, reply count, replies (see `put_reply`)
//! config   if a cluster-wide parameter is not at its default: 0xFC, count,
//!          then (name, value) pairs (bytes each) as CONFIG GET shows them:
//!          notify-keyspace-events first, then the encoding thresholds in
//!          their fixed order, then the memory parameters (maxmemory …)
//! per database with keys or tombstones, in index order:
//!          0xFE, db index (varint), key count (varint),
//!          then each key in canonical (KeyMap) order:
//!            tag u8 (type in the low 4 bits, 0x80 = has expiry, 0x40 = raw string)
//!            [expire_at (zigzag varint)]  key (bytes)  version (varint)
//!            value (see `write_value`; a hash with field TTLs has its
//!            own type tags, 7 and 8, read by builds since hash-field
//!            expiration; other values keep their encoding)
//!          tombstones: horizon (varint), count (varint), then in the order
//!            they were recorded: index (varint), key (bytes)
//! scripts  if the script cache is not empty: 0xFD, count (varint), then each
//!          body (bytes) in SHA1 order
//! blocked  if clients are blocked or served elements unconfirmed: 0xFB, then
//!          waiters (count, then in id order: session, seq, db, deadline
//!          (zigzag), argv count and args, key count and keys), queues
//!          (count, then in (db, key) order: db, key, ids count, then
//!          session, seq each), pending (count, then in id order: session,
//!          seq, at (zigzag), give-back: 0 nothing | 1 list (db, key, left
//!          u8, count, items) | 2 zset (db, key, count, member and f64 bits)
//!          | 3 lock (name, token))
//! locks    if a lock was ever granted: 0xFA, last token (varint), count,
//!          then in name order: name, owner (bytes), token (varint),
//!          expires_at (zigzag)
//! access   only while an LRU/LFU maxmemory-policy keeps access information
//!          and some key has it (the snapshot is then version 3): 0xF9,
//!          count of databases with keys, then per such database in index
//!          order: its index, then for each of its keys in canonical order:
//!          access time in s (varint), LFU counter u8
//! end      0xFF
//! trailer  CRC-32 (IEEE) of everything above, u32 LE
//! ```
//!
//! Version 1 (still read) is the same without key versions and tombstones:
//! a state restored from it has every version 0 and no tombstones.
//!
//! `bytes` is a varint length followed by the bytes. Every collection is written
//! in the order the engine iterates it, which is a pure function of the state
//! (see [`KeyMap`](crate::keymap)), so two replicas with equal state write equal
//! snapshots. Writing and reading stream through `io::Write`/`io::Read`, so a
//! snapshot never has to fit in memory as a second copy; the reader bounds every
//! allocation it makes from lengths it has not yet verified.
//!
//! # Digest
//!
//! [`State::digest`] is BLAKE3 over the same canonical encoding of everything
//! but the applied index: the replicated clock, the session table and every
//! database. The encoding is injective, so two engines have equal digests
//! exactly when their states are equal (up to the collision resistance of
//! BLAKE3).

use std::collections::VecDeque;
use std::io::{self, Read, Write};

use bytes::Bytes;
use thiserror::Error;

use crate::blocked::{Blocked, GiveBack, Pending, Waiter, WaiterId};
use crate::cmd::scripting::Scripts;
use crate::db::{Db, Object, Tombstones, MAX_TOMBSTONES};
use crate::encodings::Encodings;
use crate::event::Notify;
use crate::keymap::KeyMap;
use crate::locks::{Lock, Locks};
use crate::memory::MemoryConfig;
use crate::reply::Reply;
use crate::session::{Session, Sessions};
use crate::state::{State, DATABASES};
use crate::value::{HashFields, HashVal, SetVal, Value, ZSetVal};

const MAGIC: &[u8; 8] = b"RCACHESN";
/// The snapshot format version this build writes.
pub const VERSION: u16 = 3;
/// The oldest snapshot format version this build reads.
pub const OLDEST_READABLE: u16 = 1;

const TAG_DB: u8 = 0xFE;
const TAG_SCRIPTS: u8 = 0xFD;
const TAG_CONFIG: u8 = 0xFC;
const TAG_BLOCKED: u8 = 0xFB;
const TAG_LOCKS: u8 = 0xFA;
const TAG_ACCESS: u8 = 0xF9;
const TAG_END: u8 = 0xFF;
const FLAG_EXPIRY: u8 = 0x80;
const FLAG_RAW: u8 = 0x40;

const T_STR: u8 = 0;
const T_LIST: u8 = 1;
const T_HASH_LISTPACK: u8 = 2;
const T_HASH_TABLE: u8 = 3;
const T_INTSET: u8 = 4;
const T_SET_TABLE: u8 = 5;
const T_ZSET: u8 = 6;
/// A hash with field TTLs: fields as for the other hashes, each followed by
/// 0 (no TTL) or 1 and its expiry time (zigzag varint). `LISTPACK_EX` is a
/// listpack in Redis's "listpackex" encoding (its order is expiry order).
const T_HASH_LISTPACK_EX: u8 = 7;
const T_HASH_TABLE_TTL: u8 = 8;

/// Largest allocation made up front from an unverified length.
const PREALLOC_LIMIT: usize = 64 * 1024;

/// Why a snapshot could not be read.
#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("snapshot I/O: {0}")]
    Io(#[from] io::Error),
    #[error("not a raftcache snapshot (bad magic)")]
    BadMagic,
    #[error(
        "unsupported snapshot version {0} (this build reads versions {OLDEST_READABLE} to {VERSION})"
    )]
    UnsupportedVersion(u16),
    #[error("snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("corrupt snapshot: {0}")]
    Corrupt(&'static str),
}

/// A writer that keeps a running CRC of what passes through.
struct CrcWriter<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that keeps a running CRC of what passes through.
struct CrcReader<R> {
    inner: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

fn put_varint(w: &mut impl Write, mut v: u64) -> io::Result<()> {
    let mut buf = [0u8; 10];
    let mut i = 0;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf[i] = byte;
            i += 1;
            break;
        }
        buf[i] = byte | 0x80;
        i += 1;
    }
    w.write_all(&buf[..i])
}

fn put_signed(w: &mut impl Write, v: i64) -> io::Result<()> {
    put_varint(w, ((v << 1) ^ (v >> 63)) as u64)
}

fn put_bytes(w: &mut impl Write, b: &[u8]) -> io::Result<()> {
    put_varint(w, b.len() as u64)?;
    w.write_all(b)
}

fn get_u8(r: &mut impl Read) -> Result<u8, SnapshotError> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

fn get_varint(r: &mut impl Read) -> Result<u64, SnapshotError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = get_u8(r)?;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(SnapshotError::Corrupt("varint too long"))
}

fn get_signed(r: &mut impl Read) -> Result<i64, SnapshotError> {
    let v = get_varint(r)?;
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

fn get_len(r: &mut impl Read) -> Result<usize, SnapshotError> {
    usize::try_from(get_varint(r)?).map_err(|_| SnapshotError::Corrupt("length too large"))
}

fn get_bytes(r: &mut impl Read) -> Result<Bytes, SnapshotError> {
    let len = get_len(r)?;
    let mut buf = Vec::with_capacity(len.min(PREALLOC_LIMIT));
    let got = r.take(len as u64).read_to_end(&mut buf)?;
    if got != len {
        return Err(SnapshotError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(Bytes::from(buf))
}

fn write_value(w: &mut impl Write, obj: &Object) -> io::Result<()> {
    match &obj.value {
        Value::Str(s) => put_bytes(w, s),
        Value::List(l) => {
            put_varint(w, l.len() as u64)?;
            l.iter().try_for_each(|e| put_bytes(w, e))
        }
        Value::Hash(h) if has_field_ttls(h) => {
            put_varint(w, h.len() as u64)?;
            h.iter().try_for_each(|(f, v)| {
                put_bytes(w, f)?;
                put_bytes(w, v)?;
                match h.ttl(f) {
                    Some(at) => {
                        w.write_all(&[1])?;
                        put_signed(w, at)
                    }
                    None => w.write_all(&[0]),
                }
            })
        }
        Value::Hash(h) => {
            put_varint(w, h.len() as u64)?;
            h.iter().try_for_each(|(f, v)| {
                put_bytes(w, f)?;
                put_bytes(w, v)
            })
        }
        Value::Set(SetVal::Intset(v)) => {
            put_varint(w, v.len() as u64)?;
            v.iter().try_for_each(|n| put_signed(w, *n))
        }
        Value::Set(SetVal::Table(t)) => {
            put_varint(w, t.len() as u64)?;
            t.keys().try_for_each(|m| put_bytes(w, m))
        }
        Value::ZSet(z) => {
            w.write_all(&[u8::from(z.listpack)])?;
            put_varint(w, z.len() as u64)?;
            z.iter().try_for_each(|(m, s)| {
                put_bytes(w, m)?;
                w.write_all(&s.to_bits().to_le_bytes())
            })
        }
    }
}

/// True for a hash written with its field TTLs (and "listpackex" mark).
/// Other hashes keep the older encoding, so states without field TTLs write
/// the bytes (and digest) they always did.
fn has_field_ttls(h: &HashVal) -> bool {
    h.ttl_count() > 0 || h.is_listpack_ex()
}

fn type_tag(obj: &Object) -> u8 {
    match &obj.value {
        Value::Str(_) => T_STR,
        Value::List(_) => T_LIST,
        Value::Hash(h) => match (&h.fields, has_field_ttls(h)) {
            (HashFields::Listpack(_), false) => T_HASH_LISTPACK,
            (HashFields::Table(_), false) => T_HASH_TABLE,
            (HashFields::Listpack(_), true) => T_HASH_LISTPACK_EX,
            (HashFields::Table(_), true) => T_HASH_TABLE_TTL,
        },
        Value::Set(SetVal::Intset(_)) => T_INTSET,
        Value::Set(SetVal::Table(_)) => T_SET_TABLE,
        Value::ZSet(_) => T_ZSET,
    }
}

/// Most nesting accepted in a cached reply.
const MAX_REPLY_DEPTH: usize = 32;

fn put_items<W: Write>(w: &mut W, tag: u8, items: &[Reply]) -> io::Result<()> {
    w.write_all(&[tag])?;
    put_varint(w, items.len() as u64)?;
    items.iter().try_for_each(|i| put_reply(w, i))
}

fn put_pairs<W: Write>(w: &mut W, tag: u8, pairs: &[(Reply, Reply)]) -> io::Result<()> {
    w.write_all(&[tag])?;
    put_varint(w, pairs.len() as u64)?;
    pairs.iter().try_for_each(|(k, v)| {
        put_reply(w, k)?;
        put_reply(w, v)
    })
}

fn put_reply<W: Write>(w: &mut W, r: &Reply) -> io::Result<()> {
    match r {
        Reply::Ok => w.write_all(&[0]),
        Reply::Status(s) => {
            w.write_all(&[1])?;
            put_bytes(w, s.as_bytes())
        }
        Reply::Error(s) => {
            w.write_all(&[2])?;
            put_bytes(w, s.as_bytes())
        }
        Reply::Int(n) => {
            w.write_all(&[3])?;
            put_signed(w, *n)
        }
        Reply::Bulk(b) => {
            w.write_all(&[4])?;
            put_bytes(w, b)
        }
        Reply::Nil => w.write_all(&[5]),
        Reply::NilArray => w.write_all(&[6]),
        Reply::Array(v) => put_items(w, 7, v),
        Reply::Map(p) => put_pairs(w, 8, p),
        Reply::Set(v) => put_items(w, 9, v),
        Reply::Pairs(p) => put_pairs(w, 10, p),
        Reply::Double(d) => {
            w.write_all(&[11])?;
            w.write_all(&d.to_bits().to_le_bytes())
        }
        Reply::Bool(b) => w.write_all(&[12, u8::from(*b)]),
        Reply::Verbatim(b) => {
            w.write_all(&[13])?;
            put_bytes(w, b)
        }
        Reply::NoReply => w.write_all(&[14]),
        Reply::BigNumber(b) => {
            w.write_all(&[15])?;
            put_bytes(w, b)
        }
        Reply::Blocked => w.write_all(&[16]),
    }
}

fn get_text(r: &mut impl Read) -> Result<String, SnapshotError> {
    String::from_utf8(get_bytes(r)?.to_vec())
        .map_err(|_| SnapshotError::Corrupt("reply text not UTF-8"))
}

fn get_items<R: Read>(r: &mut R, depth: usize) -> Result<Vec<Reply>, SnapshotError> {
    let n = get_len(r)?;
    let mut v = Vec::with_capacity(n.min(PREALLOC_LIMIT));
    for _ in 0..n {
        v.push(get_reply(r, depth + 1)?);
    }
    Ok(v)
}

fn get_pairs<R: Read>(r: &mut R, depth: usize) -> Result<Vec<(Reply, Reply)>, SnapshotError> {
    let n = get_len(r)?;
    let mut v = Vec::with_capacity(n.min(PREALLOC_LIMIT));
    for _ in 0..n {
        v.push((get_reply(r, depth + 1)?, get_reply(r, depth + 1)?));
    }
    Ok(v)
}

fn get_reply<R: Read>(r: &mut R, depth: usize) -> Result<Reply, SnapshotError> {
    if depth > MAX_REPLY_DEPTH {
        return Err(SnapshotError::Corrupt("reply nested too deeply"));
    }
    Ok(match get_u8(r)? {
        0 => Reply::Ok,
        1 => Reply::Status(get_text(r)?.into()),
        2 => Reply::Error(get_text(r)?.into()),
        3 => Reply::Int(get_signed(r)?),
        4 => Reply::Bulk(get_bytes(r)?),
        5 => Reply::Nil,
        6 => Reply::NilArray,
        7 => Reply::Array(get_items(r, depth)?),
        8 => Reply::Map(get_pairs(r, depth)?),
        9 => Reply::Set(get_items(r, depth)?),
        10 => Reply::Pairs(get_pairs(r, depth)?),
        11 => {
            let mut bits = [0u8; 8];
            r.read_exact(&mut bits)?;
            Reply::Double(f64::from_bits(u64::from_le_bytes(bits)))
        }
        12 => Reply::Bool(get_u8(r)? != 0),
        13 => Reply::Verbatim(get_bytes(r)?),
        14 => Reply::NoReply,
        15 => Reply::BigNumber(get_bytes(r)?),
        16 => Reply::Blocked,
        _ => return Err(SnapshotError::Corrupt("unknown reply tag")),
    })
}

fn write_sessions(w: &mut impl Write, sessions: &Sessions) -> io::Result<()> {
    put_varint(w, sessions.map.len() as u64)?;
    for (id, s) in &sessions.map {
        put_varint(w, *id)?;
        put_varint(w, s.ack_below)?;
        put_signed(w, s.last_seen_ms)?;
        put_varint(w, s.replies.len() as u64)?;
        for (seq, replies) in &s.replies {
            put_varint(w, *seq)?;
            put_varint(w, replies.len() as u64)?;
            replies.iter().try_for_each(|r| put_reply(w, r))?;
        }
    }
    Ok(())
}

fn read_sessions(r: &mut impl Read) -> Result<Sessions, SnapshotError> {
    let mut sessions = Sessions::default();
    for _ in 0..get_len(r)? {
        let id = get_varint(r)?;
        let ack_below = get_varint(r)?;
        let last_seen_ms = get_signed(r)?;
        let mut session = Session { replies: Default::default(), ack_below, last_seen_ms };
        for _ in 0..get_len(r)? {
            let seq = get_varint(r)?;
            let n = get_len(r)?;
            let mut replies = Vec::with_capacity(n.min(PREALLOC_LIMIT));
            for _ in 0..n {
                replies.push(get_reply(r, 0)?);
            }
            session.replies.insert(seq, replies);
        }
        if sessions.map.insert(id, session).is_some() {
            return Err(SnapshotError::Corrupt("duplicate session"));
        }
    }
    Ok(sessions)
}

fn write_blocked(w: &mut impl Write, b: &Blocked) -> io::Result<()> {
    if *b == Blocked::default() {
        return Ok(());
    }
    w.write_all(&[TAG_BLOCKED])?;
    put_varint(w, b.waiters.len() as u64)?;
    for (id, waiter) in &b.waiters {
        put_varint(w, id.session)?;
        put_varint(w, id.seq)?;
        put_varint(w, u64::from(waiter.db))?;
        put_signed(w, waiter.deadline)?;
        put_varint(w, waiter.argv.len() as u64)?;
        waiter.argv.iter().try_for_each(|a| put_bytes(w, a))?;
        put_varint(w, waiter.keys.len() as u64)?;
        waiter.keys.iter().try_for_each(|k| put_bytes(w, k))?;
    }
    put_varint(w, b.queues.len() as u64)?;
    for ((db, key), ids) in &b.queues {
        put_varint(w, u64::from(*db))?;
        put_bytes(w, key)?;
        put_varint(w, ids.len() as u64)?;
        for id in ids {
            put_varint(w, id.session)?;
            put_varint(w, id.seq)?;
        }
    }
    put_varint(w, b.pending.len() as u64)?;
    for (id, p) in &b.pending {
        put_varint(w, id.session)?;
        put_varint(w, id.seq)?;
        put_signed(w, p.at)?;
        match &p.give_back {
            GiveBack::Nothing => w.write_all(&[0])?,
            GiveBack::Lock { name, token } => {
                w.write_all(&[3])?;
                put_bytes(w, name)?;
                put_varint(w, *token)?;
            }
            GiveBack::List { db, key, left, items } => {
                w.write_all(&[1])?;
                put_varint(w, u64::from(*db))?;
                put_bytes(w, key)?;
                w.write_all(&[u8::from(*left)])?;
                put_varint(w, items.len() as u64)?;
                items.iter().try_for_each(|i| put_bytes(w, i))?;
            }
            GiveBack::ZSet { db, key, items } => {
                w.write_all(&[2])?;
                put_varint(w, u64::from(*db))?;
                put_bytes(w, key)?;
                put_varint(w, items.len() as u64)?;
                for (m, score) in items {
                    put_bytes(w, m)?;
                    w.write_all(&score.to_bits().to_le_bytes())?;
                }
            }
        }
    }
    Ok(())
}

fn get_db_index(r: &mut impl Read) -> Result<u32, SnapshotError> {
    match get_varint(r)? {
        i if i < DATABASES as u64 => Ok(i as u32),
        // Lock waiters queue under the locks' own number.
        i if i == u64::from(crate::locks::LOCK_DB) => Ok(crate::locks::LOCK_DB),
        _ => Err(SnapshotError::Corrupt("database index out of range")),
    }
}

fn get_waiter_id(r: &mut impl Read) -> Result<WaiterId, SnapshotError> {
    Ok(WaiterId { session: get_varint(r)?, seq: get_varint(r)? })
}

fn get_list(r: &mut impl Read) -> Result<Vec<Bytes>, SnapshotError> {
    let n = get_len(r)?;
    let mut out = Vec::with_capacity(n.min(PREALLOC_LIMIT));
    for _ in 0..n {
        out.push(get_bytes(r)?);
    }
    Ok(out)
}

fn read_blocked(r: &mut impl Read) -> Result<Blocked, SnapshotError> {
    let mut b = Blocked::default();
    for _ in 0..get_len(r)? {
        let id = get_waiter_id(r)?;
        let db = get_db_index(r)?;
        let deadline = get_signed(r)?;
        let argv = get_list(r)?;
        let keys = get_list(r)?;
        b.waiters.insert(id, Waiter { db, argv, keys, deadline });
    }
    for _ in 0..get_len(r)? {
        let db = get_db_index(r)?;
        let key = get_bytes(r)?;
        let n = get_len(r)?;
        let mut ids = std::collections::VecDeque::with_capacity(n.min(PREALLOC_LIMIT));
        for _ in 0..n {
            ids.push_back(get_waiter_id(r)?);
        }
        b.queues.insert((db, key), ids);
    }
    for _ in 0..get_len(r)? {
        let id = get_waiter_id(r)?;
        let at = get_signed(r)?;
        let give_back = match get_u8(r)? {
            0 => GiveBack::Nothing,
            1 => {
                let db = get_db_index(r)?;
                let key = get_bytes(r)?;
                let left = get_u8(r)? != 0;
                GiveBack::List { db, key, left, items: get_list(r)? }
            }
            2 => {
                let db = get_db_index(r)?;
                let key = get_bytes(r)?;
                let n = get_len(r)?;
                let mut items = Vec::with_capacity(n.min(PREALLOC_LIMIT));
                for _ in 0..n {
                    let m = get_bytes(r)?;
                    let mut bits = [0u8; 8];
                    r.read_exact(&mut bits)?;
                    items.push((m, f64::from_bits(u64::from_le_bytes(bits))));
                }
                GiveBack::ZSet { db, key, items }
            }
            3 => {
                let name = get_bytes(r)?;
                GiveBack::Lock { name, token: get_varint(r)? }
            }
            _ => return Err(SnapshotError::Corrupt("unknown give-back kind")),
        };
        b.pending.insert(id, Pending { at, give_back });
    }
    if b == Blocked::default() {
        return Err(SnapshotError::Corrupt("empty blocked section"));
    }
    Ok(b)
}

fn write_config(
    w: &mut impl Write,
    notify: Notify,
    encodings: &Encodings,
    memory: &MemoryConfig,
) -> io::Result<()> {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if notify != Notify::default() {
        pairs.push(("notify-keyspace-events", notify.to_text()));
    }
    pairs.extend(encodings.changed());
    pairs.extend(memory.changed());
    if pairs.is_empty() {
        return Ok(());
    }
    w.write_all(&[TAG_CONFIG])?;
    put_varint(w, pairs.len() as u64)?;
    for (name, value) in pairs {
        put_bytes(w, name.as_bytes())?;
        put_bytes(w, value.as_bytes())?;
    }
    Ok(())
}

fn write_scripts(w: &mut impl Write, scripts: &Scripts) -> io::Result<()> {
    if scripts.is_empty() {
        return Ok(());
    }
    w.write_all(&[TAG_SCRIPTS])?;
    put_varint(w, scripts.len() as u64)?;
    scripts.iter().try_for_each(|(_, body)| put_bytes(w, body))
}

fn write_dbs(w: &mut impl Write, dbs: &[Db]) -> io::Result<()> {
    for (index, db) in dbs.iter().enumerate() {
        if db.is_empty() && db.gone == Tombstones::default() {
            continue;
        }
        w.write_all(&[TAG_DB])?;
        put_varint(w, index as u64)?;
        put_varint(w, db.len() as u64)?;
        for (key, obj) in db.iter() {
            let mut tag = type_tag(obj);
            if obj.expire_at.is_some() {
                tag |= FLAG_EXPIRY;
            }
            if obj.raw {
                tag |= FLAG_RAW;
            }
            w.write_all(&[tag])?;
            if let Some(at) = obj.expire_at {
                put_signed(w, at)?;
            }
            put_bytes(w, key)?;
            put_varint(w, obj.version)?;
            write_value(w, obj)?;
        }
        put_varint(w, db.gone.horizon)?;
        put_varint(w, db.gone.order.len() as u64)?;
        for (at, key) in &db.gone.order {
            put_varint(w, *at)?;
            put_bytes(w, key)?;
        }
    }
    Ok(())
}

fn read_tombstones(r: &mut impl Read) -> Result<Tombstones, SnapshotError> {
    let mut t = Tombstones { horizon: get_varint(r)?, ..Tombstones::default() };
    for _ in 0..get_len(r)? {
        let at = get_varint(r)?;
        let key = get_bytes(r)?;
        let latest = t.latest.entry(key.clone()).or_insert(0);
        *latest = (*latest).max(at);
        t.order.push_back((at, key));
    }
    if t.order.len() > MAX_TOMBSTONES {
        return Err(SnapshotError::Corrupt("too many tombstones"));
    }
    Ok(t)
}

fn read_value(r: &mut impl Read, tag: u8) -> Result<Value, SnapshotError> {
    Ok(match tag {
        T_STR => Value::Str(get_bytes(r)?),
        T_LIST => {
            let n = get_len(r)?;
            let mut l = VecDeque::with_capacity(n.min(PREALLOC_LIMIT));
            for _ in 0..n {
                l.push_back(get_bytes(r)?);
            }
            Value::List(l)
        }
        T_HASH_LISTPACK => {
            let n = get_len(r)?;
            let mut v = Vec::with_capacity(n.min(PREALLOC_LIMIT));
            for _ in 0..n {
                v.push((get_bytes(r)?, get_bytes(r)?));
            }
            Value::Hash(HashVal::from_fields(HashFields::Listpack(v)))
        }
        T_HASH_TABLE => {
            let n = get_len(r)?;
            let mut t = KeyMap::new();
            for _ in 0..n {
                t.insert(get_bytes(r)?, get_bytes(r)?);
            }
            Value::Hash(HashVal::from_fields(HashFields::Table(t)))
        }
        T_HASH_LISTPACK_EX | T_HASH_TABLE_TTL => {
            let n = get_len(r)?;
            let mut v = Vec::with_capacity(n.min(PREALLOC_LIMIT));
            let mut ttls = Vec::new();
            for _ in 0..n {
                let (f, value) = (get_bytes(r)?, get_bytes(r)?);
                match get_u8(r)? {
                    0 => {}
                    1 => ttls.push((f.clone(), get_signed(r)?)),
                    _ => return Err(SnapshotError::Corrupt("bad field TTL flag")),
                }
                v.push((f, value));
            }
            let fields = if tag == T_HASH_LISTPACK_EX {
                HashFields::Listpack(v)
            } else {
                HashFields::Table(v.into_iter().collect())
            };
            let mut h = HashVal::from_fields(fields);
            if h.len() != n {
                return Err(SnapshotError::Corrupt("duplicate hash field"));
            }
            for (f, at) in ttls {
                h.restore_ttl(f, at);
            }
            h.restore_listpack_ex(tag == T_HASH_LISTPACK_EX);
            Value::Hash(h)
        }
        T_INTSET => {
            let n = get_len(r)?;
            let mut v = Vec::with_capacity(n.min(PREALLOC_LIMIT));
            for _ in 0..n {
                v.push(get_signed(r)?);
            }
            if !v.windows(2).all(|w| w[0] < w[1]) {
                return Err(SnapshotError::Corrupt("intset not sorted"));
            }
            Value::Set(SetVal::Intset(v))
        }
        T_SET_TABLE => {
            let n = get_len(r)?;
            let mut t = KeyMap::new();
            for _ in 0..n {
                t.insert(get_bytes(r)?, ());
            }
            Value::Set(SetVal::Table(t))
        }
        T_ZSET => {
            let listpack = get_u8(r)? != 0;
            let n = get_len(r)?;
            let mut z = ZSetVal::default();
            for _ in 0..n {
                let m = get_bytes(r)?;
                let mut bits = [0u8; 8];
                r.read_exact(&mut bits)?;
                let score = f64::from_bits(u64::from_le_bytes(bits));
                if score.is_nan() {
                    return Err(SnapshotError::Corrupt("NaN score"));
                }
                z.insert(&m, score);
            }
            z.listpack = listpack;
            Value::ZSet(z)
        }
        _ => return Err(SnapshotError::Corrupt("unknown value type")),
    })
}

/// What follows the sessions: databases, scripts, configuration.
struct Sections {
    dbs: Vec<Db>,
    scripts: Scripts,
    notify: Notify,
    encodings: Encodings,
    memory: MemoryConfig,
    blocked: Blocked,
    locks: Locks,
}

fn read_sections(r: &mut impl Read, version: u16) -> Result<Sections, SnapshotError> {
    let mut out = Sections {
        dbs: vec![Db::default(); DATABASES],
        scripts: Scripts::default(),
        notify: Notify::default(),
        encodings: Encodings::default(),
        memory: MemoryConfig::default(),
        blocked: Blocked::default(),
        locks: Locks::default(),
    };
    // Sections come in a fixed order, each at most once (databases in
    // increasing index): config, databases, scripts, blocked, locks.
    let mut last: Option<u8> = None;
    let mut last_db: Option<usize> = None;
    let mut next = |rank: u8| -> Result<(), SnapshotError> {
        let repeated = last.is_some_and(|l| rank < l || (rank == l && rank != 1));
        if repeated || (version < 2 && rank != 1) {
            return Err(SnapshotError::Corrupt("snapshot sections out of order"));
        }
        last = Some(rank);
        Ok(())
    };
    loop {
        match get_u8(r)? {
            TAG_END => return Ok(out),
            TAG_CONFIG => {
                next(0)?;
                let n = get_len(r)?;
                if n == 0 {
                    return Err(SnapshotError::Corrupt("empty config section"));
                }
                for _ in 0..n {
                    let name = get_bytes(r)?;
                    let value = get_bytes(r)?;
                    let name = std::str::from_utf8(&name)
                        .map_err(|_| SnapshotError::Corrupt("config name"))?;
                    if name == "notify-keyspace-events" {
                        out.notify = Notify::parse(&value)
                            .ok_or(SnapshotError::Corrupt("notify-keyspace-events value"))?;
                    } else if MemoryConfig::knows(name) {
                        out.memory
                            .set(name, &value)
                            .map_err(|_| SnapshotError::Corrupt("bad memory parameter"))?;
                    } else if out.encodings.set(name, &value).is_err() {
                        return Err(SnapshotError::Corrupt("unknown or bad config parameter"));
                    }
                }
            }
            TAG_DB => {
                next(1)?;
                let index = get_len(r)?;
                if index >= DATABASES || last_db.is_some_and(|l| index <= l) {
                    return Err(SnapshotError::Corrupt("database index out of order"));
                }
                last_db = Some(index);
                let count = get_len(r)?;
                for _ in 0..count {
                    let tag = get_u8(r)?;
                    let expire_at =
                        if tag & FLAG_EXPIRY != 0 { Some(get_signed(r)?) } else { None };
                    let key = get_bytes(r)?;
                    let key_version = if version >= 2 { get_varint(r)? } else { 0 };
                    let value = read_value(r, tag & 0x0f)?;
                    if value.is_empty_collection() {
                        return Err(SnapshotError::Corrupt("empty collection"));
                    }
                    if out.dbs[index].keymap().contains_key(&key) {
                        return Err(SnapshotError::Corrupt("duplicate keys"));
                    }
                    let obj = Object {
                        version: key_version,
                        ..Object::with(value, expire_at, tag & FLAG_RAW != 0)
                    };
                    out.dbs[index].restore_insert(key, obj);
                }
                if version >= 2 {
                    out.dbs[index].gone = read_tombstones(r)?;
                }
            }
            TAG_SCRIPTS => {
                next(2)?;
                let n = get_len(r)?;
                for _ in 0..n {
                    let body = get_bytes(r)?;
                    out.scripts.insert(crate::script::sha1_hex(&body), body);
                }
                if out.scripts.len() != n || n == 0 {
                    return Err(SnapshotError::Corrupt("duplicate or no scripts"));
                }
            }
            TAG_BLOCKED => {
                next(3)?;
                out.blocked = read_blocked(r)?;
            }
            TAG_LOCKS => {
                next(4)?;
                out.locks = read_locks(r)?;
            }
            TAG_ACCESS if version >= 3 => {
                next(5)?;
                read_access(r, &mut out.dbs)?;
            }
            _ => return Err(SnapshotError::Corrupt("unknown section tag")),
        }
    }
}

/// True if any key has access information (kept while an LRU/LFU policy is
/// in force), which only a version 3 snapshot carries.
fn has_access(state: &State) -> bool {
    state.memory.tracks_access()
        && state.dbs.iter().any(|db| db.iter().any(|(_, o)| o.access != 0 || o.freq != 0))
}

fn write_access(w: &mut impl Write, dbs: &[Db]) -> io::Result<()> {
    w.write_all(&[TAG_ACCESS])?;
    let with_keys: Vec<(usize, &Db)> =
        dbs.iter().enumerate().filter(|(_, d)| !d.is_empty()).collect();
    put_varint(w, with_keys.len() as u64)?;
    for (index, db) in with_keys {
        put_varint(w, index as u64)?;
        for (_, obj) in db.iter() {
            put_varint(w, u64::from(obj.access))?;
            w.write_all(&[obj.freq])?;
        }
    }
    Ok(())
}

fn read_access(r: &mut impl Read, dbs: &mut [Db]) -> Result<(), SnapshotError> {
    let n = get_len(r)?;
    let mut last: Option<usize> = None;
    for _ in 0..n {
        let index = get_len(r)?;
        if index >= dbs.len() || last.is_some_and(|l| index <= l) || dbs[index].is_empty() {
            return Err(SnapshotError::Corrupt("access section: database index"));
        }
        last = Some(index);
        let mut values = Vec::with_capacity(dbs[index].len().min(1 << 20));
        for _ in 0..dbs[index].len() {
            let access =
                u32::try_from(get_varint(r)?).map_err(|_| SnapshotError::Corrupt("access time"))?;
            values.push((access, get_u8(r)?));
        }
        dbs[index].restore_access(values);
    }
    Ok(())
}

fn write_locks(w: &mut impl Write, locks: &Locks) -> io::Result<()> {
    if locks.is_empty() {
        return Ok(());
    }
    w.write_all(&[TAG_LOCKS])?;
    put_varint(w, locks.last_token)?;
    put_varint(w, locks.held.len() as u64)?;
    for (name, lock) in &locks.held {
        put_bytes(w, name)?;
        put_bytes(w, &lock.owner)?;
        put_varint(w, lock.token)?;
        put_signed(w, lock.expires_at)?;
    }
    Ok(())
}

fn read_locks(r: &mut impl Read) -> Result<Locks, SnapshotError> {
    let mut locks = Locks { last_token: get_varint(r)?, ..Locks::default() };
    let n = get_len(r)?;
    for _ in 0..n {
        let name = get_bytes(r)?;
        let owner = get_bytes(r)?;
        let token = get_varint(r)?;
        let expires_at = get_signed(r)?;
        locks.held.insert(name, Lock { owner, token, expires_at });
    }
    if locks.len() != n || locks.is_empty() {
        return Err(SnapshotError::Corrupt("duplicate or no locks"));
    }
    Ok(locks)
}

/// Buffer size for snapshot files.
const IO_BUFFER: usize = 256 << 10;

impl State {
    /// Writes a snapshot of the whole state to `w` (buffered here: pass the
    /// file itself). Returns the bytes written.
    pub fn write_snapshot(&self, w: impl Write) -> io::Result<u64> {
        let mut w = CrcWriter {
            inner: io::BufWriter::with_capacity(IO_BUFFER, w),
            crc: crc32fast::Hasher::new(),
        };
        let mut counter = CountingWriter { inner: &mut w, count: 0 };
        counter.write_all(MAGIC)?;
        let access = has_access(self);
        let version: u16 = if access { 3 } else { 2 };
        counter.write_all(&version.to_le_bytes())?;
        counter.write_all(&0u16.to_le_bytes())?;
        put_signed(&mut counter, self.clock_ms)?;
        put_varint(&mut counter, self.applied_index)?;
        put_varint(&mut counter, self.cluster_id)?;
        write_sessions(&mut counter, &self.sessions)?;
        write_config(&mut counter, self.notify, &self.encodings, &self.memory)?;
        write_dbs(&mut counter, &self.dbs)?;
        write_scripts(&mut counter, &self.scripts)?;
        write_blocked(&mut counter, &self.blocked)?;
        write_locks(&mut counter, &self.locks)?;
        if access {
            write_access(&mut counter, &self.dbs)?;
        }
        counter.write_all(&[TAG_END])?;
        let count = counter.count + 4;
        let crc = w.crc.clone().finalize();
        w.inner.write_all(&crc.to_le_bytes())?;
        w.inner.flush()?;
        Ok(count)
    }

    /// The snapshot as one buffer (for tests and small states).
    pub fn snapshot_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_snapshot(&mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// Reads a snapshot written by [`State::write_snapshot`], verifying its
    /// version and checksum. Nothing is returned unless the whole snapshot
    /// checks out. Reads are buffered here: pass the file itself.
    pub fn read_snapshot(r: impl Read) -> Result<State, SnapshotError> {
        let mut r = CrcReader {
            inner: io::BufReader::with_capacity(IO_BUFFER, r),
            crc: crc32fast::Hasher::new(),
        };
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let mut v = [0u8; 4];
        r.read_exact(&mut v)?;
        let version = u16::from_le_bytes([v[0], v[1]]);
        if !(OLDEST_READABLE..=VERSION).contains(&version) {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let clock_ms = get_signed(&mut r)?;
        let applied_index = get_varint(&mut r)?;
        let cluster_id = get_varint(&mut r)?;
        let sessions = read_sessions(&mut r)?;
        let Sections { dbs, scripts, notify, encodings, memory, blocked, locks } =
            read_sections(&mut r, version)?;
        let computed = r.crc.clone().finalize();
        let mut stored = [0u8; 4];
        r.inner.read_exact(&mut stored)?;
        let stored = u32::from_le_bytes(stored);
        if stored != computed {
            return Err(SnapshotError::Checksum { stored, computed });
        }
        if r.inner.read(&mut [0u8; 1])? != 0 {
            return Err(SnapshotError::Corrupt("trailing bytes after checksum"));
        }
        let mut state = State {
            dbs,
            clock_ms,
            applied_index,
            sessions,
            cluster_id,
            scripts,
            locks,
            memory,
            ..State::default()
        };
        state.set_notify(notify);
        state.set_encodings(encodings);
        state.set_blocked(blocked);
        Ok(state)
    }

    /// BLAKE3 of the canonical encoding of the whole state but the applied
    /// index (clock, sessions, every database: keys, types, values, encodings,
    /// expiry times): equal on two engines exactly when their states are equal.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        put_signed(&mut hasher, self.clock_ms).expect("hashing cannot fail");
        put_varint(&mut hasher, self.cluster_id).expect("hashing cannot fail");
        write_sessions(&mut hasher, &self.sessions).expect("hashing cannot fail");
        write_config(&mut hasher, self.notify, &self.encodings, &self.memory)
            .expect("hashing cannot fail");
        write_dbs(&mut hasher, &self.dbs).expect("hashing cannot fail");
        write_scripts(&mut hasher, &self.scripts).expect("hashing cannot fail");
        write_blocked(&mut hasher, &self.blocked).expect("hashing cannot fail");
        write_locks(&mut hasher, &self.locks).expect("hashing cannot fail");
        if has_access(self) {
            write_access(&mut hasher, &self.dbs).expect("hashing cannot fail");
        }
        hasher.update(&[TAG_END]);
        *hasher.finalize().as_bytes()
    }

    /// The digest as lowercase hex.
    pub fn digest_hex(&self) -> String {
        self.digest().iter().map(|b| format!("{b:02x}")).collect()
    }
}

struct CountingWriter<'a, W> {
    inner: &'a mut W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

//! One logical database (`SELECT n`): the keyspace and its expiry index.
//!
//! Expiry is absolute replicated time in milliseconds. A key whose expiry time is
//! at or before `now` is expired: every read treats it as absent at once (reads
//! take `&self` and never remove anything). It is physically removed only by
//! writes: lazily, when a write touches the key, and actively by the purge
//! command, which the leader proposes so that every replica removes the same keys
//! at the same log index.
//!
//! # Change marks (WATCH)
//!
//! Every object carries `version`, the log index of the last command that
//! changed it (Redis's `signalModifiedKey`, called by the handlers through
//! [`Exec::modified`](crate::state::Exec::modified)). A key that no longer
//! exists leaves a [`Tombstones`] entry: the index at which it last changed
//! while absent keys are watched. Both are replicated state, in the snapshot
//! and the digest; see [`Db::changed_since`] for the check EXEC makes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::args::Res;
use crate::keymap::KeyMap;
use crate::reply::{errors, Reply};
use crate::value::{HashVal, SetVal, Value, ZSetVal};

/// A key's value with its metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub value: Value,
    /// Absolute expiry time in ms since the epoch, if any.
    pub expire_at: Option<i64>,
    /// A string Redis would report as "raw" whatever its length (after APPEND
    /// or SETRANGE modified it in place).
    pub raw: bool,
    /// The log index of the last command that changed this key (0: before
    /// change marks existed, or never signalled). See the module docs.
    pub version: u64,
    /// The bytes accounted for this key ([`crate::memory::estimate`]), as of
    /// the last [`Db::settle`]: derived, not in the snapshot.
    pub mem: u64,
    /// Replicated time (s) of the last access while an LRU/LFU policy is in
    /// force (0: none), and the LFU counter: replicated state.
    pub access: u32,
    pub freq: u8,
}

impl Object {
    pub fn new(value: Value) -> Object {
        Object { value, expire_at: None, raw: false, version: 0, mem: 0, access: 0, freq: 0 }
    }

    /// An object with an expiry and the raw-string flag.
    pub fn with(value: Value, expire_at: Option<i64>, raw: bool) -> Object {
        Object { expire_at, raw, ..Object::new(value) }
    }

    /// True if this object is expired at `now`.
    #[inline]
    pub fn is_expired(&self, now: i64) -> bool {
        self.expire_at.is_some_and(|at| at <= now)
    }

    /// The earliest field expiry of a hash with field TTLs.
    #[inline]
    fn field_expiry(&self) -> Option<i64> {
        match &self.value {
            Value::Hash(h) => h.min_ttl(),
            _ => None,
        }
    }
}

/// One database.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Db {
    keys: KeyMap<Object>,
    /// `(expire_at, key)` for every key with a TTL.
    expires: BTreeSet<(i64, Bytes)>,
    /// Hashes with field TTLs by their earliest field expiry: `(at, key)`,
    /// and `key → at` for the same entries. A function of the keyspace
    /// (kept in step by every write, see [`Db::index_field_expiry`]).
    hexpires: BTreeSet<(i64, Bytes)>,
    hexpire_of: BTreeMap<Bytes, i64>,
    /// Hashes that lost fields because they expired, and whether the hash
    /// went with them, while such events are wanted (`hexpired`, `del`).
    pub(crate) expired_fields: Vec<(Bytes, bool)>,
    /// When keys that no longer exist last changed (WATCH on missing keys).
    pub(crate) gone: Tombstones,
    /// Keys removed because they expired, while `expired` keyspace events
    /// are wanted (drained into events after each command).
    pub(crate) expired_keys: Vec<Bytes>,
    pub(crate) track_expired: bool,
    /// Keys blocked clients wait for (see [`crate::blocked`]), and those of
    /// them that a command created since the engine last looked.
    pub(crate) awaited: BTreeSet<Bytes>,
    pub(crate) ready: Vec<Bytes>,
    /// The sum of every object's `mem` (see [`crate::memory`]).
    used: u64,
    /// Keys handed out for writing since the last [`Db::settle`].
    dirty: Vec<Bytes>,
}

/// Most tombstones one database keeps. Past it the oldest go, and a WATCH of
/// a missing key older than the newest one dropped is assumed changed (a
/// spurious abort, never a missed one).
pub const MAX_TOMBSTONES: usize = 65_536;

/// When keys that no longer exist last changed: the index of their deletion,
/// or, for a key removed because it expired, the index of its last change
/// before that (an expiry is a change only to those who saw the key alive,
/// which EXEC knows from its WATCH). Bounded by [`MAX_TOMBSTONES`]; `horizon`
/// is the newest index forgotten.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tombstones {
    pub(crate) latest: BTreeMap<Bytes, u64>,
    /// Insertion order, for dropping the oldest (may hold superseded entries).
    pub(crate) order: VecDeque<(u64, Bytes)>,
    pub(crate) horizon: u64,
}

impl Tombstones {
    /// Records that `key` changed at `index` and no longer exists.
    pub fn record(&mut self, key: Bytes, index: u64) {
        if index <= self.horizon {
            return;
        }
        let slot = self.latest.entry(key.clone()).or_insert(0);
        if *slot >= index {
            return;
        }
        *slot = index;
        self.order.push_back((index, key));
        while self.order.len() > MAX_TOMBSTONES {
            let (at, key) = self.order.pop_front().expect("not empty");
            if self.latest.get(&key) == Some(&at) {
                self.latest.remove(&key);
            }
            self.horizon = self.horizon.max(at);
        }
    }

    /// True if an absent `key` may have existed after index `mark`.
    pub fn changed_since(&self, key: &[u8], mark: u64) -> bool {
        mark < self.horizon || self.latest.get(key).is_some_and(|&at| at > mark)
    }

    /// Forgets everything: every missing key counts as changed for marks
    /// before `index`.
    fn forget_until(&mut self, index: u64) {
        self.latest.clear();
        self.order.clear();
        self.horizon = self.horizon.max(index);
    }

    pub fn len(&self) -> usize {
        self.latest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }
}

/// Generates the typed lookups (`get_hash`, `hash_mut`, `hash_or_create` …).
macro_rules! typed_access {
    ($get:ident, $get_mut:ident, $or_create:ident, $variant:ident, $ty:ty) => {
        /// The value at `key` if it has this type; WRONGTYPE if it has another.
        pub fn $get(&self, key: &[u8], now: i64) -> Res<Option<&$ty>> {
            match self.get(key, now) {
                None => Ok(None),
                Some(Value::$variant(v)) => Ok(Some(v)),
                Some(_) => Err(Reply::err(errors::WRONGTYPE)),
            }
        }

        /// Mutable access for a write (removes the key first if it expired).
        pub fn $get_mut(&mut self, key: &[u8], now: i64) -> Res<Option<&mut $ty>> {
            match self.get_mut(key, now) {
                None => Ok(None),
                Some(Value::$variant(v)) => Ok(Some(v)),
                Some(_) => Err(Reply::err(errors::WRONGTYPE)),
            }
        }

        /// Mutable access, creating an empty value of this type if absent.
        pub fn $or_create(
            &mut self,
            key: &[u8],
            now: i64,
            make: impl FnOnce() -> $ty,
        ) -> Res<&mut $ty> {
            self.expire_if_needed(key, now);
            if !self.awaited.is_empty() && !self.keys.contains_key(key) {
                self.created(key);
            }
            self.dirty.push(Bytes::copy_from_slice(key));
            let obj = self.keys.get_or_insert_with(key, || Object::new(Value::$variant(make())));
            match &mut obj.value {
                Value::$variant(v) => Ok(v),
                _ => Err(Reply::err(errors::WRONGTYPE)),
            }
        }
    };
}

impl Db {
    /// Number of keys physically present (expired ones not yet purged included).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Number of keys visible at `now` (what DBSIZE replies).
    pub fn visible_len(&self, now: i64) -> usize {
        self.keys.len() - self.expired_count(now)
    }

    /// Number of keys with a TTL that are visible at `now`.
    pub fn visible_expires(&self, now: i64) -> usize {
        self.expires.len() - self.expired_count(now)
    }

    /// Keys with a TTL visible at `now`, and their average remaining TTL in ms
    /// (INFO keyspace).
    pub fn ttl_stats(&self, now: i64) -> (usize, i64) {
        let live = self.expires.range((now.saturating_add(1), Bytes::new())..);
        let (count, sum) =
            live.fold((0usize, 0i128), |(n, s), (at, _)| (n + 1, s + i128::from(at - now)));
        let avg = if count == 0 { 0 } else { (sum / count as i128) as i64 };
        (count, avg)
    }

    fn expired_count(&self, now: i64) -> usize {
        self.expires.range(..(now.saturating_add(1), Bytes::new())).count()
    }

    /// The earliest expiry time of any key or hash field, for the reaper.
    pub fn next_expiry(&self) -> Option<i64> {
        let key = self.expires.first().map(|(at, _)| *at);
        let field = self.hexpires.first().map(|(at, _)| *at);
        key.into_iter().chain(field).min()
    }

    /// The object at `key`, if it is visible at `now`.
    #[inline]
    pub fn object(&self, key: &[u8], now: i64) -> Option<&Object> {
        let found = self.keys.get(key).filter(|o| !o.is_expired(now));
        note_lookup(found.is_some());
        found
    }

    /// The stored key and its object, if visible at `now`.
    pub fn key_object(&self, key: &[u8], now: i64) -> Option<(&Bytes, &Object)> {
        let found = self.keys.get_key_value(key).filter(|(_, o)| !o.is_expired(now));
        note_lookup(found.is_some());
        found
    }

    /// The value at `key`, if visible at `now`.
    #[inline]
    pub fn get(&self, key: &[u8], now: i64) -> Option<&Value> {
        self.object(key, now).map(|o| &o.value)
    }

    /// True if `key` is visible at `now`.
    pub fn contains(&self, key: &[u8], now: i64) -> bool {
        self.object(key, now).is_some()
    }

    /// Removes `key` if it is expired at `now` (lazy expiry, write path only).
    /// Returns true if it removed something.
    ///
    /// A hash also loses the fields expired at `now` (Redis's lazy field
    /// expiry) and goes if that empties it, which counts as removed.
    pub fn expire_if_needed(&mut self, key: &[u8], now: i64) -> bool {
        match self.keys.get(key) {
            Some(o) if o.is_expired(now) => {
                self.remove_expired(key);
                true
            }
            Some(Object { value: Value::Hash(h), .. }) if h.has_expired(now) => {
                self.expire_fields(key, now, usize::MAX, None).1
            }
            _ => false,
        }
    }

    /// Removes up to `limit` fields of the hash at `key` expired at `now`,
    /// and the hash if that empties it. `index`: the purge entry's index
    /// (the hash changed then); a lazy expiry leaves that to the command.
    /// Returns (fields removed, hash removed).
    fn expire_fields(
        &mut self,
        key: &[u8],
        now: i64,
        limit: usize,
        index: Option<u64>,
    ) -> (usize, bool) {
        let Some((stored, obj)) = self.keys.get_key_value(key) else { return (0, false) };
        let stored = stored.clone();
        let version = obj.version;
        let Some(Object { value: Value::Hash(h), .. }) = self.keys.get_mut(key) else {
            return (0, false);
        };
        let n = h.remove_expired(now, limit);
        if n == 0 {
            return (0, false);
        }
        self.dirty.push(stored.clone());
        let gone = h.is_empty();
        let next = h.min_ttl();
        if gone {
            self.remove(key);
            self.gone.record(stored.clone(), index.unwrap_or(version));
        } else if let Some(index) = index {
            self.touch(key, index);
        } else {
            self.index_field_expiry(key, next);
        }
        if self.track_expired {
            self.expired_fields.push((stored, gone));
        }
        (n, gone)
    }

    /// Brings the index of hashes with field TTLs in step with `key`, whose
    /// value now has `next` as its earliest field expiry (None: not a hash
    /// with field TTLs, or gone). Callers pass what they have in hand, so a
    /// write to a keyspace without field TTLs costs no lookup here.
    fn index_field_expiry(&mut self, key: &[u8], next: Option<i64>) {
        if next.is_none() && self.hexpire_of.is_empty() {
            return;
        }
        let old = self.hexpire_of.get(key).copied();
        if old == next {
            return;
        }
        let stored = match self.hexpire_of.remove_entry(key) {
            Some((stored, at)) => {
                self.hexpires.remove(&(at, stored.clone()));
                stored
            }
            None => Bytes::copy_from_slice(key),
        };
        if let Some(at) = next {
            self.hexpires.insert((at, stored.clone()));
            self.hexpire_of.insert(stored, at);
        }
    }

    /// Physically removes up to `limit` hash fields expired at `now`, from
    /// the hashes with the earliest ones first (the purge entry at
    /// `index`). Returns how many fields were removed.
    pub fn purge_expired_fields(&mut self, now: i64, limit: usize, index: u64) -> usize {
        let mut removed = 0;
        while removed < limit {
            let key = match self.hexpires.first() {
                Some((at, key)) if *at <= now => key.clone(),
                _ => break,
            };
            let (n, _) = self.expire_fields(&key, now, limit - removed, Some(index));
            debug_assert!(n > 0, "field expiry index out of sync");
            if n == 0 {
                // Never expected; drop the entry rather than spin.
                self.hexpire_of.remove(&key);
                self.hexpires.pop_first();
            }
            removed += n;
        }
        removed
    }

    /// Number of hashes with field TTLs (INFO keyspace's `subexpiry`).
    pub fn hashes_with_field_ttls(&self) -> usize {
        self.hexpires.len()
    }

    /// Removes an expired key, leaving a tombstone with its last change.
    fn remove_expired(&mut self, key: &[u8]) {
        if let Some((stored, obj)) = self.keys.remove(key) {
            self.used -= obj.mem;
            if let Some(at) = obj.expire_at {
                self.expires.remove(&(at, stored.clone()));
            }
            self.index_field_expiry(&stored, None);
            if self.track_expired {
                self.expired_keys.push(stored.clone());
            }
            self.gone.record(stored, obj.version);
        }
    }

    /// Mutable object for a write; an expired key is removed and reads as absent.
    pub fn object_mut(&mut self, key: &[u8], now: i64) -> Option<&mut Object> {
        self.expire_if_needed(key, now);
        let obj = self.keys.get_mut(key)?;
        self.dirty.push(Bytes::copy_from_slice(key));
        Some(obj)
    }

    /// Mutable value for a write; an expired key is removed and reads as absent.
    #[inline]
    pub fn get_mut(&mut self, key: &[u8], now: i64) -> Option<&mut Value> {
        self.object_mut(key, now).map(|o| &mut o.value)
    }

    /// Stores `value` at `key` with no TTL (like Redis's `setKey` without
    /// KEEPTTL), replacing whatever was there.
    pub fn set(&mut self, key: &[u8], value: Value) {
        self.set_object(key, Object::new(value));
    }

    /// Stores `value`, keeping the current TTL of a visible key.
    pub fn set_keep_ttl(&mut self, key: &[u8], value: Value, now: i64) {
        let expire_at = self.object(key, now).and_then(|o| o.expire_at);
        self.set_object(key, Object::with(value, expire_at, false));
    }

    /// Stores a whole object (value and expiry), replacing the old one.
    pub fn set_object(&mut self, key: &[u8], mut obj: Object) {
        let new_expiry = obj.expire_at;
        let field_expiry = obj.field_expiry();
        obj.mem = 0;
        self.dirty.push(Bytes::copy_from_slice(key));
        // The common case, no TTL before or after: replace in place with one
        // lookup (the expiry index is untouched).
        if new_expiry.is_none() {
            if let Some(slot) = self.keys.get_mut(key) {
                if slot.expire_at.is_none() {
                    self.used -= slot.mem;
                    *slot = obj;
                    self.index_field_expiry(key, field_expiry);
                    return;
                }
            }
        }
        match self.keys.get_key_value(key) {
            Some((stored, old)) => {
                let stored = stored.clone();
                self.used -= old.mem;
                if let Some(at) = old.expire_at {
                    self.expires.remove(&(at, stored.clone()));
                }
                if let Some(at) = new_expiry {
                    self.expires.insert((at, stored.clone()));
                }
                self.keys.insert(stored, obj);
                self.index_field_expiry(key, field_expiry);
            }
            None => {
                let stored = Bytes::copy_from_slice(key);
                if let Some(at) = new_expiry {
                    self.expires.insert((at, stored.clone()));
                }
                if !self.awaited.is_empty() {
                    self.created(key);
                }
                self.keys.insert(stored, obj);
                self.index_field_expiry(key, field_expiry);
            }
        }
    }

    /// Notes that a command created `key`: blocked clients may be served
    /// (Redis's `signalKeyAsReady` from `dbAdd`).
    fn created(&mut self, key: &[u8]) {
        if self.awaited.contains(key) && !self.ready.iter().any(|k| k.as_ref() == key) {
            self.ready.push(Bytes::copy_from_slice(key));
        }
    }

    /// Keys blocked clients wait for that exist now (SWAPDB brought in a new
    /// keyspace).
    pub(crate) fn all_awaited_ready(&mut self, now: i64) {
        let present: Vec<Bytes> =
            self.awaited.iter().filter(|k| self.contains(k, now)).cloned().collect();
        for key in present {
            self.created(&key);
        }
    }

    /// Removes `key` whether or not it expired; returns its object.
    pub fn remove(&mut self, key: &[u8]) -> Option<Object> {
        let (stored, obj) = self.keys.remove(key)?;
        self.used -= obj.mem;
        if let Some(at) = obj.expire_at {
            self.expires.remove(&(at, stored.clone()));
        }
        self.index_field_expiry(&stored, None);
        Some(obj)
    }

    /// Removes `key` if visible at `now`; expired keys are removed too but not
    /// reported. Returns the object that was visible.
    pub fn delete(&mut self, key: &[u8], now: i64) -> Option<Object> {
        self.expire_if_needed(key, now);
        self.remove(key)
    }

    /// Removes `key` if it holds an empty collection (after a write emptied it).
    pub fn remove_if_empty(&mut self, key: &[u8]) -> bool {
        if self.keys.get(key).is_some_and(|o| o.value.is_empty_collection()) {
            self.remove(key);
            true
        } else {
            false
        }
    }

    /// The absolute expiry of a visible key.
    pub fn expire_at(&self, key: &[u8], now: i64) -> Option<i64> {
        self.object(key, now).and_then(|o| o.expire_at)
    }

    /// Sets the absolute expiry of an existing key. An expiry at or before
    /// `now` deletes the key, as Redis does. Returns false if the key is absent.
    pub fn set_expire(&mut self, key: &[u8], at: i64, now: i64) -> bool {
        if at <= now {
            return self.delete(key, now).is_some();
        }
        let Some((stored, obj)) = self.keys.get_key_value(key) else { return false };
        if obj.is_expired(now) {
            self.remove(key);
            return false;
        }
        let stored = stored.clone();
        if let Some(old) = obj.expire_at {
            self.expires.remove(&(old, stored.clone()));
        }
        self.expires.insert((at, stored.clone()));
        if let Some(obj) = self.keys.get_mut(&stored) {
            obj.expire_at = Some(at);
        }
        self.dirty.push(stored);
        true
    }

    /// Removes the TTL of a visible key; true if it had one.
    pub fn persist(&mut self, key: &[u8], now: i64) -> bool {
        let Some(obj) = self.object_mut(key, now) else { return false };
        let Some(at) = obj.expire_at.take() else { return false };
        let stored = self.keys.get_key_value(key).map(|(k, _)| k.clone()).expect("present");
        self.expires.remove(&(at, stored));
        true
    }

    /// Physically removes up to `limit` keys expired at `now`, earliest first.
    /// Returns how many were removed.
    pub fn purge_expired(&mut self, now: i64, limit: usize) -> usize {
        let mut removed = 0;
        while removed < limit {
            match self.expires.first() {
                Some((at, _)) if *at <= now => {
                    let (_, key) = self.expires.pop_first().expect("checked first");
                    let obj = self.keys.remove(&key);
                    debug_assert!(obj.is_some(), "expiry index out of sync");
                    self.used -= obj.as_ref().map_or(0, |(_, o)| o.mem);
                    self.index_field_expiry(&key, None);
                    if let Some((stored, obj)) = obj {
                        if self.track_expired {
                            self.expired_keys.push(stored.clone());
                        }
                        self.gone.record(stored, obj.version);
                    }
                    removed += 1;
                }
                _ => break,
            }
        }
        removed
    }

    /// Removes every key (FLUSHDB at log index `index`): each key that
    /// existed changed at `index` (a flush of more keys than tombstones can
    /// hold forgets them all instead, see [`Tombstones`]).
    pub fn flush(&mut self, index: u64) {
        let keys = std::mem::take(&mut self.keys);
        self.used = 0;
        self.dirty.clear();
        self.expires.clear();
        self.hexpires.clear();
        self.hexpire_of.clear();
        if keys.len() > MAX_TOMBSTONES {
            self.gone.forget_until(index);
        } else {
            for (key, _) in keys.iter() {
                self.gone.record(key.clone(), index);
            }
        }
    }

    /// Exchanges the keyspaces of two databases (SWAPDB at `index`). The
    /// tombstones stay with their database number, which is what a WATCH
    /// refers to; every key of both changed at `index`.
    pub fn swap_keyspaces(a: &mut Db, b: &mut Db, index: u64) {
        std::mem::swap(&mut a.keys, &mut b.keys);
        std::mem::swap(&mut a.expires, &mut b.expires);
        std::mem::swap(&mut a.hexpires, &mut b.hexpires);
        std::mem::swap(&mut a.hexpire_of, &mut b.hexpire_of);
        std::mem::swap(&mut a.used, &mut b.used);
        std::mem::swap(&mut a.dirty, &mut b.dirty);
        // After the swap, `b` holds what was in `a` and the other way round.
        let gone_from = |was: &Db, now: &Db| -> Vec<Bytes> {
            was.keys.keys().filter(|k| !now.keys.contains_key(k)).cloned().collect()
        };
        let gone_a = gone_from(b, a);
        let gone_b = gone_from(a, b);
        for (db, gone) in [(a, gone_a), (b, gone_b)] {
            if gone.len() > MAX_TOMBSTONES {
                db.gone.forget_until(index);
            } else {
                gone.into_iter().for_each(|k| db.gone.record(k, index));
            }
            db.keys.values_mut().for_each(|o| o.version = index);
        }
    }

    /// Redis's `signalModifiedKey` at log index `index`: stamps the key's
    /// version, or leaves a tombstone if the command removed it.
    /// A changed hash also brings its entry in the field expiry index in step.
    pub fn touch(&mut self, key: &[u8], index: u64) {
        let field_expiry = match self.keys.get_mut(key) {
            Some(obj) => {
                obj.version = index;
                obj.field_expiry()
            }
            None => {
                self.gone.record(Bytes::copy_from_slice(key), index);
                None
            }
        };
        self.index_field_expiry(key, field_expiry);
    }

    /// True if `key` changed after log index `mark`, as EXEC checks a WATCH:
    /// `seen` says whether the key was visible when the mark was taken, `now`
    /// is the time EXEC runs at. A key that was visible and has since expired
    /// counts as changed (Redis 7.0 does the same); one that was already
    /// expired and has since been purged does not. A key that exists now was
    /// changed only if a command signalled it after the mark (BITFIELD can
    /// create a key without signalling it, as in Redis).
    pub fn changed_since(&self, key: &[u8], mark: u64, seen: bool, now: i64) -> bool {
        match self.keys.get(key) {
            Some(obj) if !obj.is_expired(now) => obj.version > mark,
            Some(obj) => seen || obj.version > mark,
            None => seen || self.gone.changed_since(key, mark),
        }
    }

    /// All keys and objects in canonical order, expired ones included.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Object)> + '_ {
        self.keys.iter()
    }

    /// The underlying map, for SCAN and RANDOMKEY.
    pub fn keymap(&self) -> &KeyMap<Object> {
        &self.keys
    }

    /// Inserts an object during snapshot restore (no checks).
    pub(crate) fn restore_insert(&mut self, key: Bytes, mut obj: Object) {
        debug_assert!(!self.keys.contains_key(&key));
        obj.mem = crate::memory::estimate(&key, &obj);
        self.used += obj.mem;
        if let Some(at) = obj.expire_at {
            self.expires.insert((at, key.clone()));
        }
        let field_expiry = obj.field_expiry();
        self.keys.insert(key.clone(), obj);
        self.index_field_expiry(&key, field_expiry);
    }

    /// The bytes the engine accounts for this database's keys (see
    /// [`crate::memory`]), as of the last [`Db::settle`].
    pub fn used(&self) -> u64 {
        self.used
    }

    /// True if keys were handed out for writing since the last settle.
    pub fn unsettled(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Brings the accounting of the keys written since the last call up to
    /// date, and records the writes as accesses (`mode`) at `now`; `draw`
    /// seeds the LFU counters' increments. The engine calls it after every
    /// operation and before it checks `maxmemory`.
    #[inline]
    pub fn settle(&mut self, mode: crate::memory::Access, now: i64, draw: u64) {
        // Inlined: the engine calls this for all 16 databases after every
        // operation, and most have nothing to settle.
        if !self.dirty.is_empty() {
            self.settle_dirty(mode, now, draw);
        }
    }

    fn settle_dirty(&mut self, mode: crate::memory::Access, now: i64, draw: u64) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for (i, key) in dirty.iter().enumerate() {
            let Some(obj) = self.keys.get_mut(key) else { continue };
            let mem = crate::memory::estimate(key, obj);
            self.used = self.used - obj.mem + mem;
            obj.mem = mem;
            crate::memory::touch_object(obj, mode, now, draw ^ (i as u64).wrapping_mul(0x9E37));
        }
        dirty.clear();
        self.dirty = dirty;
    }

    /// Records reads of `key` as an access (`Op::Touch`).
    pub fn touch_access(&mut self, key: &[u8], mode: crate::memory::Access, now: i64, draw: u64) {
        if let Some(obj) = self.keys.get_mut(key) {
            if !obj.is_expired(now) {
                crate::memory::touch_object(obj, mode, now, draw);
            }
        }
    }

    /// Sets every key's access information, in canonical order (snapshot
    /// restore; `values` has one entry per key).
    pub(crate) fn restore_access(&mut self, values: Vec<(u32, u8)>) {
        for (obj, (access, freq)) in self.keys.values_mut().zip(values) {
            obj.access = access;
            obj.freq = freq;
        }
    }

    /// Forgets every key's access information (the policy no longer keeps it).
    pub fn clear_access(&mut self) {
        self.keys.values_mut().for_each(|o| {
            o.access = 0;
            o.freq = 0;
        });
    }

    /// Up to `n` keys sampled with `rng` (`volatile`: only keys with a TTL),
    /// for eviction; expired keys are left to the purge.
    pub fn sample(
        &self,
        rng: &mut crate::state::Rng,
        n: usize,
        volatile: bool,
        now: i64,
    ) -> Vec<(&Bytes, &Object)> {
        let mut out = Vec::with_capacity(n);
        if volatile {
            let (Some(first), Some(last)) = (self.expires.first(), self.expires.last()) else {
                return out;
            };
            let (lo, hi) = (first.0.max(now.saturating_add(1)), last.0);
            if lo > hi {
                return out;
            }
            let span = (hi - lo) as u64 + 1;
            for _ in 0..n {
                let at = lo + (rng.next_u64() % span) as i64;
                if let Some((_, key)) = self.expires.range((at, Bytes::new())..).next() {
                    if let Some(kv) = self.keys.get_key_value(key) {
                        out.push(kv);
                    }
                }
            }
        } else if !self.keys.is_empty() {
            for _ in 0..n {
                if let Some((k, o)) = self.keys.pick(rng.next_u64()) {
                    if !o.is_expired(now) {
                        out.push((k, o));
                    }
                }
            }
        }
        out
    }

    /// The live key with a TTL that expires first (`volatile-ttl`).
    pub fn soonest_expiring(&self, now: i64) -> Option<&Bytes> {
        self.expires.range((now.saturating_add(1), Bytes::new())..).next().map(|(_, k)| k)
    }

    typed_access!(get_str, str_mut, str_or_create, Str, Bytes);
    typed_access!(get_list, list_mut, list_or_create, List, std::collections::VecDeque<Bytes>);
    typed_access!(get_hash, hash_mut, hash_or_create, Hash, HashVal);
    typed_access!(get_set, set_mut, set_or_create, Set, SetVal);
    typed_access!(get_zset, zset_mut, zset_or_create, ZSet, ZSetVal);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_half_open_and_reads_do_not_mutate() {
        let mut db = Db::default();
        db.set(b"k", Value::Str(Bytes::from_static(b"v")));
        assert!(db.set_expire(b"k", 2500, 1000));
        assert!(db.contains(b"k", 2499));
        assert!(!db.contains(b"k", 2500), "expired at its expiry time");
        assert_eq!(db.len(), 1, "a read never removes");
        assert_eq!(db.visible_len(2500), 0);
        assert_eq!(db.purge_expired(2500, 10), 1);
        assert_eq!(db.len(), 0);
    }

    #[test]
    fn set_clears_ttl_and_keep_ttl_keeps_it() {
        let mut db = Db::default();
        db.set(b"k", Value::Str(Bytes::from_static(b"v")));
        db.set_expire(b"k", 5000, 0);
        db.set_keep_ttl(b"k", Value::Str(Bytes::from_static(b"w")), 0);
        assert_eq!(db.expire_at(b"k", 0), Some(5000));
        db.set(b"k", Value::Str(Bytes::from_static(b"x")));
        assert_eq!(db.expire_at(b"k", 0), None);
        assert_eq!(db.visible_expires(0), 0);
    }

    #[test]
    fn lazy_expiry_on_write() {
        let mut db = Db::default();
        db.set(b"k", Value::Str(Bytes::from_static(b"v")));
        db.set_expire(b"k", 10, 0);
        assert!(db.get_mut(b"k", 10).is_none());
        assert_eq!(db.len(), 0);
        assert_eq!(db.next_expiry(), None);
    }
}

// Keyspace hits and misses (INFO's keyspace_hits/keyspace_misses): every key
// lookup counts on its own thread, without atomics; the node takes the count
// before and after each read with [`take_lookups`]. Lookups made while applying the log are never taken
// (Redis counts reads only, on the node that serves them).
thread_local! {
    static LOOKUPS: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

#[inline]
fn note_lookup(hit: bool) {
    LOOKUPS.with(|c| {
        let (h, m) = c.get();
        c.set(if hit { (h + 1, m) } else { (h, m + 1) });
    });
}

/// The key lookups (hits, misses) this thread made since the last call, or
/// since the current read began; resets them.
pub fn take_lookups() -> (u64, u64) {
    LOOKUPS.with(|c| c.replace((0, 0)))
}

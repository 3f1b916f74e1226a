//! The values a key can hold, with Redis 7.0's encodings.
//!
//! Each collection keeps the representation Redis would pick (a compact
//! "listpack"/"intset" while small, a table once it grows past Redis's default
//! thresholds) because the representation is observable: OBJECT ENCODING reports
//! it, HGETALL on a small hash returns fields in insertion order, SMEMBERS on an
//! intset returns numbers sorted, and HSCAN/ZSCAN return a small collection in one
//! call. The thresholds are Redis's defaults and are not configurable, because a
//! replica must never pick a different representation than its peers.
//!
//! Operations specific to one type live next to its commands (`cmd/*.rs`); this
//! module holds the types, the conversions between encodings and iteration in
//! canonical order (for snapshots and digests).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::args::parse_i64;
use crate::encodings::{
    hash_max_listpack_entries, hash_max_listpack_value, set_max_intset_entries,
    zset_max_listpack_entries, zset_max_listpack_value,
};
use crate::keymap::KeyMap;

/// Longest string Redis stores as "embstr".
pub const EMBSTR_SIZE_LIMIT: usize = 44;

/// The value of a key.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(Bytes),
    List(VecDeque<Bytes>),
    Hash(HashVal),
    Set(SetVal),
    ZSet(ZSetVal),
}

impl Value {
    /// The name TYPE replies with.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
        }
    }

    /// True for an empty collection, which must not stay in the keyspace.
    pub fn is_empty_collection(&self) -> bool {
        match self {
            Value::Str(_) => false,
            Value::List(l) => l.is_empty(),
            Value::Hash(h) => h.is_empty(),
            Value::Set(s) => s.is_empty(),
            Value::ZSet(z) => z.is_empty(),
        }
    }
}

/// A hash's fields and values: insertion-ordered while small ("listpack"), a
/// [`KeyMap`] after.
#[derive(Clone, Debug, PartialEq)]
pub enum HashFields {
    Listpack(Vec<(Bytes, Bytes)>),
    Table(KeyMap<Bytes>),
}

impl Default for HashFields {
    fn default() -> Self {
        HashFields::Listpack(Vec::new())
    }
}

/// A hash: its fields in Redis's encoding, and the expiry times of fields
/// that have one (Redis 7.4's hash-field expiration).
///
/// A field whose expiry time is at or before `now` is expired: the `*_live`
/// reads skip it at once, and only writes remove it (the lazy expiry of a
/// write, and the leader's purge entries, see [`crate::db`]).
///
/// Once a field of a listpack hash gets a TTL, Redis 7.4 switches it to the
/// "listpackex" encoding for good (until it grows into a table): fields with
/// a TTL come first, ordered by expiry time (a field given a time is placed
/// before the fields with the same time), then the fields without one in
/// insertion order. The listpack here keeps that order, which HGETALL shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HashVal {
    pub fields: HashFields,
    /// field → absolute expiry in ms.
    ttl: BTreeMap<Bytes, i64>,
    /// `(expiry, field)` for every field in `ttl`.
    by_time: BTreeSet<(i64, Bytes)>,
    /// A listpack in the "listpackex" encoding.
    ex: bool,
}

impl HashVal {
    /// A hash with these fields and no field TTLs.
    pub fn from_fields(fields: HashFields) -> HashVal {
        HashVal { fields, ..HashVal::default() }
    }

    pub fn len(&self) -> usize {
        match &self.fields {
            HashFields::Listpack(v) => v.len(),
            HashFields::Table(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn encoding(&self) -> &'static str {
        match &self.fields {
            HashFields::Listpack(_) if self.ex => "listpackex",
            HashFields::Listpack(_) => "listpack",
            HashFields::Table(_) => "hashtable",
        }
    }

    /// Switches a listpack to "listpackex", as any HEXPIRE on an existing
    /// hash does in Redis 7.4 (even one that sets no TTL).
    pub fn mark_listpack_ex(&mut self) {
        if let HashFields::Listpack(_) = self.fields {
            self.ex = true;
        }
    }

    /// True for a listpack in the "listpackex" encoding.
    pub fn is_listpack_ex(&self) -> bool {
        self.ex && matches!(self.fields, HashFields::Listpack(_))
    }

    /// The value of a field, expired or not (write paths, after their lazy
    /// expiry).
    pub fn get(&self, field: &[u8]) -> Option<&Bytes> {
        match &self.fields {
            HashFields::Listpack(v) => v.iter().find(|(f, _)| f.as_ref() == field).map(|(_, v)| v),
            HashFields::Table(t) => t.get(field),
        }
    }

    /// The value of a field unless it is expired at `now`.
    pub fn get_live(&self, field: &[u8], now: i64) -> Option<&Bytes> {
        if self.is_expired(field, now) {
            None
        } else {
            self.get(field)
        }
    }

    /// The expiry time of a field, if it has one.
    pub fn ttl(&self, field: &[u8]) -> Option<i64> {
        self.ttl.get(field).copied()
    }

    /// True if `field` has an expiry time at or before `now`.
    pub fn is_expired(&self, field: &[u8], now: i64) -> bool {
        !self.ttl.is_empty() && self.ttl.get(field).is_some_and(|&at| at <= now)
    }

    /// The earliest field expiry time.
    pub fn min_ttl(&self) -> Option<i64> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Number of fields with an expiry time (expired ones included).
    pub fn ttl_count(&self) -> usize {
        self.ttl.len()
    }

    /// True if some field is expired at `now`.
    pub fn has_expired(&self, now: i64) -> bool {
        self.min_ttl().is_some_and(|at| at <= now)
    }

    /// Number of fields not expired at `now`.
    pub fn live_len(&self, now: i64) -> usize {
        if !self.has_expired(now) {
            return self.len();
        }
        self.len() - self.by_time.range(..(now.saturating_add(1), Bytes::new())).count()
    }

    /// Sets a field with no TTL (HSET: a TTL the field had goes); returns true
    /// if it is new. Converts to a table when the hash outgrows the listpack
    /// limits, as Redis does.
    pub fn insert(&mut self, field: Bytes, value: Bytes) -> bool {
        let had_ttl = self.clear_ttl(&field);
        if had_ttl && self.is_listpack_ex() {
            // Redis re-inserts the field among those without a TTL (the end).
            self.remove_from_fields(&field);
        }
        self.insert_keep_ttl(field, value)
    }

    /// Sets a field's value, keeping its TTL (HINCRBY); returns true if the
    /// field is new.
    pub fn insert_keep_ttl(&mut self, field: Bytes, value: Bytes) -> bool {
        if let HashFields::Listpack(v) = &mut self.fields {
            if field.len() > hash_max_listpack_value() || value.len() > hash_max_listpack_value() {
                self.convert_to_table();
            } else if let Some(slot) = v.iter_mut().find(|(f, _)| *f == field) {
                slot.1 = value;
                return false;
            } else if v.len() < hash_max_listpack_entries() {
                v.push((field, value));
                return true;
            } else {
                self.convert_to_table();
            }
        }
        match &mut self.fields {
            HashFields::Table(t) => t.insert(field, value).is_none(),
            HashFields::Listpack(_) => unreachable!("converted above"),
        }
    }

    /// Removes a field (and its TTL); returns true if it existed. Order of the
    /// rest is kept.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        self.clear_ttl(field);
        self.remove_from_fields(field)
    }

    fn remove_from_fields(&mut self, field: &[u8]) -> bool {
        match &mut self.fields {
            HashFields::Listpack(v) => match v.iter().position(|(f, _)| f.as_ref() == field) {
                Some(i) => {
                    v.remove(i);
                    true
                }
                None => false,
            },
            HashFields::Table(t) => t.remove(field).is_some(),
        }
    }

    /// Removes a field's TTL from the indexes; true if it had one.
    fn clear_ttl(&mut self, field: &[u8]) -> bool {
        if self.ttl.is_empty() {
            return false;
        }
        match self.ttl.remove_entry(field) {
            Some((f, at)) => {
                self.by_time.remove(&(at, f));
                true
            }
            None => false,
        }
    }

    /// Sets the expiry time of an existing field (the caller checked it
    /// exists); a listpack becomes "listpackex" and the field moves to its
    /// place in expiry order.
    pub fn set_ttl(&mut self, field: &[u8], at: i64) {
        let Some(stored) = self.stored_field(field) else { return };
        self.clear_ttl(field);
        self.ttl.insert(stored.clone(), at);
        self.by_time.insert((at, stored.clone()));
        if let HashFields::Listpack(_) = self.fields {
            self.ex = true;
            self.place_in_expiry_order(&stored, Some(at));
        }
    }

    /// Removes the TTL of a field; true if it had one. In a "listpackex" the
    /// field moves to the end, as Redis re-inserts it.
    pub fn persist(&mut self, field: &[u8]) -> bool {
        if !self.clear_ttl(field) {
            return false;
        }
        if self.is_listpack_ex() {
            if let Some(stored) = self.stored_field(field) {
                self.place_in_expiry_order(&stored, None);
            }
        }
        true
    }

    fn stored_field(&self, field: &[u8]) -> Option<Bytes> {
        match &self.fields {
            HashFields::Listpack(v) => {
                v.iter().find(|(f, _)| f.as_ref() == field).map(|(f, _)| f.clone())
            }
            HashFields::Table(t) => t.get_key_value(field).map(|(f, _)| f.clone()),
        }
    }

    /// Moves a listpack entry to where Redis's `listpackExAddInternal` puts
    /// it: a field without TTL at the end, one with a TTL before the first
    /// entry with no TTL or an equal or later one.
    fn place_in_expiry_order(&mut self, field: &Bytes, at: Option<i64>) {
        let HashFields::Listpack(v) = &mut self.fields else { return };
        let Some(i) = v.iter().position(|(f, _)| f == field) else { return };
        let entry = v.remove(i);
        let pos = match at {
            None => v.len(),
            Some(at) => v
                .iter()
                .position(|(f, _)| self.ttl.get(f).is_none_or(|&t| t >= at))
                .unwrap_or(v.len()),
        };
        v.insert(pos, entry);
    }

    /// Removes up to `limit` fields expired at `now`, earliest first; returns
    /// how many.
    pub fn remove_expired(&mut self, now: i64, limit: usize) -> usize {
        let mut removed = 0;
        while removed < limit {
            match self.by_time.first() {
                Some((at, _)) if *at <= now => {
                    let (_, field) = self.by_time.pop_first().expect("checked first");
                    self.ttl.remove(&field);
                    self.remove_from_fields(&field);
                    removed += 1;
                }
                _ => break,
            }
        }
        removed
    }

    /// Restores a field's expiry time as read from a snapshot (the fields
    /// are already in their stored order).
    pub(crate) fn restore_ttl(&mut self, field: Bytes, at: i64) {
        self.by_time.insert((at, field.clone()));
        self.ttl.insert(field, at);
    }

    /// Restores the "listpackex" mark from a snapshot.
    pub(crate) fn restore_listpack_ex(&mut self, ex: bool) {
        self.ex = ex && matches!(self.fields, HashFields::Listpack(_));
    }

    fn convert_to_table(&mut self) {
        if let HashFields::Listpack(v) = &mut self.fields {
            let table = std::mem::take(v).into_iter().collect();
            self.fields = HashFields::Table(table);
            self.ex = false;
        }
    }

    /// Fields and values in the order HGETALL returns them, expired ones
    /// included (snapshots).
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&Bytes, &Bytes)> + '_> {
        match &self.fields {
            HashFields::Listpack(v) => Box::new(v.iter().map(|(f, v)| (f, v))),
            HashFields::Table(t) => Box::new(t.iter()),
        }
    }

    /// Fields and values not expired at `now`, in HGETALL order.
    pub fn iter_live(&self, now: i64) -> Box<dyn Iterator<Item = (&Bytes, &Bytes)> + '_> {
        if self.has_expired(now) {
            Box::new(self.iter().filter(move |(f, _)| !self.is_expired(f, now)))
        } else {
            self.iter()
        }
    }
}

/// A set: a sorted "intset" while it holds only integers and is small, a
/// [`KeyMap`] after.
#[derive(Clone, Debug, PartialEq)]
pub enum SetVal {
    Intset(Vec<i64>),
    Table(KeyMap<()>),
}

impl Default for SetVal {
    fn default() -> Self {
        SetVal::Intset(Vec::new())
    }
}

impl SetVal {
    /// An empty set with the encoding Redis picks for a first member.
    pub fn for_member(member: &[u8]) -> SetVal {
        if parse_i64(member).is_some() {
            SetVal::Intset(Vec::new())
        } else {
            SetVal::Table(KeyMap::new())
        }
    }

    pub fn len(&self) -> usize {
        match self {
            SetVal::Intset(v) => v.len(),
            SetVal::Table(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn encoding(&self) -> &'static str {
        match self {
            SetVal::Intset(_) => "intset",
            SetVal::Table(_) => "hashtable",
        }
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        match self {
            SetVal::Intset(v) => parse_i64(member).is_some_and(|n| v.binary_search(&n).is_ok()),
            SetVal::Table(t) => t.contains_key(member),
        }
    }

    /// Adds a member; returns true if it is new.
    pub fn insert(&mut self, member: &[u8]) -> bool {
        if let SetVal::Intset(v) = self {
            match parse_i64(member) {
                Some(n) => match v.binary_search(&n) {
                    Ok(_) => return false,
                    Err(i) if v.len() < set_max_intset_entries() => {
                        v.insert(i, n);
                        return true;
                    }
                    Err(_) => self.convert_to_table(),
                },
                None => self.convert_to_table(),
            }
        }
        match self {
            SetVal::Table(t) => t.insert(Bytes::copy_from_slice(member), ()).is_none(),
            SetVal::Intset(_) => unreachable!("converted above"),
        }
    }

    /// Removes a member; returns true if it was present.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        match self {
            SetVal::Intset(v) => match parse_i64(member).map(|n| v.binary_search(&n)) {
                Some(Ok(i)) => {
                    v.remove(i);
                    true
                }
                _ => false,
            },
            SetVal::Table(t) => t.remove(member).is_some(),
        }
    }

    fn convert_to_table(&mut self) {
        if let SetVal::Intset(v) = self {
            let table = v.iter().map(|n| (crate::args::int_bytes(*n), ())).collect();
            *self = SetVal::Table(table);
        }
    }

    /// Members in the order SMEMBERS returns them (canonical for snapshots).
    pub fn iter(&self) -> Box<dyn Iterator<Item = Bytes> + '_> {
        match self {
            SetVal::Intset(v) => Box::new(v.iter().map(|n| crate::args::int_bytes(*n))),
            SetVal::Table(t) => Box::new(t.keys().cloned()),
        }
    }
}

/// A zset score with a total order (NaN never gets in: commands reject it).
#[derive(Clone, Copy, Debug)]
pub struct Score(pub f64);

impl PartialEq for Score {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.partial_cmp(&other.0).unwrap_or(Ordering::Equal)
    }
}

/// A sorted set: members ordered by (score, member) plus a member → score map.
/// `listpack` records the encoding Redis would report; it turns false for good
/// once the zset outgrows the listpack limits.
#[derive(Clone, Debug, PartialEq)]
pub struct ZSetVal {
    pub scores: KeyMap<f64>,
    pub order: BTreeSet<(Score, Bytes)>,
    pub listpack: bool,
}

impl Default for ZSetVal {
    fn default() -> Self {
        ZSetVal { scores: KeyMap::new(), order: BTreeSet::new(), listpack: true }
    }
}

impl ZSetVal {
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn encoding(&self) -> &'static str {
        if self.listpack {
            "listpack"
        } else {
            "skiplist"
        }
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }

    /// Sets a member's score; returns true if the member is new.
    pub fn insert(&mut self, member: &[u8], score: f64) -> bool {
        let new = match self.scores.get_key_value(member) {
            Some((stored, &old)) => {
                let stored = stored.clone();
                self.order.remove(&(Score(old), stored.clone()));
                self.order.insert((Score(score), stored.clone()));
                self.scores.insert(stored, score);
                false
            }
            None => {
                let m = Bytes::copy_from_slice(member);
                self.order.insert((Score(score), m.clone()));
                self.scores.insert(m, score);
                true
            }
        };
        if self.listpack
            && (self.len() > zset_max_listpack_entries()
                || member.len() > zset_max_listpack_value())
        {
            self.listpack = false;
        }
        new
    }

    /// Removes a member; returns true if it was present.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        match self.scores.remove(member) {
            Some((m, score)) => {
                self.order.remove(&(Score(score), m));
                true
            }
            None => false,
        }
    }

    /// Members and scores in ascending (score, member) order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Bytes, f64)> + '_ {
        self.order.iter().map(|(s, m)| (m, s.0))
    }
}

/// The encoding OBJECT ENCODING reports for a string.
pub fn string_encoding(s: &[u8], raw: bool) -> &'static str {
    if raw {
        "raw"
    } else if s.len() <= 20 && parse_i64(s).is_some() {
        "int"
    } else if s.len() <= EMBSTR_SIZE_LIMIT {
        "embstr"
    } else {
        "raw"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn hash_converts_like_redis() {
        let mut h = HashVal::default();
        for i in 0..hash_max_listpack_entries() {
            assert!(h.insert(b(&format!("f{i}")), b("v")));
        }
        assert_eq!(h.encoding(), "listpack");
        assert!(h.insert(b("one-more"), b("v")));
        assert_eq!(h.encoding(), "hashtable");
        let mut h = HashVal::default();
        h.insert(b("f"), Bytes::from(vec![b'x'; 65]));
        assert_eq!(h.encoding(), "hashtable");
    }

    #[test]
    fn intset_stays_sorted_then_converts() {
        let mut s = SetVal::for_member(b"3");
        for m in ["3", "1", "2", "1"] {
            s.insert(m.as_bytes());
        }
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![b("1"), b("2"), b("3")]);
        s.insert(b"x");
        assert_eq!(s.encoding(), "hashtable");
        assert!(s.contains(b"2") && s.contains(b"x") && !s.contains(b"02"));
    }

    #[test]
    fn zset_orders_by_score_then_member() {
        let mut z = ZSetVal::default();
        z.insert(b"b", 1.0);
        z.insert(b"a", 1.0);
        z.insert(b"c", 0.5);
        assert!(!z.insert(b"c", 2.0));
        let order: Vec<_> = z.iter().map(|(m, s)| (m.clone(), s)).collect();
        assert_eq!(order, vec![(b("a"), 1.0), (b("b"), 1.0), (b("c"), 2.0)]);
        assert!(z.remove(b"a"));
        assert_eq!(z.len(), 2);
    }

    #[test]
    fn string_encodings() {
        assert_eq!(string_encoding(b"123", false), "int");
        assert_eq!(string_encoding(b"0123", false), "embstr");
        assert_eq!(string_encoding(&[b'a'; 44], false), "embstr");
        assert_eq!(string_encoding(&[b'a'; 45], false), "raw");
        assert_eq!(string_encoding(b"1", true), "raw");
    }
}

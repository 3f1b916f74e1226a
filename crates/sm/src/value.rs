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
use std::collections::{BTreeSet, VecDeque};

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

/// A hash: insertion-ordered while small ("listpack"), a [`KeyMap`] after.
#[derive(Clone, Debug, PartialEq)]
pub enum HashVal {
    Listpack(Vec<(Bytes, Bytes)>),
    Table(KeyMap<Bytes>),
}

impl Default for HashVal {
    fn default() -> Self {
        HashVal::Listpack(Vec::new())
    }
}

impl HashVal {
    pub fn len(&self) -> usize {
        match self {
            HashVal::Listpack(v) => v.len(),
            HashVal::Table(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn encoding(&self) -> &'static str {
        match self {
            HashVal::Listpack(_) => "listpack",
            HashVal::Table(_) => "hashtable",
        }
    }

    pub fn get(&self, field: &[u8]) -> Option<&Bytes> {
        match self {
            HashVal::Listpack(v) => v.iter().find(|(f, _)| f.as_ref() == field).map(|(_, v)| v),
            HashVal::Table(t) => t.get(field),
        }
    }

    /// Sets a field; returns true if it is new. Converts to a table when the
    /// hash outgrows the listpack limits, as Redis does.
    pub fn insert(&mut self, field: Bytes, value: Bytes) -> bool {
        if let HashVal::Listpack(v) = self {
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
        match self {
            HashVal::Table(t) => t.insert(field, value).is_none(),
            HashVal::Listpack(_) => unreachable!("converted above"),
        }
    }

    /// Removes a field; returns true if it existed. Order of the rest is kept.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self {
            HashVal::Listpack(v) => match v.iter().position(|(f, _)| f.as_ref() == field) {
                Some(i) => {
                    v.remove(i);
                    true
                }
                None => false,
            },
            HashVal::Table(t) => t.remove(field).is_some(),
        }
    }

    fn convert_to_table(&mut self) {
        if let HashVal::Listpack(v) = self {
            let table = std::mem::take(v).into_iter().collect();
            *self = HashVal::Table(table);
        }
    }

    /// Fields and values in the order HGETALL returns them.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&Bytes, &Bytes)> + '_> {
        match self {
            HashVal::Listpack(v) => Box::new(v.iter().map(|(f, v)| (f, v))),
            HashVal::Table(t) => Box::new(t.iter()),
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

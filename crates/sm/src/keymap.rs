//! [`KeyMap`]: a map from byte strings whose iteration order is a pure function
//! of its contents.
//!
//! Entries are ordered by `(xxh3(key), key)`. Two replicas holding the same keys
//! therefore iterate, scan and pick "random" keys identically, no matter in which
//! order the keys were inserted or whether one of them was restored from a
//! snapshot. That is what makes SCAN cursors portable across nodes (a client can
//! continue a scan after a failover) and snapshots byte-identical.
//!
//! A SCAN cursor is the hash of the next bucket to visit: scanning is stable under
//! inserts and deletes (Redis's guarantee: every element present for the whole
//! scan is returned at least once), with no rehashing to worry about.
//!
//! The hash is not keyed, so an adversary who controls key names can build
//! colliding keys; collisions cost a linear scan within one bucket, not
//! correctness.

use std::collections::BTreeMap;

use bytes::Bytes;
use smallvec::SmallVec;
use xxhash_rust::xxh3::xxh3_64;

/// The stable 64-bit hash that orders keys.
#[inline]
pub fn hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

type Bucket<V> = SmallVec<[(Bytes, V); 1]>;

/// A deterministic map from byte strings to `V`. See the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyMap<V> {
    buckets: BTreeMap<u64, Bucket<V>>,
    len: usize,
}

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        KeyMap { buckets: BTreeMap::new(), len: 0 }
    }
}

impl<V> KeyMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.buckets.clear();
        self.len = 0;
    }

    pub fn get(&self, key: &[u8]) -> Option<&V> {
        self.get_key_value(key).map(|(_, v)| v)
    }

    /// The stored key (a cheap clone of it shares memory) and its value.
    pub fn get_key_value(&self, key: &[u8]) -> Option<(&Bytes, &V)> {
        let bucket = self.buckets.get(&hash(key))?;
        bucket.iter().find(|(k, _)| k.as_ref() == key).map(|(k, v)| (k, v))
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        let bucket = self.buckets.get_mut(&hash(key))?;
        bucket.iter_mut().find(|(k, _)| k.as_ref() == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces; returns the previous value.
    pub fn insert(&mut self, key: Bytes, value: V) -> Option<V> {
        let bucket = self.buckets.entry(hash(&key)).or_default();
        match bucket.binary_search_by(|(k, _)| k.as_ref().cmp(key.as_ref())) {
            Ok(i) => Some(std::mem::replace(&mut bucket[i].1, value)),
            Err(i) => {
                bucket.insert(i, (key, value));
                self.len += 1;
                None
            }
        }
    }

    /// Returns the value for `key`, inserting `make()` first if it is absent.
    pub fn get_or_insert_with(&mut self, key: &[u8], make: impl FnOnce() -> V) -> &mut V {
        let bucket = self.buckets.entry(hash(key)).or_default();
        let i = match bucket.binary_search_by(|(k, _)| k.as_ref().cmp(key)) {
            Ok(i) => i,
            Err(i) => {
                bucket.insert(i, (Bytes::copy_from_slice(key), make()));
                self.len += 1;
                i
            }
        };
        &mut bucket[i].1
    }

    /// Removes `key`; returns the stored key and value.
    pub fn remove(&mut self, key: &[u8]) -> Option<(Bytes, V)> {
        let h = hash(key);
        let bucket = self.buckets.get_mut(&h)?;
        let i = bucket.iter().position(|(k, _)| k.as_ref() == key)?;
        let removed = bucket.remove(i);
        if bucket.is_empty() {
            self.buckets.remove(&h);
        }
        self.len -= 1;
        Some(removed)
    }

    /// All entries in the canonical `(hash, key)` order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Bytes, &V)> + '_ {
        self.buckets.values().flat_map(|b| b.iter().map(|(k, v)| (k, v)))
    }

    pub fn keys(&self) -> impl Iterator<Item = &Bytes> + '_ {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.buckets.values_mut().flat_map(|b| b.iter_mut().map(|(_, v)| v))
    }

    /// One SCAN step: visits whole buckets starting at `cursor` until at least
    /// `count` entries were visited, and returns them with the next cursor
    /// (0 when the scan is complete).
    pub fn scan(&self, cursor: u64, count: usize) -> (u64, Vec<(&Bytes, &V)>) {
        let mut out = Vec::with_capacity(count.min(1024));
        let mut range = self.buckets.range(cursor..);
        for (_, bucket) in range.by_ref() {
            out.extend(bucket.iter().map(|(k, v)| (k, v)));
            if out.len() >= count {
                break;
            }
        }
        let next = range.next().map_or(0, |(h, _)| *h);
        (next, out)
    }

    /// A pseudo-random entry chosen by `r`: the first one whose hash is at or
    /// after `r`, wrapping around. Deterministic for a given `r` and contents.
    pub fn pick(&self, r: u64) -> Option<(&Bytes, &V)> {
        let (_, bucket) = self.buckets.range(r..).next().or_else(|| self.buckets.iter().next())?;
        let (k, v) = &bucket[(r as usize) % bucket.len()];
        Some((k, v))
    }

    /// Keeps only the entries for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&Bytes, &mut V) -> bool) {
        let mut len = 0;
        self.buckets.retain(|_, bucket| {
            bucket.retain(|(k, v)| keep(k, v));
            len += bucket.len();
            !bucket.is_empty()
        });
        self.len = len;
    }
}

impl<V> FromIterator<(Bytes, V)> for KeyMap<V> {
    fn from_iter<I: IntoIterator<Item = (Bytes, V)>>(iter: I) -> Self {
        let mut map = KeyMap::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn order_is_independent_of_insertion_order() {
        let keys: Vec<String> = (0..500).map(|i| format!("key:{i}")).collect();
        let forward: KeyMap<usize> = keys.iter().enumerate().map(|(i, k)| (b(k), i)).collect();
        let backward: KeyMap<usize> =
            keys.iter().enumerate().rev().map(|(i, k)| (b(k), i)).collect();
        assert_eq!(forward, backward);
        let a: Vec<_> = forward.keys().cloned().collect();
        let c: Vec<_> = backward.keys().cloned().collect();
        assert_eq!(a, c);
    }

    #[test]
    fn scan_visits_everything_once_and_survives_deletes() {
        let mut map: KeyMap<()> = (0..1000).map(|i| (b(&format!("k{i}")), ())).collect();
        let mut seen = std::collections::BTreeSet::new();
        let mut cursor = 0;
        let mut rounds = 0;
        loop {
            let (next, items) = map.scan(cursor, 10);
            let found: Vec<Bytes> = items.into_iter().map(|(k, _)| k.clone()).collect();
            for k in &found {
                assert!(seen.insert(k.clone()), "returned twice: {k:?}");
            }
            // Delete something already returned: must not disturb the scan.
            if let Some(k) = found.first() {
                map.remove(k);
            }
            rounds += 1;
            if next == 0 {
                break;
            }
            cursor = next;
        }
        assert_eq!(seen.len(), 1000);
        assert!(rounds >= 90, "count is honoured roughly: {rounds} rounds");
    }

    #[test]
    fn insert_remove_len() {
        let mut map = KeyMap::new();
        assert_eq!(map.insert(b("a"), 1), None);
        assert_eq!(map.insert(b("a"), 2), Some(1));
        assert_eq!(map.len(), 1);
        *map.get_or_insert_with(b"b", || 0) += 5;
        assert_eq!(map.get(b"b"), Some(&5));
        assert_eq!(map.remove(b"a"), Some((b("a"), 2)));
        assert_eq!(map.len(), 1);
        assert!(map.pick(12345).is_some());
        map.retain(|_, v| *v != 5);
        assert!(map.is_empty());
        assert!(map.pick(1).is_none());
    }
}

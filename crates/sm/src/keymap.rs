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
//!
//! Random picks (RANDOMKEY, SRANDMEMBER, SPOP …) are uniform: [`KeyMap::pick`]
//! takes the `r mod len`-th entry in canonical order. To find it without
//! walking the map, large maps keep a count of entries per *slot* (a range of
//! the hash space, cut by the hash's top bits). The slots are an index only:
//! the pick depends on the contents and `r` alone, never on how the slots are
//! sized, so a replica restored from a snapshot picks exactly as one that
//! applied the log.

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
#[derive(Clone, Debug)]
pub struct KeyMap<V> {
    buckets: BTreeMap<u64, Bucket<V>>,
    len: usize,
    /// Entries per slot of the hash space (see [`Slots`]); derived from
    /// `buckets`, so it takes no part in equality.
    slots: Slots,
}

impl<V: PartialEq> PartialEq for KeyMap<V> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.buckets == other.buckets
    }
}

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        KeyMap { buckets: BTreeMap::new(), len: 0, slots: Slots::default() }
    }
}

/// Maps with fewer entries than this are walked to find the n-th entry.
const SLOTS_FROM: usize = 512;
/// Aim for about this many entries per slot.
const PER_SLOT: usize = 64;
/// At most 2^this slots (64k slots, 256 KiB of counts, for 4M+ entries).
const MAX_SLOT_BITS: u32 = 16;

/// Counts of entries per slot: slot `s` holds the hashes whose top `bits`
/// bits are `s`. With `bits == 0` there are no counts (a small map).
#[derive(Clone, Debug, Default)]
struct Slots {
    bits: u32,
    counts: Vec<u32>,
}

impl Slots {
    /// The slot size (in bits) a map of `len` entries should have: about
    /// [`PER_SLOT`] entries per slot, none below [`SLOTS_FROM`].
    fn bits_for(len: usize) -> u32 {
        if len < SLOTS_FROM {
            0
        } else {
            (len / PER_SLOT).ilog2().clamp(1, MAX_SLOT_BITS)
        }
    }

    #[inline]
    fn slot(&self, h: u64) -> usize {
        (h >> (64 - self.bits)) as usize
    }

    #[inline]
    fn add(&mut self, h: u64) {
        if self.bits > 0 {
            let s = self.slot(h);
            self.counts[s] += 1;
        }
    }

    #[inline]
    fn sub(&mut self, h: u64) {
        if self.bits > 0 {
            let s = self.slot(h);
            self.counts[s] -= 1;
        }
    }

    /// True if slots sized for now still suit a map of `len` entries (see
    /// [`KeyMap::resize_slots`]).
    fn fits(&self, len: usize) -> bool {
        let want = Slots::bits_for(len);
        want == self.bits || (self.bits != 0 && want != 0 && want.abs_diff(self.bits) < 2)
    }

    /// The first hash of slot `s`.
    fn start(&self, s: usize) -> u64 {
        (s as u64) << (64 - self.bits)
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
        self.slots = Slots::default();
    }

    /// Re-sizes the slot counts once the map has grown or shrunk well past
    /// what they were built for (by a factor of four), in one pass: amortized
    /// O(1) per insert or remove, like a hash table's rehash.
    fn resize_slots(&mut self) {
        if self.slots.fits(self.len) {
            return;
        }
        let want = Slots::bits_for(self.len);
        let mut slots = Slots { bits: want, counts: Vec::new() };
        if want > 0 {
            slots.counts = vec![0; 1 << want];
            for (h, bucket) in &self.buckets {
                let s = slots.slot(*h);
                slots.counts[s] += bucket.len() as u32;
            }
        }
        self.slots = slots;
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
        let h = hash(&key);
        let bucket = self.buckets.entry(h).or_default();
        match bucket.binary_search_by(|(k, _)| k.as_ref().cmp(key.as_ref())) {
            Ok(i) => Some(std::mem::replace(&mut bucket[i].1, value)),
            Err(i) => {
                bucket.insert(i, (key, value));
                self.len += 1;
                self.slots.add(h);
                self.resize_slots();
                None
            }
        }
    }

    /// Returns the value for `key`, inserting `make()` first if it is absent.
    pub fn get_or_insert_with(&mut self, key: &[u8], make: impl FnOnce() -> V) -> &mut V {
        let h = hash(key);
        if self.slots.fits(self.len + 1) {
            // The slots need no resize: one lookup, as for a plain map.
            let bucket = self.buckets.entry(h).or_default();
            let i = match bucket.binary_search_by(|(k, _)| k.as_ref().cmp(key)) {
                Ok(i) => i,
                Err(i) => {
                    bucket.insert(i, (Bytes::copy_from_slice(key), make()));
                    self.len += 1;
                    self.slots.add(h);
                    i
                }
            };
            return &mut bucket[i].1;
        }
        if !self.contains_key(key) {
            self.insert(Bytes::copy_from_slice(key), make());
        }
        self.get_mut(key).expect("present")
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
        self.slots.sub(h);
        self.resize_slots();
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

    /// A pseudo-random entry chosen by `r`: the `r mod len`-th entry in
    /// canonical order, so every entry is equally likely for a uniform `r`
    /// (the bias of the modulo is below 2^-40 for any map that fits in
    /// memory). Deterministic for a given `r` and contents.
    pub fn pick(&self, r: u64) -> Option<(&Bytes, &V)> {
        if self.len == 0 {
            return None;
        }
        self.nth((r % self.len as u64) as usize)
    }

    /// The `n`-th entry in canonical order.
    pub fn nth(&self, n: usize) -> Option<(&Bytes, &V)> {
        if n >= self.len {
            return None;
        }
        let (from, mut n) = if self.slots.bits == 0 {
            (0, n)
        } else {
            let mut before = 0usize;
            let mut slot = 0;
            for (s, &count) in self.slots.counts.iter().enumerate() {
                if before + count as usize > n {
                    slot = s;
                    break;
                }
                before += count as usize;
            }
            (self.slots.start(slot), n - before)
        };
        for (_, bucket) in self.buckets.range(from..) {
            if n < bucket.len() {
                let (k, v) = &bucket[n];
                return Some((k, v));
            }
            n -= bucket.len();
        }
        None
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
        // Recount from scratch: entries may have gone from any slot.
        self.slots = Slots::default();
        self.resize_slots();
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
    fn nth_follows_canonical_order_as_the_map_grows_and_shrinks() {
        let mut map: KeyMap<usize> = KeyMap::new();
        let check = |map: &KeyMap<usize>| {
            let all: Vec<&Bytes> = map.keys().collect();
            assert_eq!(all.len(), map.len());
            for i in (0..all.len()).step_by(7).chain(all.len().saturating_sub(1)..all.len()) {
                assert_eq!(map.nth(i).map(|(k, _)| k), Some(all[i]), "entry {i} of {}", all.len());
            }
            assert!(map.nth(all.len()).is_none());
        };
        for i in 0..5000 {
            map.insert(b(&format!("k{i}")), i);
            if i % 997 == 0 {
                check(&map);
            }
        }
        check(&map);
        assert!(map.slots.bits > 0, "a large map keeps slot counts");
        for i in 0..4900 {
            map.remove(format!("k{i}").as_bytes());
            if i % 991 == 0 {
                check(&map);
            }
        }
        check(&map);
        map.retain(|_, v| *v % 2 == 0);
        check(&map);
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

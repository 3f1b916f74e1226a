//! Memory accounting, `maxmemory` and eviction, made deterministic.
//!
//! # Accounting
//! Every object carries an estimate of the bytes it holds ([`estimate`]): its
//! key, its value and the per-entry overhead of the structures that hold them
//! (the keyspace map, the expiry index, a collection's own index). The
//! estimate is a pure function of the key and the object, so every replica
//! computes the same number; a database keeps the sum ([`Db::used`]) in step
//! with every write (see [`Db::settle`]). A collection with more than
//! [`EXACT_UP_TO`] elements is estimated from a fixed sample of its elements
//! (as Redis's `MEMORY USAGE` samples), so a write to a large collection costs
//! what a write to a small one does.
//!
//! # Eviction
//! `maxmemory` and `maxmemory-policy` are cluster-wide parameters (set through
//! the log, in the snapshot). Before a command that may grow memory (Redis's
//! `denyoom` flag, [`DENYOOM`]) is applied, the engine evicts keys until the
//! used memory is at or under `maxmemory` (Redis's `performEvictions`), then
//! runs the command; under `noeviction`, or when no key can be evicted (a
//! `volatile-*` policy with no key that has a TTL), the command is refused
//! with Redis's `-OOM` error. The victims are chosen in apply from replicated
//! state only — the entry's seed for sampling, and access times that writes and
//! the nodes' [`Op::Touch`](crate::state::Op::Touch) entries for reads keep —
//! so every replica evicts the same keys at the same index.
//!
//! [`Db::used`]: crate::db::Db::used
//! [`Db::settle`]: crate::db::Db::settle

use bytes::Bytes;

use crate::db::Object;
use crate::value::{HashFields, SetVal, Value};

/// `maxmemory-policy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    #[default]
    NoEviction,
    AllkeysLru,
    AllkeysLfu,
    AllkeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

const POLICIES: &[(&str, Policy)] = &[
    ("volatile-lru", Policy::VolatileLru),
    ("volatile-lfu", Policy::VolatileLfu),
    ("volatile-random", Policy::VolatileRandom),
    ("volatile-ttl", Policy::VolatileTtl),
    ("allkeys-lru", Policy::AllkeysLru),
    ("allkeys-lfu", Policy::AllkeysLfu),
    ("allkeys-random", Policy::AllkeysRandom),
    ("noeviction", Policy::NoEviction),
];

impl Policy {
    pub fn name(self) -> &'static str {
        POLICIES.iter().find(|(_, p)| *p == self).map(|(n, _)| *n).expect("every policy named")
    }

    pub fn parse(name: &str) -> Option<Policy> {
        POLICIES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, p)| *p)
    }

    /// Only keys with a TTL may be evicted.
    pub fn volatile(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru
                | Policy::VolatileLfu
                | Policy::VolatileRandom
                | Policy::VolatileTtl
        )
    }

    pub fn lru(self) -> bool {
        matches!(self, Policy::AllkeysLru | Policy::VolatileLru)
    }

    pub fn lfu(self) -> bool {
        matches!(self, Policy::AllkeysLfu | Policy::VolatileLfu)
    }
}

/// The cluster-wide memory parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Bytes (of the engine's accounting); 0 means no limit.
    pub maxmemory: u64,
    pub policy: Policy,
    /// Keys sampled per database for each eviction (1 to 2^31 − 1, as Redis
    /// 7.0 accepts).
    pub samples: u32,
    pub lfu_log_factor: u32,
    /// Minutes per halving step of an LFU counter (0: never decays).
    pub lfu_decay_time: u32,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            maxmemory: 0,
            policy: Policy::NoEviction,
            samples: 5,
            lfu_log_factor: 10,
            lfu_decay_time: 1,
        }
    }
}

/// The parameters, in the order the snapshot writes them.
pub const PARAMS: &[&str] =
    &["maxmemory", "maxmemory-policy", "maxmemory-samples", "lfu-log-factor", "lfu-decay-time"];

impl MemoryConfig {
    pub fn knows(name: &str) -> bool {
        PARAMS.contains(&name)
    }

    /// Sets `name` from CONFIG SET's value; the error is the text Redis puts
    /// after "CONFIG SET failed (…) - ".
    pub fn set(&mut self, name: &str, value: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(value).map_err(|_| "argument must be a memory value")?;
        let int = |min: i64, max: i64| -> Result<u32, String> {
            match text.parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n as u32),
                Ok(_) => Err(format!("argument must be between {min} and {max} inclusive")),
                Err(_) => Err("argument couldn't be parsed into an integer".into()),
            }
        };
        match name {
            "maxmemory" => {
                self.maxmemory = crate::encodings::memory(text)
                    .filter(|n| *n <= i64::MAX as u64)
                    .ok_or("argument must be a memory value")?;
            }
            "maxmemory-policy" => {
                self.policy = Policy::parse(text).ok_or_else(|| {
                    let names: Vec<&str> = POLICIES.iter().map(|(n, _)| *n).collect();
                    format!("argument(s) must be one of the following: {}", names.join(", "))
                })?;
            }
            "maxmemory-samples" => self.samples = int(1, i32::MAX as i64)?,
            "lfu-log-factor" => self.lfu_log_factor = int(0, i32::MAX as i64)?,
            "lfu-decay-time" => self.lfu_decay_time = int(0, i32::MAX as i64)?,
            _ => return Err(format!("unknown parameter {name}")),
        }
        Ok(())
    }

    /// The value CONFIG GET shows.
    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "maxmemory" => self.maxmemory.to_string(),
            "maxmemory-policy" => self.policy.name().to_string(),
            "maxmemory-samples" => self.samples.to_string(),
            "lfu-log-factor" => self.lfu_log_factor.to_string(),
            "lfu-decay-time" => self.lfu_decay_time.to_string(),
            _ => return None,
        })
    }

    /// The parameters that differ from their defaults, as (name, value).
    pub fn changed(&self) -> Vec<(&'static str, String)> {
        let default = MemoryConfig::default();
        PARAMS
            .iter()
            .filter(|n| self.get(n) != default.get(n))
            .map(|n| (*n, self.get(n).expect("known")))
            .collect()
    }

    /// True if key access times are kept (an LRU or LFU policy).
    pub fn tracks_access(&self) -> bool {
        self.policy.lru() || self.policy.lfu()
    }

    /// Which access information a write or a touch updates.
    pub fn access_mode(&self) -> Access {
        if self.policy.lfu() {
            Access::Lfu { log_factor: self.lfu_log_factor, decay_minutes: self.lfu_decay_time }
        } else if self.policy.lru() {
            Access::Lru
        } else {
            Access::Off
        }
    }
}

/// How an access updates an object's `access`/`freq` (see [`touch_object`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Off,
    Lru,
    Lfu { log_factor: u32, decay_minutes: u32 },
}

/// Redis's `LFU_INIT_VAL`: a new key's counter.
pub const LFU_INIT: u8 = 5;

/// Records an access at `now` (ms) to `obj`: its access time, and under LFU its
/// counter, decayed for the minutes since the last access and then
/// incremented with Redis's logarithmic probability, drawn from `draw` (a
/// deterministic number from the entry).
pub fn touch_object(obj: &mut Object, mode: Access, now: i64, draw: u64) {
    let now_s = seconds(now);
    match mode {
        Access::Off => {}
        Access::Lru => obj.access = now_s,
        // A key's first access is its creation: it starts at LFU_INIT, as a
        // new object does in Redis; later accesses decay and increment.
        Access::Lfu { .. } if obj.access == 0 => {
            obj.freq = LFU_INIT;
            obj.access = now_s;
        }
        Access::Lfu { log_factor, decay_minutes } => {
            let counter = lfu_decayed(obj, now, decay_minutes);
            obj.freq = lfu_incremented(counter, log_factor, draw);
            obj.access = now_s;
        }
    }
}

/// The counter after decay (Redis's `LFUDecrAndReturn`): one step less per
/// `decay_minutes` elapsed since the last access.
pub fn lfu_decayed(obj: &Object, now: i64, decay_minutes: u32) -> u8 {
    if decay_minutes == 0 || obj.access == 0 {
        return obj.freq;
    }
    let elapsed = (seconds(now).saturating_sub(obj.access) / 60) as u64;
    let steps = elapsed / u64::from(decay_minutes);
    obj.freq.saturating_sub(steps.min(255) as u8)
}

/// Redis's `LFULogIncr`: 1 more with probability 1 / ((counter − 5) ×
/// log_factor + 1).
fn lfu_incremented(counter: u8, log_factor: u32, draw: u64) -> u8 {
    if counter == 255 {
        return 255;
    }
    let r = (draw >> 11) as f64 / (1u64 << 53) as f64;
    let base = f64::from(counter.saturating_sub(LFU_INIT));
    let p = 1.0 / (base * f64::from(log_factor) + 1.0);
    if r < p {
        counter + 1
    } else {
        counter
    }
}

/// Replicated time in whole seconds, as access times keep it (1 from the
/// epoch on, so 0 means "never accessed").
pub fn seconds(ms: i64) -> u32 {
    (ms.div_euclid(1000)).clamp(1, u32::MAX as i64) as u32
}

/// Collections with at most this many elements are measured exactly; larger
/// ones from a sample of this many.
pub const EXACT_UP_TO: usize = 64;

/// Per key: its entry in the keyspace map, the object header and the key's
/// own allocation.
const KEY_OVERHEAD: u64 = 72;
/// A key with a TTL: its entry in the expiry index.
const EXPIRY_OVERHEAD: u64 = 48;
/// One heap allocation holding bytes (a string, an element): its header.
const ALLOC: u64 = 16;
/// One element of a list (`Bytes` in a `VecDeque`).
const LIST_ENTRY: u64 = 32;
/// A field/value pair of a small (listpack) hash.
const PAIR: u64 = 64;
/// An entry of a hash table (`KeyMap` bucket, hash, two `Bytes`).
const TABLE_ENTRY: u64 = 88;
/// A member of a hash-table set.
const SET_ENTRY: u64 = 56;
/// A member of a sorted set: its score-map entry and its place in the order.
const ZSET_ENTRY: u64 = 112;
/// A field with a TTL (its entries in the hash's two TTL indexes).
const FIELD_TTL: u64 = 96;

/// The bytes the engine accounts for `key` holding `obj`.
pub fn estimate(key: &[u8], obj: &Object) -> u64 {
    let mut n = KEY_OVERHEAD + key.len() as u64;
    if obj.expire_at.is_some() {
        n += EXPIRY_OVERHEAD + key.len() as u64;
    }
    n + value_bytes(&obj.value)
}

fn value_bytes(value: &Value) -> u64 {
    match value {
        Value::Str(s) => ALLOC + s.len() as u64,
        Value::List(l) => {
            let len = l.len();
            let step = len.div_ceil(EXACT_UP_TO).max(1);
            sampled(len, (0..len).step_by(step).map(|i| LIST_ENTRY + ALLOC + l[i].len() as u64))
        }
        Value::Hash(h) => {
            let ttl = h.ttl_count() as u64 * FIELD_TTL;
            ttl + match &h.fields {
                HashFields::Listpack(pairs) => {
                    pairs.iter().map(|(f, v)| PAIR + (f.len() + v.len()) as u64).sum::<u64>()
                }
                HashFields::Table(t) => sampled(
                    t.len(),
                    t.iter()
                        .take(EXACT_UP_TO)
                        .map(|(f, v)| TABLE_ENTRY + 2 * ALLOC + (f.len() + v.len()) as u64),
                ),
            }
        }
        Value::Set(SetVal::Intset(v)) => ALLOC + 8 * v.len() as u64,
        Value::Set(SetVal::Table(t)) => sampled(
            t.len(),
            t.iter().take(EXACT_UP_TO).map(|(m, _)| SET_ENTRY + ALLOC + m.len() as u64),
        ),
        Value::ZSet(z) => sampled(
            z.len(),
            z.scores.iter().take(EXACT_UP_TO).map(|(m, _)| ZSET_ENTRY + 2 * m.len() as u64),
        ),
    }
}

/// The sum over `len` elements, from the sizes of some of them (all of them
/// for a small collection): their mean times `len`.
fn sampled(len: usize, sizes: impl Iterator<Item = u64>) -> u64 {
    let (count, sum) = sizes.fold((0u64, 0u64), |(c, s), x| (c + 1, s + x));
    if count == 0 {
        return 0;
    }
    if count as usize >= len {
        return sum;
    }
    (sum as u128 * len as u128 / count as u128) as u64
}

/// Redis's error for a write refused because memory is over `maxmemory`.
pub const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// The commands Redis 7.0 flags `denyoom` (they may grow memory), with the
/// 7.2+/raftcache ones of the same kind. Checked against Redis's COMMAND
/// output by the node's tests.
pub const DENYOOM: &[&str] = &[
    "append",
    "bitfield",
    "bitop",
    "blmove",
    "brpoplpush",
    "copy",
    "decr",
    "decrby",
    "getset",
    "hincrby",
    "hincrbyfloat",
    "hmset",
    "hset",
    "hsetnx",
    "incr",
    "incrby",
    "incrbyfloat",
    "linsert",
    "lmove",
    "lpush",
    "lpushx",
    "lset",
    "mset",
    "msetnx",
    "pfadd",
    "pfdebug",
    "pfmerge",
    "psetex",
    "restore",
    "rpoplpush",
    "rpush",
    "rpushx",
    "sadd",
    "sdiffstore",
    "set",
    "setbit",
    "setex",
    "setnx",
    "setrange",
    "sinterstore",
    "sort",
    "sunionstore",
    "zadd",
    "zdiffstore",
    "zincrby",
    "zinterstore",
    "zrangestore",
    "zunionstore",
    // Since 7.0 or raftcache's own, growing memory the same way.
    "increx",
    "hsetex",
];

/// True if the command `name` (lowercase) may grow memory.
pub fn denyoom(name: &str) -> bool {
    DENYOOM.contains(&name)
}

/// A count this node keeps (INFO `evicted_keys`): statistics, not state, so
/// it takes no part in comparing two states (a replica restored from a
/// snapshot starts it over, as Redis's counters start over at a restart).
#[derive(Clone, Copy, Debug, Default)]
pub struct Stat(pub u64);

impl PartialEq for Stat {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A key chosen for eviction: its database and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Victim {
    pub db: usize,
    pub key: Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn obj(value: Value) -> Object {
        Object::new(value)
    }

    #[test]
    fn strings_count_key_value_and_ttl() {
        let mut o = obj(Value::Str(Bytes::from(vec![b'x'; 100])));
        let plain = estimate(b"key", &o);
        assert_eq!(plain, KEY_OVERHEAD + 3 + ALLOC + 100);
        o.expire_at = Some(5);
        assert_eq!(estimate(b"key", &o), plain + EXPIRY_OVERHEAD + 3);
    }

    #[test]
    fn large_collections_are_sampled_and_scale_with_length() {
        let list = |n: usize| {
            obj(Value::List(
                (0..n).map(|i| Bytes::from(format!("{i:08}"))).collect::<VecDeque<_>>(),
            ))
        };
        let small = estimate(b"l", &list(10));
        assert_eq!(small, KEY_OVERHEAD + 1 + 10 * (LIST_ENTRY + ALLOC + 8));
        let big = estimate(b"l", &list(100_000));
        let exact = KEY_OVERHEAD + 1 + 100_000 * (LIST_ENTRY + ALLOC + 8);
        assert_eq!(big, exact, "uniform elements: the sample's mean is exact");
    }

    #[test]
    fn config_parses_like_redis() {
        let mut c = MemoryConfig::default();
        c.set("maxmemory", b"10mb").unwrap();
        assert_eq!(c.maxmemory, 10 << 20);
        c.set("maxmemory-policy", b"ALLKEYS-LRU").unwrap();
        assert_eq!(c.get("maxmemory-policy").unwrap(), "allkeys-lru");
        assert!(c.set("maxmemory-policy", b"lru").unwrap_err().starts_with("argument(s) must be"));
        assert_eq!(
            c.set("maxmemory-samples", b"0").unwrap_err(),
            "argument must be between 1 and 2147483647 inclusive"
        );
        assert_eq!(c.set("maxmemory", b"12q").unwrap_err(), "argument must be a memory value");
        assert_eq!(
            c.changed(),
            vec![("maxmemory", "10485760".to_string()), ("maxmemory-policy", "allkeys-lru".into())]
        );
    }

    #[test]
    fn lfu_counter_grows_logarithmically_and_decays() {
        let mut o = obj(Value::Str(Bytes::from_static(b"v")));
        let mode = Access::Lfu { log_factor: 10, decay_minutes: 1 };
        let mut rng = crate::state::Rng::new(7);
        touch_object(&mut o, mode, 1_000_000, rng.next_u64());
        assert_eq!(o.freq, LFU_INIT, "created: Redis's LFU_INIT_VAL");
        for _ in 0..1000 {
            touch_object(&mut o, mode, 1_000_000, rng.next_u64());
        }
        let hot = o.freq;
        assert!((10..=30).contains(&hot), "1000 hits: counter {hot}");
        // Ten minutes idle: ten steps less.
        assert_eq!(lfu_decayed(&o, 1_000_000 + 600_000, 1), hot - 10);
    }
}

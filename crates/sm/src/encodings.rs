//! The encoding thresholds (`hash-max-listpack-entries` …), as cluster-wide
//! configuration.
//!
//! Redis picks a compact encoding (listpack, intset) for small collections
//! and converts to a table once one outgrows these limits; the encoding is
//! observable (OBJECT ENCODING, the order of a small hash), so every replica
//! must convert at the same index. The limits are therefore replicated state,
//! changed by `Op::Config` through the log and kept in the snapshot and the
//! digest. As in Redis, a changed limit applies to a collection the next time
//! a write to it checks (nothing is converted when the limit changes).
//!
//! The engine makes the current limits visible to the code that converts
//! through a thread-local, set from the state at the start of every apply
//! and read ([`Encodings::enter`]); values are plain numbers, so this costs a
//! few loads per command.

use std::cell::Cell;

/// The limits, with Redis 7.0's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encodings {
    pub hash_max_listpack_entries: u64,
    pub hash_max_listpack_value: u64,
    pub set_max_intset_entries: u64,
    pub zset_max_listpack_entries: u64,
    pub zset_max_listpack_value: u64,
    /// Accepted and reported; lists are always "quicklist" in Redis 7.0, so
    /// nothing observable depends on them here.
    pub list_max_listpack_size: i64,
    pub list_compress_depth: i64,
}

impl Default for Encodings {
    fn default() -> Self {
        Encodings {
            hash_max_listpack_entries: 512,
            hash_max_listpack_value: 64,
            set_max_intset_entries: 512,
            zset_max_listpack_entries: 128,
            zset_max_listpack_value: 64,
            list_max_listpack_size: -2,
            list_compress_depth: 0,
        }
    }
}

thread_local! {
    static CURRENT: Cell<Encodings> = Cell::new(Encodings::default());
}

/// What a parameter's value is, for parsing and printing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `long long` from 0.
    Count,
    /// A memory value (`64`, `1kb` …), from 0.
    Memory,
    /// Any `int`.
    Int,
    /// `int` from 0.
    Depth,
}

/// Every parameter: its names (aliases share a slot) and kind.
const PARAMS: &[(&[&str], Kind)] = &[
    (&["hash-max-listpack-entries", "hash-max-ziplist-entries"], Kind::Count),
    (&["hash-max-listpack-value", "hash-max-ziplist-value"], Kind::Memory),
    (&["set-max-intset-entries"], Kind::Count),
    (&["zset-max-listpack-entries", "zset-max-ziplist-entries"], Kind::Count),
    (&["zset-max-listpack-value", "zset-max-ziplist-value"], Kind::Memory),
    (&["list-max-listpack-size", "list-max-ziplist-size"], Kind::Int),
    (&["list-compress-depth"], Kind::Depth),
];

/// Redis's memory value: a number with an optional unit (b, k, kb, m, mb,
/// g, gb, any case).
pub(crate) fn memory(text: &str) -> Option<u64> {
    let lower = text.to_ascii_lowercase();
    let split = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let mult = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

impl Encodings {
    /// The limits in force for the command being applied.
    #[inline]
    pub fn current() -> Encodings {
        CURRENT.with(Cell::get)
    }

    /// Makes these the limits in force on this thread (the engine calls it
    /// before it applies or reads).
    pub fn enter(self) {
        CURRENT.with(|c| c.set(self));
    }

    /// True if `name` is one of these parameters (or an alias).
    pub fn knows(name: &str) -> bool {
        PARAMS.iter().any(|(names, _)| names.contains(&name))
    }

    /// Every name, aliases included (CONFIG GET matches them).
    pub fn names() -> impl Iterator<Item = &'static str> {
        PARAMS.iter().flat_map(|(names, _)| names.iter().copied())
    }

    fn slot(&mut self, name: &str) -> Option<(Kind, Slot<'_>)> {
        let (names, kind) = PARAMS.iter().find(|(names, _)| names.contains(&name))?;
        let slot = match names[0] {
            "hash-max-listpack-entries" => Slot::U(&mut self.hash_max_listpack_entries),
            "hash-max-listpack-value" => Slot::U(&mut self.hash_max_listpack_value),
            "set-max-intset-entries" => Slot::U(&mut self.set_max_intset_entries),
            "zset-max-listpack-entries" => Slot::U(&mut self.zset_max_listpack_entries),
            "zset-max-listpack-value" => Slot::U(&mut self.zset_max_listpack_value),
            "list-max-listpack-size" => Slot::I(&mut self.list_max_listpack_size),
            _ => Slot::I(&mut self.list_compress_depth),
        };
        Some((*kind, slot))
    }

    /// Sets `name` from CONFIG SET's `value`; the error is the message CONFIG
    /// SET puts after "- " (Redis's texts).
    pub fn set(&mut self, name: &str, value: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(value);
        let Some((kind, slot)) = self.slot(name) else {
            return Err("unknown parameter".into());
        };
        match (kind, slot) {
            (Kind::Memory, Slot::U(v)) => {
                *v = memory(&text).ok_or("argument must be a memory value")?;
            }
            (Kind::Count, Slot::U(v)) => {
                let n: i64 =
                    text.parse().map_err(|_| "argument couldn't be parsed into an integer")?;
                if n < 0 {
                    return Err(
                        "argument must be between 0 and 9223372036854775807 inclusive".into()
                    );
                }
                *v = n as u64;
            }
            (Kind::Int, Slot::I(v)) | (Kind::Depth, Slot::I(v)) => {
                let n: i64 =
                    text.parse().map_err(|_| "argument couldn't be parsed into an integer")?;
                let min = if kind == Kind::Depth { 0 } else { i64::from(i32::MIN) };
                if n < min || n > i64::from(i32::MAX) {
                    return Err(format!("argument must be between {min} and 2147483647 inclusive"));
                }
                *v = n;
            }
            _ => unreachable!("kinds and slots agree"),
        }
        Ok(())
    }

    /// The value CONFIG GET shows for `name`.
    pub fn get(&self, name: &str) -> Option<String> {
        let mut copy = *self;
        let (_, slot) = copy.slot(name)?;
        Some(match slot {
            Slot::U(v) => v.to_string(),
            Slot::I(v) => v.to_string(),
        })
    }

    /// The values that differ from the defaults, by first name, for the
    /// snapshot and the digest.
    pub fn changed(&self) -> Vec<(&'static str, String)> {
        let default = Encodings::default();
        PARAMS
            .iter()
            .map(|(names, _)| names[0])
            .filter(|name| self.get(name) != default.get(name))
            .map(|name| (name, self.get(name).expect("known")))
            .collect()
    }
}

enum Slot<'a> {
    U(&'a mut u64),
    I(&'a mut i64),
}

/// `hash-max-listpack-entries` in force.
#[inline]
pub fn hash_max_listpack_entries() -> usize {
    as_usize(Encodings::current().hash_max_listpack_entries)
}

/// `hash-max-listpack-value` in force.
#[inline]
pub fn hash_max_listpack_value() -> usize {
    as_usize(Encodings::current().hash_max_listpack_value)
}

/// `set-max-intset-entries` in force.
#[inline]
pub fn set_max_intset_entries() -> usize {
    as_usize(Encodings::current().set_max_intset_entries)
}

/// `zset-max-listpack-entries` in force.
#[inline]
pub fn zset_max_listpack_entries() -> usize {
    as_usize(Encodings::current().zset_max_listpack_entries)
}

/// `zset-max-listpack-value` in force.
#[inline]
pub fn zset_max_listpack_value() -> usize {
    as_usize(Encodings::current().zset_max_listpack_value)
}

fn as_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_and_errors_like_config_set() {
        let mut e = Encodings::default();
        assert_eq!(e.get("hash-max-ziplist-entries").as_deref(), Some("512"));
        e.set("hash-max-ziplist-entries", b"4").unwrap();
        assert_eq!(e.hash_max_listpack_entries, 4);
        e.set("zset-max-listpack-value", b"1kb").unwrap();
        assert_eq!(e.get("zset-max-listpack-value").as_deref(), Some("1024"));
        assert_eq!(
            e.set("hash-max-listpack-entries", b"-1").unwrap_err(),
            "argument must be between 0 and 9223372036854775807 inclusive"
        );
        assert_eq!(
            e.set("set-max-intset-entries", b"abc").unwrap_err(),
            "argument couldn't be parsed into an integer"
        );
        assert_eq!(
            e.set("zset-max-listpack-value", b"1.5").unwrap_err(),
            "argument must be a memory value"
        );
        assert_eq!(
            e.set("list-compress-depth", b"-1").unwrap_err(),
            "argument must be between 0 and 2147483647 inclusive"
        );
        assert_eq!(
            e.changed(),
            vec![
                ("hash-max-listpack-entries", "4".to_string()),
                ("zset-max-listpack-value", "1024".to_string())
            ]
        );
    }
}

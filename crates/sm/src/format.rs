//! The log-entry format: what a log entry's payload ([`Proposal`]) looks like
//! on disk and on the wire, versioned so that a rolling upgrade can tell an
//! entry it cannot apply from a damaged one.
//!
//! Replicas apply the same log, so an entry written by one version must be
//! applied identically by every other: a build that changes what an entry
//! means (a new operation, a changed field) raises [`ENTRY_FORMAT`]. A node
//! that meets an entry of a newer format refuses it with
//! [`NEWER_FORMAT`] in the error (it never applies it, and never takes it
//! for damage), and the operator upgrades that node. The rule for a build
//! that introduces format N+1: it keeps writing format N until every member
//! reports that it reads N+1 (the peers' Info carries `entry_format`), so
//! during a rolling upgrade old and new nodes apply the same entries.
//!
//! Each entry is written in the oldest format that can carry it
//! ([`Proposal::format`]), so an entry that an older build would apply
//! identically stays readable by it, and only an entry that needs the newer
//! format stops an older node (it refuses it rather than apply it
//! differently). Formats:
//! - 1: the fields below.
//! - 2: adds [`Op::Touch`](crate::Op::Touch) and the memory parameters
//!   (`maxmemory`, `maxmemory-policy` …) in [`Op::Config`](crate::Op::Config):
//!   an older build would refuse those CONFIG SETs where this one applies
//!   them, and only format-2 entries can set them, so an older node can
//!   never hold a state in which eviction runs. Writing such entries is not
//!   held back until every member reads format 2: a cluster in the middle
//!   of an upgrade that sets `maxmemory` stops the older nodes (they refuse
//!   the entry and wait to be upgraded) instead of letting them drift.
//!
//! Encoding (bincode, fixed-width integers): a `u64` marker
//! `FORMAT_MAGIC | format`, then the fields in order (`time_ms`, `seed`,
//! `origin`, `ops`). Entries written before formats existed start directly
//! with `time_ms`, a wall-clock time in milliseconds that is never near the
//! marker; they are read as format 0 (the same fields).

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Proposal;

/// The log-entry format this build writes and the newest it applies.
pub const ENTRY_FORMAT: u16 = 2;

impl Proposal {
    /// The oldest format that carries this entry (see the module docs).
    pub fn format(&self) -> u16 {
        let needs_2 = |op: &crate::Op| match op {
            crate::Op::Touch { .. } => true,
            crate::Op::Config { name, .. } => crate::memory::MemoryConfig::knows(name),
            _ => false,
        };
        if self.ops.iter().any(needs_2) {
            2
        } else {
            1
        }
    }
}

/// The high 48 bits of a versioned entry's first `u64` ("RCEFMT").
const FORMAT_MAGIC: u64 = 0x5243_4546_4d54_0000;
const MAGIC_MASK: u64 = 0xffff_ffff_ffff_0000;

/// Part of the error for an entry of a newer format than this build reads,
/// so storage can tell it from damage.
pub const NEWER_FORMAT: &str = "is newer than this build applies";

impl Serialize for Proposal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut t = serializer.serialize_tuple(5)?;
        t.serialize_element(&(FORMAT_MAGIC | u64::from(self.format())))?;
        t.serialize_element(&self.time_ms)?;
        t.serialize_element(&self.seed)?;
        t.serialize_element(&self.origin)?;
        t.serialize_element(&self.ops)?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Proposal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Proposal, D::Error> {
        deserializer.deserialize_tuple(5, ProposalVisitor)
    }
}

struct ProposalVisitor;

impl<'de> Visitor<'de> for ProposalVisitor {
    type Value = Proposal;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a raftcache log entry")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Proposal, A::Error> {
        let missing = |what: &str| de::Error::custom(format!("log entry without {what}"));
        let first: u64 = seq.next_element()?.ok_or_else(|| missing("a header"))?;
        let time_ms = if first & MAGIC_MASK == FORMAT_MAGIC {
            let format = (first & !MAGIC_MASK) as u16;
            if format > ENTRY_FORMAT {
                return Err(de::Error::custom(format!(
                    "log entry format {format} {NEWER_FORMAT} (up to {ENTRY_FORMAT}): \
                     upgrade this node to the version the rest of the cluster runs"
                )));
            }
            seq.next_element::<i64>()?.ok_or_else(|| missing("a time"))?
        } else {
            // Format 0: the first field was the time itself.
            first as i64
        };
        Ok(Proposal {
            time_ms,
            seed: seq.next_element()?.ok_or_else(|| missing("a seed"))?,
            origin: seq.next_element()?.ok_or_else(|| missing("an origin"))?,
            ops: seq.next_element()?.ok_or_else(|| missing("operations"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::{Op, Origin};

    fn sample() -> Proposal {
        Proposal {
            time_ms: 1_764_800_000_000,
            seed: 42,
            origin: Some(Origin { session: 7, seq: 3, ack_below: 1 }),
            ops: Arc::new(vec![Op::Command {
                db: 0,
                argv: vec![
                    Bytes::from_static(b"SET"),
                    Bytes::from_static(b"k"),
                    Bytes::from_static(b"v"),
                ],
            }]),
        }
    }

    #[test]
    fn round_trip_carries_the_format() {
        let bytes = bincode::serialize(&sample()).unwrap();
        let marker = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        assert_eq!(marker, FORMAT_MAGIC | 1, "a plain command is written as format 1");
        assert_eq!(bincode::deserialize::<Proposal>(&bytes).unwrap(), sample());
    }

    #[test]
    fn touch_and_memory_parameters_need_format_2() {
        let with = |op: Op| Proposal { ops: Arc::new(vec![op]), ..sample() };
        let touch = with(Op::Touch { keys: vec![(0, Bytes::from_static(b"k"))] });
        let maxmemory =
            with(Op::Config { name: "maxmemory".into(), value: Bytes::from_static(b"1mb") });
        let notify = with(Op::Config {
            name: "notify-keyspace-events".into(),
            value: Bytes::from_static(b"KEA"),
        });
        for (p, format) in [(touch, 2), (maxmemory, 2), (notify, 1)] {
            let bytes = bincode::serialize(&p).unwrap();
            let marker = u64::from_le_bytes(bytes[..8].try_into().unwrap());
            assert_eq!(marker, FORMAT_MAGIC | format, "{:?}", p.ops);
            assert_eq!(bincode::deserialize::<Proposal>(&bytes).unwrap(), p);
        }
    }

    /// The layout entries had before formats existed (a derived struct).
    #[derive(Serialize)]
    struct Format0 {
        time_ms: i64,
        seed: u64,
        origin: Option<Origin>,
        ops: Arc<Vec<Op>>,
    }

    #[test]
    fn entries_written_before_formats_still_read() {
        let p = sample();
        let old =
            Format0 { time_ms: p.time_ms, seed: p.seed, origin: p.origin, ops: p.ops.clone() };
        let bytes = bincode::serialize(&old).unwrap();
        assert_eq!(bincode::deserialize::<Proposal>(&bytes).unwrap(), p);
    }

    #[test]
    fn a_newer_format_is_refused_clearly() {
        let mut bytes = bincode::serialize(&sample()).unwrap();
        let newer = FORMAT_MAGIC | u64::from(ENTRY_FORMAT + 1);
        bytes[..8].copy_from_slice(&newer.to_le_bytes());
        let err = bincode::deserialize::<Proposal>(&bytes).unwrap_err().to_string();
        assert!(err.contains(NEWER_FORMAT), "{err}");
        assert!(err.contains(&format!("format {}", ENTRY_FORMAT + 1)), "{err}");
    }
}

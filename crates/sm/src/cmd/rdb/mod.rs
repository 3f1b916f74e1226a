//! Redis's serialization of one value, as DUMP writes it and RESTORE reads
//! it: the RDB object type byte, the object as `rdbSaveObject` writes it, the
//! RDB version (2 bytes, little-endian; Redis 7.0 writes 10) and a CRC-64 of
//! everything before it (8 bytes, little-endian).
//!
//! [`dump`] gives Redis's bytes for the same value and encoding: strings
//! (integer-encoded or LZF-compressed as Redis does), intsets, listpack
//! hashes and zsets, skiplist zsets and lists (as a quicklist of listpacks).
//! Where Redis's bytes depend on what this engine does not keep, they are
//! deterministic but may differ: the members of a table set or hash come in
//! canonical [`KeyMap`](crate::keymap::KeyMap) order (Redis's order depends
//! on its hash table's random seed, so two Redis servers differ too); a list
//! over 8 KB is split into nodes as pushes at the tail would have split it;
//! an intset is written with the narrowest integer width that holds it
//! (Redis keeps a wider one after the wide members are removed).
//!
//! [`restore`] accepts payloads of RDB version 10 and older: strings, lists
//! (plain, ziplist, quicklist of ziplists or listpacks), sets (plain and
//! intset), sorted sets (text or binary scores, ziplist, listpack) and hashes
//! (plain, zipmap, ziplist, listpack), checked entry by entry as Redis does
//! with `sanitize-dump-payload yes`. Streams and module values are refused:
//! this engine has no such types.
//!
//! # Layout
//! - [`crc64`]: the checksum.
//! - [`lzf`]: LZF compression, step for step Redis's.
//! - [`listpack`]: listpack writer and checked reader.
//! - [`ziplist`]: checked readers for ziplists and zipmaps.
//! - `save`, `load`: the object formats.

pub mod crc64;
pub mod listpack;
mod load;
pub mod lzf;
mod save;
pub mod ziplist;

pub use load::MAX_EXPANDED_BYTES;

use crate::value::Value;

/// The RDB version DUMP writes and the newest RESTORE reads.
pub const RDB_VERSION: u16 = 10;

/// RDB object type bytes (`rdb.h`).
pub mod types {
    pub const STRING: u8 = 0;
    pub const LIST: u8 = 1;
    pub const SET: u8 = 2;
    pub const ZSET: u8 = 3;
    pub const HASH: u8 = 4;
    pub const ZSET_2: u8 = 5;
    pub const MODULE: u8 = 6;
    pub const MODULE_2: u8 = 7;
    pub const HASH_ZIPMAP: u8 = 9;
    pub const LIST_ZIPLIST: u8 = 10;
    pub const SET_INTSET: u8 = 11;
    pub const ZSET_ZIPLIST: u8 = 12;
    pub const HASH_ZIPLIST: u8 = 13;
    pub const LIST_QUICKLIST: u8 = 14;
    pub const STREAM_LISTPACKS: u8 = 15;
    pub const HASH_LISTPACK: u8 = 16;
    pub const ZSET_LISTPACK: u8 = 17;
    pub const LIST_QUICKLIST_2: u8 = 18;
    pub const STREAM_LISTPACKS_2: u8 = 19;

    /// `rdbIsObjectType`.
    pub const fn is_object_type(t: u8) -> bool {
        t <= 7 || (t >= 9 && t <= 19)
    }
}

/// Why a payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreError {
    /// Too short, a newer RDB version, or a wrong checksum
    /// (`ERR DUMP payload version or checksum are wrong`).
    VersionOrChecksum,
    /// The object itself is malformed or of a type this engine lacks
    /// (`ERR Bad data format`).
    BadData,
}

/// DUMP's payload for `value`.
pub fn dump(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    save::save_object(&mut out, value);
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64::crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Redis's `verifyDumpPayload`: room for the footer, an RDB version this
/// engine reads, and a matching checksum.
pub fn verify(payload: &[u8]) -> Result<(), RestoreError> {
    if payload.len() < 10 {
        return Err(RestoreError::VersionOrChecksum);
    }
    let footer = &payload[payload.len() - 10..];
    let version = u16::from_le_bytes([footer[0], footer[1]]);
    if version > RDB_VERSION {
        return Err(RestoreError::VersionOrChecksum);
    }
    let crc = crc64::crc64(0, &payload[..payload.len() - 8]);
    if crc.to_le_bytes() != footer[2..10] {
        return Err(RestoreError::VersionOrChecksum);
    }
    Ok(())
}

/// RESTORE's reading of a payload: the footer, then the object.
pub fn restore(payload: &[u8]) -> Result<Value, RestoreError> {
    verify(payload)?;
    load::load_object(payload).map_err(|_| RestoreError::BadData)
}

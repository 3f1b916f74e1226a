//! Reading a value as Redis 7.0's `rdbLoadObjectType` + `rdbLoadObject`,
//! checked as with `sanitize-dump-payload yes`: every length is bounded by
//! the payload, every listpack, ziplist, zipmap and intset is validated
//! entry by entry, duplicates are refused, and nothing is trusted enough to
//! panic on. The value gets the encoding Redis would give it after loading.

use std::collections::VecDeque;

use bytes::Bytes;

use super::listpack::{self, Entry};
use super::{lzf, types, ziplist};
use crate::args::parse_i64;
use crate::encodings::{
    hash_max_listpack_entries, hash_max_listpack_value, set_max_intset_entries,
    zset_max_listpack_entries, zset_max_listpack_value,
};
use crate::float;
use crate::keymap::KeyMap;
use crate::value::{HashFields, HashVal, SetVal, Value, ZSetVal};

/// The most bytes LZF-compressed strings of one payload may expand to.
/// Redis would allocate whatever a payload asks for; a replica must not let
/// one RESTORE claim unbounded memory (a few kilobytes of LZF can declare
/// gigabytes). 512 MiB is Redis's largest string (`proto-max-bulk-len`).
pub const MAX_EXPANDED_BYTES: u64 = 512 << 20;

/// The payload does not describe a value this engine can hold.
#[derive(Debug, PartialEq, Eq)]
pub struct BadData;

type Load<T> = Result<T, BadData>;

/// A cursor over the payload. Like Redis's `rio` over the DUMP argument, it
/// covers the whole buffer, footer included: a value may end anywhere in it.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Bytes LZF strings may still expand to.
    budget: u64,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Load<u8> {
        let b = *self.buf.get(self.pos).ok_or(BadData)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Load<&'a [u8]> {
        let n = usize::try_from(n).map_err(|_| BadData)?;
        let end = self.pos.checked_add(n).ok_or(BadData)?;
        let s = self.buf.get(self.pos..end).ok_or(BadData)?;
        self.pos = end;
        Ok(s)
    }

    /// `rdbLoadLenByRef`: the length, and whether it is an encoding tag.
    fn len_or_encoding(&mut self) -> Load<(u64, bool)> {
        let b = self.u8()?;
        Ok(match b >> 6 {
            3 => (u64::from(b & 0x3f), true),
            0 => (u64::from(b & 0x3f), false),
            1 => ((u64::from(b & 0x3f) << 8) | u64::from(self.u8()?), false),
            _ if b == 0x80 => (
                u64::from(u32::from_be_bytes(self.take(4)?.try_into().map_err(|_| BadData)?)),
                false,
            ),
            _ if b == 0x81 => {
                (u64::from_be_bytes(self.take(8)?.try_into().map_err(|_| BadData)?), false)
            }
            _ => return Err(BadData),
        })
    }

    /// `rdbLoadLen`: a plain length.
    fn len(&mut self) -> Load<u64> {
        match self.len_or_encoding()? {
            (n, false) => Ok(n),
            (_, true) => Err(BadData),
        }
    }

    /// `rdbGenericLoadStringObject`: plain, integer-encoded or LZF.
    fn string(&mut self) -> Load<Vec<u8>> {
        let (len, encoded) = self.len_or_encoding()?;
        if !encoded {
            return Ok(self.take(len)?.to_vec());
        }
        let v: i64 = match len {
            0 => i64::from(self.u8()? as i8),
            1 => i64::from(i16::from_le_bytes(self.take(2)?.try_into().map_err(|_| BadData)?)),
            2 => i64::from(i32::from_le_bytes(self.take(4)?.try_into().map_err(|_| BadData)?)),
            3 => return self.lzf_string(),
            _ => return Err(BadData),
        };
        Ok(itoa::Buffer::new().format(v).as_bytes().to_vec())
    }

    fn lzf_string(&mut self) -> Load<Vec<u8>> {
        let clen = self.len()?;
        let len = self.len()?;
        let compressed = self.take(clen)?;
        // A back reference of 3 bytes expands to at most 264: anything
        // declaring more cannot be valid.
        if len > clen.saturating_mul(88) || len > self.budget {
            return Err(BadData);
        }
        self.budget -= len;
        let out = lzf::decompress(compressed, len as usize).unwrap_or_default();
        // Redis compares the decompressed size with the declared one (so a
        // failure that produced nothing passes for an empty string).
        if out.len() as u64 != len {
            return Err(BadData);
        }
        Ok(out)
    }

    fn bytes(&mut self) -> Load<Bytes> {
        self.string().map(Bytes::from)
    }

    /// `rdbLoadBinaryDoubleValue`.
    fn binary_double(&mut self) -> Load<f64> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into().map_err(|_| BadData)?))
    }

    /// `rdbLoadDoubleValue` (RDB before version 8): a length-prefixed text,
    /// or 253/254/255 for NaN, +inf and -inf.
    fn text_double(&mut self) -> Load<f64> {
        match self.u8()? {
            255 => Ok(f64::NEG_INFINITY),
            254 => Ok(f64::INFINITY),
            253 => Ok(f64::NAN),
            n => {
                let text = self.take(u64::from(n))?;
                let text = &text[..text.iter().position(|&b| b == 0).unwrap_or(text.len())];
                let start = text.iter().position(|b| !b.is_ascii_whitespace()).ok_or(BadData)?;
                float::parse_f64(&text[start..]).ok_or(BadData)
            }
        }
    }

    /// A count of items that each take at least one byte: never more than
    /// what is left, whatever the payload declares (for capacities).
    fn capacity(&self, n: u64) -> usize {
        n.min((self.buf.len() - self.pos) as u64) as usize
    }
}

/// A zset score stored as text in a listpack or ziplist (`zzlStrtod`). Redis
/// reads whatever `strtod` makes of it; this engine accepts only a number
/// (its own writer and Redis's only ever store numbers).
fn entry_score(e: Entry) -> Load<f64> {
    match e {
        Entry::Int(n) => Ok(n as f64),
        Entry::Str(s) => {
            let s = &s[..s.len().min(127)];
            let v = float::parse_f64(s).ok_or(BadData)?;
            if v.is_nan() {
                return Err(BadData);
            }
            Ok(v)
        }
    }
}

/// Member/score pairs into a zset; duplicates are refused.
fn zset_from_pairs(entries: &[Entry]) -> Load<ZSetVal> {
    if !entries.len().is_multiple_of(2) {
        return Err(BadData);
    }
    let mut z = ZSetVal { listpack: false, ..ZSetVal::default() };
    for pair in entries.chunks(2) {
        let member = pair[0].to_bytes();
        let score = entry_score(pair[1])?;
        if !z.insert(&member, score) {
            return Err(BadData);
        }
    }
    Ok(z)
}

/// Field/value pairs into a listpack hash, or a table past 512 fields (a
/// listpack or ziplist payload stays a listpack even with long values, as in
/// Redis, which checks only the count here). Duplicates are refused.
fn hash_from_pairs(pairs: Vec<(Bytes, Bytes)>, check_lengths: bool) -> Load<HashVal> {
    let mut seen: KeyMap<()> = KeyMap::new();
    for (f, _) in &pairs {
        if seen.insert(f.clone(), ()).is_some() {
            return Err(BadData);
        }
    }
    let too_long = check_lengths
        && pairs.iter().any(|(f, v)| {
            f.len() > hash_max_listpack_value() || v.len() > hash_max_listpack_value()
        });
    if pairs.len() > hash_max_listpack_entries() || too_long {
        Ok(HashVal::from_fields(HashFields::Table(pairs.into_iter().collect())))
    } else {
        Ok(HashVal::from_fields(HashFields::Listpack(pairs)))
    }
}

fn pairs_of(entries: &[Entry]) -> Load<Vec<(Bytes, Bytes)>> {
    if !entries.len().is_multiple_of(2) {
        return Err(BadData);
    }
    Ok(entries.chunks(2).map(|p| (p[0].to_bytes(), p[1].to_bytes())).collect())
}

/// A zset loaded from a listpack or ziplist: kept as a listpack up to 128
/// members (whatever their length, as Redis), a skiplist beyond.
fn packed_zset(entries: &[Entry]) -> Load<Value> {
    let mut z = zset_from_pairs(entries)?;
    if z.is_empty() {
        return Err(BadData);
    }
    z.listpack = z.len() <= zset_max_listpack_entries();
    Ok(Value::ZSet(z))
}

/// Reads the object after its type byte.
fn load_value(r: &mut Reader, rdbtype: u8) -> Load<Value> {
    match rdbtype {
        types::STRING => Ok(Value::Str(r.bytes()?)),
        types::LIST => {
            let len = r.len()?;
            if len == 0 {
                return Err(BadData);
            }
            let mut list = VecDeque::with_capacity(r.capacity(len));
            for _ in 0..len {
                list.push_back(r.bytes()?);
            }
            Ok(Value::List(list))
        }
        types::SET => {
            let len = r.len()?;
            if len == 0 {
                return Err(BadData);
            }
            // Too many for an intset: a table from the start.
            let mut set = if len > set_max_intset_entries() as u64 {
                SetVal::Table(KeyMap::new())
            } else {
                SetVal::Intset(Vec::new())
            };
            for _ in 0..len {
                let member = r.string()?;
                if let SetVal::Intset(_) = set {
                    if parse_i64(&member).is_none() {
                        set = SetVal::Table(set.iter().map(|m| (m, ())).collect());
                    }
                }
                if !set.insert(&member) {
                    return Err(BadData);
                }
            }
            Ok(Value::Set(set))
        }
        types::ZSET | types::ZSET_2 => {
            let len = r.len()?;
            if len == 0 {
                return Err(BadData);
            }
            let mut entries = Vec::with_capacity(r.capacity(len));
            for _ in 0..len {
                let member = r.bytes()?;
                let score =
                    if rdbtype == types::ZSET_2 { r.binary_double()? } else { r.text_double()? };
                if score.is_nan() {
                    return Err(BadData);
                }
                entries.push((member, score));
            }
            // Loaded as a skiplist, converted if small (which turns -0 into 0).
            let small = entries.len() <= zset_max_listpack_entries()
                && entries.iter().all(|(m, _)| m.len() <= zset_max_listpack_value());
            let mut z = ZSetVal { listpack: false, ..ZSetVal::default() };
            for (m, s) in &entries {
                if !z.insert(m, *s) {
                    return Err(BadData);
                }
            }
            if small {
                let mut packed = ZSetVal::default();
                for (m, s) in z.iter() {
                    packed.insert(m, if s == 0.0 { 0.0 } else { s });
                }
                z = packed;
            }
            Ok(Value::ZSet(z))
        }
        types::HASH => {
            let len = r.len()?;
            if len == 0 {
                return Err(BadData);
            }
            let mut pairs = Vec::with_capacity(r.capacity(len));
            for _ in 0..len {
                pairs.push((r.bytes()?, r.bytes()?));
            }
            hash_from_pairs(pairs, true).map(Value::Hash)
        }
        types::LIST_QUICKLIST | types::LIST_QUICKLIST_2 => {
            let nodes = r.len()?;
            if nodes == 0 {
                return Err(BadData);
            }
            let mut list = VecDeque::new();
            for _ in 0..nodes {
                let container = if rdbtype == types::LIST_QUICKLIST_2 { r.len()? } else { 2 };
                if container != 1 && container != 2 {
                    return Err(BadData);
                }
                let data = r.string()?;
                if data.is_empty() {
                    return Err(BadData);
                }
                if container == 1 {
                    // A plain node: one big element as is.
                    list.push_back(Bytes::from(data));
                    continue;
                }
                let entries = if rdbtype == types::LIST_QUICKLIST_2 {
                    listpack::decode(&data)
                } else {
                    ziplist::decode(&data)
                }
                .ok_or(BadData)?;
                list.extend(entries.into_iter().map(Entry::to_bytes));
            }
            if list.is_empty() {
                return Err(BadData);
            }
            Ok(Value::List(list))
        }
        types::HASH_ZIPMAP => {
            let data = r.string()?;
            let pairs = ziplist::decode_zipmap(&data).ok_or(BadData)?;
            let pairs = pairs
                .into_iter()
                .map(|(f, v)| (Bytes::copy_from_slice(f), Bytes::copy_from_slice(v)));
            hash_from_pairs(pairs.collect(), true).map(Value::Hash)
        }
        types::LIST_ZIPLIST => {
            let data = r.string()?;
            let entries = ziplist::decode(&data).ok_or(BadData)?;
            if entries.is_empty() {
                return Err(BadData);
            }
            Ok(Value::List(entries.into_iter().map(Entry::to_bytes).collect()))
        }
        types::SET_INTSET => {
            let data = r.string()?;
            let v = intset(&data).ok_or(BadData)?;
            if v.len() > set_max_intset_entries() {
                return Ok(Value::Set(SetVal::Table(
                    v.into_iter().map(|n| (crate::args::int_bytes(n), ())).collect(),
                )));
            }
            Ok(Value::Set(SetVal::Intset(v)))
        }
        types::ZSET_ZIPLIST => {
            let data = r.string()?;
            packed_zset(&ziplist::decode(&data).ok_or(BadData)?)
        }
        types::ZSET_LISTPACK => {
            let data = r.string()?;
            packed_zset(&listpack::decode(&data).ok_or(BadData)?)
        }
        types::HASH_ZIPLIST | types::HASH_LISTPACK => {
            let data = r.string()?;
            let entries = if rdbtype == types::HASH_ZIPLIST {
                ziplist::decode(&data)
            } else {
                listpack::decode(&data)
            }
            .ok_or(BadData)?;
            let pairs = pairs_of(&entries)?;
            if pairs.is_empty() {
                return Err(BadData);
            }
            hash_from_pairs(pairs, false).map(Value::Hash)
        }
        // Streams and module values: types this engine does not have.
        _ => Err(BadData),
    }
}

/// An intset blob, checked like `intsetValidateIntegrity` in deep mode:
/// a known width, a size that matches, not empty, strictly ascending.
fn intset(blob: &[u8]) -> Option<Vec<i64>> {
    let width = u32::from_le_bytes(blob.get(0..4)?.try_into().ok()?) as usize;
    if !matches!(width, 2 | 4 | 8) {
        return None;
    }
    let count = u32::from_le_bytes(blob.get(4..8)?.try_into().ok()?) as usize;
    if 8 + count.checked_mul(width)? != blob.len() || count == 0 {
        return None;
    }
    let v: Vec<i64> = blob[8..]
        .chunks(width)
        .map(|c| match width {
            2 => i64::from(i16::from_le_bytes([c[0], c[1]])),
            4 => i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            _ => i64::from_le_bytes(c.try_into().expect("8 bytes")),
        })
        .collect();
    v.windows(2).all(|w| w[0] < w[1]).then_some(v)
}

/// `rdbLoadObjectType` + `rdbLoadObject` over the whole payload.
pub(crate) fn load_object(payload: &[u8]) -> Load<Value> {
    let mut r = Reader { buf: payload, pos: 0, budget: MAX_EXPANDED_BYTES };
    let rdbtype = r.u8()?;
    if !types::is_object_type(rdbtype) {
        return Err(BadData);
    }
    load_value(&mut r, rdbtype)
}

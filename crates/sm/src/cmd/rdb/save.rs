//! Writing a value as Redis 7.0's `rdbSaveObjectType` + `rdbSaveObject`.

use std::collections::VecDeque;

use bytes::Bytes;

use super::listpack::Builder;
use super::{lzf, types};
use crate::args::parse_i64;
use crate::float;
use crate::value::{HashFields, HashVal, SetVal, Value, ZSetVal};

/// `rdbSaveLen`: 6-bit, 14-bit, 32-bit or 64-bit big-endian lengths.
pub(crate) fn save_len(out: &mut Vec<u8>, len: u64) {
    if len < 1 << 6 {
        out.push(len as u8);
    } else if len < 1 << 14 {
        out.extend_from_slice(&[0x40 | (len >> 8) as u8, (len & 0xff) as u8]);
    } else if len <= u64::from(u32::MAX) {
        out.push(0x80);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// `rdbEncodeInteger`: an integer that fits 8, 16 or 32 bits.
fn encode_integer(out: &mut Vec<u8>, v: i64) -> bool {
    if let Ok(v) = i8::try_from(v) {
        out.extend_from_slice(&[0xC0, v as u8]);
    } else if let Ok(v) = i16::try_from(v) {
        out.push(0xC1);
        out.extend_from_slice(&v.to_le_bytes());
    } else if let Ok(v) = i32::try_from(v) {
        out.push(0xC2);
        out.extend_from_slice(&v.to_le_bytes());
    } else {
        return false;
    }
    true
}

/// `rdbSaveRawString` with `rdbcompression yes`: a short canonical integer
/// as an integer, a string over 20 bytes LZF-compressed if that saves at
/// least 4 bytes, anything else as length and bytes. (An integer-encoded
/// string object gives the same bytes through `rdbSaveLongLongAsStringObject`.)
pub(crate) fn save_string(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() <= 11 {
        if let Some(n) = parse_i64(s) {
            if encode_integer(out, n) {
                return;
            }
        }
    }
    if s.len() > 20 {
        if let Some(c) = lzf::compress(s, s.len() - 4) {
            out.push(0xC3);
            save_len(out, c.len() as u64);
            save_len(out, s.len() as u64);
            out.extend_from_slice(&c);
            return;
        }
    }
    save_len(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Redis's `double2ll`: the integer a double is, if it is one well inside the
/// `long long` range (so -0 is 0).
fn double2ll(d: f64) -> Option<i64> {
    let lim = (i64::MAX / 2) as f64;
    if d < -lim || d > lim {
        return None;
    }
    let ll = d as i64;
    (ll as f64 == d).then_some(ll)
}

/// A zset listpack as `zzlInsertAt` writes it: member, then the score as an
/// integer if it is one, else as text (`d2string`).
pub(crate) fn zset_listpack(z: &ZSetVal) -> Vec<u8> {
    let mut lp = Builder::new();
    for (m, s) in z.iter() {
        lp.push(m);
        match double2ll(s) {
            Some(n) => lp.push_int(n),
            None => lp.push(float::format_g17(s).as_bytes()),
        }
    }
    lp.finish()
}

/// Quicklist nodes (`list-max-listpack-size -2`: at most 8 KB each) as the
/// list would have if it was built by pushes at the tail: a push joins the
/// tail node while the node's size plus the element's length plus 8 stays
/// within 8192 bytes (`_quicklistNodeAllowInsert`).
pub(crate) fn list_nodes(list: &VecDeque<Bytes>) -> Vec<Vec<u8>> {
    const NODE_LIMIT: usize = 8192;
    const SIZE_ESTIMATE_OVERHEAD: usize = 8;
    let mut nodes = Vec::new();
    let mut node: Option<Builder> = None;
    for e in list {
        let fits = node
            .as_ref()
            .is_some_and(|n| n.bytes() + e.len() + SIZE_ESTIMATE_OVERHEAD <= NODE_LIMIT);
        if !fits {
            if let Some(full) = node.take() {
                nodes.push(full.finish());
            }
            node = Some(Builder::new());
        }
        node.as_mut().expect("a node").push(e);
    }
    if let Some(last) = node {
        nodes.push(last.finish());
    }
    nodes
}

/// An intset blob: encoding (2, 4 or 8 bytes per integer, the narrowest that
/// holds them all), count, then the integers ascending, all little-endian.
fn intset_blob(v: &[i64]) -> Vec<u8> {
    let width = if v.iter().all(|&n| i16::try_from(n).is_ok()) {
        2
    } else if v.iter().all(|&n| i32::try_from(n).is_ok()) {
        4
    } else {
        8
    };
    let mut out = Vec::with_capacity(8 + v.len() * width);
    out.extend_from_slice(&(width as u32).to_le_bytes());
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    for &n in v {
        out.extend_from_slice(&n.to_le_bytes()[..width]);
    }
    out
}

/// The type byte and the serialized value.
pub(crate) fn save_object(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Str(s) => {
            out.push(types::STRING);
            save_string(out, s);
        }
        Value::List(l) => {
            out.push(types::LIST_QUICKLIST_2);
            let nodes = list_nodes(l);
            save_len(out, nodes.len() as u64);
            for node in nodes {
                save_len(out, 2); // QUICKLIST_NODE_CONTAINER_PACKED
                save_string(out, &node);
            }
        }
        Value::Set(SetVal::Intset(v)) => {
            out.push(types::SET_INTSET);
            save_string(out, &intset_blob(v));
        }
        Value::Set(SetVal::Table(t)) => {
            out.push(types::SET);
            save_len(out, t.len() as u64);
            for m in t.keys() {
                save_string(out, m);
            }
        }
        Value::ZSet(z) if z.listpack => {
            out.push(types::ZSET_LISTPACK);
            save_string(out, &zset_listpack(z));
        }
        Value::ZSet(z) => {
            out.push(types::ZSET_2);
            save_len(out, z.len() as u64);
            // From the greatest to the smallest, as Redis walks its skiplist.
            for (m, s) in z.iter().rev() {
                save_string(out, m);
                out.extend_from_slice(&s.to_le_bytes());
            }
        }
        Value::Hash(HashVal { fields: HashFields::Listpack(pairs), .. }) => {
            out.push(types::HASH_LISTPACK);
            let mut lp = Builder::new();
            for (f, v) in pairs {
                lp.push(f);
                lp.push(v);
            }
            save_string(out, &lp.finish());
        }
        Value::Hash(HashVal { fields: HashFields::Table(t), .. }) => {
            out.push(types::HASH);
            save_len(out, t.len() as u64);
            for (f, v) in t.iter() {
                save_string(out, f);
                save_string(out, v);
            }
        }
    }
}

//! HyperLogLog commands: PFADD PFCOUNT PFMERGE PFDEBUG.
//!
//! An HLL is a string in Redis 7.0's exact representation (`src/hyperloglog.c`),
//! so GET, DUMP-era tools and a real Redis read the same bytes:
//!
//! ```text
//! +------+---+-----+----------+----------------------------+
//! | HYLL | E | 0 0 0 | card (8, LE) | registers: sparse or dense |
//! +------+---+-----+----------+----------------------------+
//! ```
//!
//! 16384 registers of 6 bits. `E` is 0 (dense: 12288 bytes of packed
//! registers) or 1 (sparse: ZERO `00xxxxxx`, XZERO `01xxxxxx yyyyyyyy` and
//! VAL `1vvvvvxx` run-length opcodes). A new HLL is sparse and turns dense
//! when a register exceeds 32 or the string would pass
//! [`SPARSE_MAX_BYTES`] (`hll-sparse-max-bytes`, fixed at Redis's default so
//! every replica converts at the same element). Elements are hashed with
//! MurmurHash64A, seed `0xadc83b19`, and the estimate is Ertl's improved
//! estimator, computed with the same floating-point operations in the same
//! order as Redis, so PFCOUNT replies Redis's exact numbers.
//!
//! # The cached cardinality
//!
//! Redis's PFCOUNT of one key stores the estimate it computes in the
//! header's `card` field (a write, replicated as such). Here PFCOUNT is a
//! read and never writes: it answers from `card` when the cache is valid
//! (the top bit of its last byte clear), exactly as Redis would, and
//! otherwise computes the estimate without storing it. PFADD and PFMERGE
//! write the header exactly as Redis's do (they set the invalid bit when
//! they change registers), so the bytes after any PFADD/PFMERGE equal
//! Redis's; they differ only where Redis's PFCOUNT would have filled the
//! cache in (tests/differential/DIFFERENCES.md).
//!
//! Corrupt HLLs (set with SET) get Redis's errors: `WRONGTYPE Key is not a
//! valid HyperLogLog string value.` for a bad header, `INVALIDOBJ Corrupted
//! HLL object detected` for a sparse body that does not cover 16384
//! registers. The sparse editor works on a model of Redis's sds buffer (the
//! terminator byte and the 3 bytes of room Redis reserves included) so that
//! even corrupt inputs are changed the way Redis changes them, and no input
//! can index outside the buffer.
//!
//! PFSELFTEST is not implemented: it is a test of Redis's C code that adds
//! ten million random elements, and nothing a replica needs.

use bytes::Bytes;

use crate::args::Res;
use crate::cmd::bitmaps::c_str;
use crate::command::Spec;
use crate::db::Object;
use crate::event::Class;
use crate::reply::{errors, Reply};
use crate::state::{Exec, Query};
use crate::value::Value;

pub const COMMANDS: &[Spec] = &[
    Spec::write("pfadd", -2, (1, 1, 1), pfadd),
    Spec::read("pfcount", -2, (1, -1, 1), pfcount),
    Spec::write("pfmerge", -2, (1, -1, 1), pfmerge),
    Spec::write("pfdebug", 3, (2, 2, 1), pfdebug),
];

/// `hll-sparse-max-bytes`: the longest sparse HLL (header included).
pub const SPARSE_MAX_BYTES: usize = 3000;

const HDR: usize = 16;
const P: u32 = 14;
const Q: usize = 64 - P as usize;
const REGISTERS: usize = 1 << P;
const REGISTER_MAX: u8 = 63;
/// Header plus 16384 six-bit registers.
pub const DENSE_SIZE: usize = HDR + (REGISTERS * 6).div_ceil(8);
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
const SPARSE_VAL_MAX_VALUE: u8 = 32;
const SPARSE_VAL_MAX_LEN: usize = 4;
const SPARSE_ZERO_MAX_LEN: usize = 64;
const XZERO_MAX_LEN: usize = 16384;
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;
const SEED: u64 = 0xadc8_3b19;

const NOT_HLL: &str = "WRONGTYPE Key is not a valid HyperLogLog string value.";
const INVALID: &str = "INVALIDOBJ Corrupted HLL object detected";

/// The sparse body does not describe 16384 registers.
#[derive(Debug, PartialEq, Eq)]
pub struct Corrupt;

/// MurmurHash2, 64-bit (MurmurHash64A), endian-neutral as Redis's.
pub fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    // Redis passes the length as a C int.
    let mut h = seed ^ ((key.len() as i32 as i64 as u64).wrapping_mul(M));
    let mut chunks = key.chunks_exact(8);
    for chunk in chunks.by_ref() {
        let mut k = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate().rev() {
            h ^= u64::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element goes to and the length of its `000…1` pattern.
pub fn pattern(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, SEED);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    let rest = (hash >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

/// A new, empty HLL: sparse, one XZERO opcode for all 16384 registers.
pub fn empty_hll() -> Vec<u8> {
    let mut s = Vec::with_capacity(HDR + 2);
    s.extend_from_slice(b"HYLL");
    s.push(SPARSE);
    s.extend_from_slice(&[0; 11]);
    let mut left = REGISTERS;
    while left > 0 {
        let run = left.min(XZERO_MAX_LEN);
        s.extend_from_slice(&xzero(run));
        left -= run;
    }
    s
}

/// Redis's `isHLLObjectOrReply` for a value: its encoding byte, or the error.
fn check_hll(value: &Value) -> Res<u8> {
    let Value::Str(s) = value else { return Err(Reply::err(errors::WRONGTYPE)) };
    hll_encoding(s).ok_or(Reply::err(NOT_HLL))
}

/// The encoding of a valid HLL header (dense of the exact size, or sparse).
pub fn hll_encoding(s: &[u8]) -> Option<u8> {
    if s.len() < HDR || &s[..4] != b"HYLL" || s[4] > SPARSE {
        return None;
    }
    if s[4] == DENSE && s.len() != DENSE_SIZE {
        return None;
    }
    Some(s[4])
}

// ---- opcodes ----

#[inline]
fn is_zero(b: u8) -> bool {
    b & 0xc0 == 0
}

#[inline]
fn is_xzero(b: u8) -> bool {
    b & 0xc0 == 0x40
}

#[inline]
fn is_val(b: u8) -> bool {
    b & 0x80 != 0
}

#[inline]
fn zero_len(b: u8) -> usize {
    usize::from(b & 0x3f) + 1
}

#[inline]
fn xzero_len(b0: u8, b1: u8) -> usize {
    ((usize::from(b0 & 0x3f) << 8) | usize::from(b1)) + 1
}

#[inline]
fn val_value(b: u8) -> u8 {
    ((b >> 2) & 0x1f) + 1
}

#[inline]
fn val_len(b: u8) -> usize {
    usize::from(b & 0x3) + 1
}

/// The registers an opcode covers and its length in bytes (`b1` is the
/// byte after `b0`, read only for XZERO).
#[inline]
fn span(b0: u8, b1: u8) -> (usize, usize) {
    if is_zero(b0) {
        (zero_len(b0), 1)
    } else if is_xzero(b0) {
        (xzero_len(b0, b1), 2)
    } else {
        (val_len(b0), 1)
    }
}

#[inline]
fn val(value: u8, len: usize) -> u8 {
    ((value - 1) << 2) | (len as u8 - 1) | 0x80
}

#[inline]
fn xzero(len: usize) -> [u8; 2] {
    let l = len - 1;
    [(l >> 8) as u8 | 0x40, (l & 0xff) as u8]
}

// ---- dense registers ----

/// Register `i` of a dense body (`regs` starts after the header). The byte
/// after the last register is the string's terminator in Redis: 0.
#[inline]
fn dense_get(regs: &[u8], i: usize) -> u8 {
    let byte = i * 6 / 8;
    let fb = (i * 6) & 7;
    let b0 = u16::from(regs[byte]);
    let b1 = u16::from(regs.get(byte + 1).copied().unwrap_or(0));
    (((b0 >> fb) | (b1 << (8 - fb))) & u16::from(REGISTER_MAX)) as u8
}

#[inline]
fn dense_put(regs: &mut [u8], i: usize, value: u8) {
    let byte = i * 6 / 8;
    let fb = (i * 6) & 7;
    let v = u16::from(value);
    regs[byte] &= !((u16::from(REGISTER_MAX) << fb) as u8);
    regs[byte] |= (v << fb) as u8;
    if let Some(next) = regs.get_mut(byte + 1) {
        *next &= !((u16::from(REGISTER_MAX) >> (8 - fb)) as u8);
        *next |= (v >> (8 - fb)) as u8;
    }
}

/// Raises register `i` to `count`; true if it changed.
fn dense_set(regs: &mut [u8], i: usize, count: u8) -> bool {
    if count > dense_get(regs, i) {
        dense_put(regs, i, count);
        true
    } else {
        false
    }
}

// ---- Redis's sds buffer, for the sparse editor ----

/// An HLL string being edited the way Redis edits its sds: `len` bytes of
/// content, then the terminator and spare room (reads past the content see
/// them, as Redis's do).
struct Sds {
    buf: Vec<u8>,
    len: usize,
}

impl Sds {
    fn new(content: Vec<u8>) -> Sds {
        let len = content.len();
        let mut buf = content;
        buf.push(0);
        Sds { buf, len }
    }

    /// `sdsMakeRoomFor(s, n)`: spare room for `n` more bytes.
    fn make_room(&mut self, n: usize) {
        if self.buf.len() < self.len + 1 + n {
            self.buf.resize(self.len + 1 + n, 0);
        }
    }

    /// `sdsIncrLen`: moves the end and writes the terminator.
    fn incr_len(&mut self, delta: isize) {
        self.len = self.len.wrapping_add_signed(delta);
        self.buf[self.len] = 0;
    }

    fn into_bytes(mut self) -> Bytes {
        self.buf.truncate(self.len);
        Bytes::from(self.buf)
    }

    fn encoding(&self) -> u8 {
        self.buf[4]
    }

    fn invalidate_cache(&mut self) {
        self.buf[15] |= 0x80;
    }
}

/// Redis's `hllSparseToDense` (nothing to do if already dense).
///
/// Here and in [`merge`] and [`histogram`] a sparse body is valid when its
/// opcodes cover exactly 16384 registers: an opcode that would run past the
/// last register is corrupt. That is the check the fix for CVE-2025-32023
/// added to all three functions; the reference redis-server 7.0.15 (Debian's
/// 7.0.15-1~deb12u10) carries it, plain 7.0.15 only checked VAL opcodes.
fn sparse_to_dense(s: &mut Sds) -> Result<(), Corrupt> {
    if s.encoding() == DENSE {
        return Ok(());
    }
    let mut dense = vec![0u8; DENSE_SIZE];
    dense[..HDR].copy_from_slice(&s.buf[..HDR]);
    dense[4] = DENSE;
    let regs = &mut dense[HDR..];
    let mut idx = 0usize;
    let mut p = HDR;
    while p < s.len {
        let (run, oplen) = span(s.buf[p], s.buf[p + 1]);
        if run + idx > REGISTERS {
            return Err(Corrupt);
        }
        if is_val(s.buf[p]) {
            for r in idx..idx + run {
                dense_put(regs, r, val_value(s.buf[p]));
            }
        }
        idx += run;
        p += oplen;
    }
    if idx != REGISTERS {
        return Err(Corrupt);
    }
    *s = Sds::new(dense);
    Ok(())
}

/// Redis's `hllSparseSet`: raises register `index` to `count` in a sparse
/// HLL, splitting and merging opcodes in place, or converting to dense
/// when the value does not fit a VAL opcode or the string would grow past
/// [`SPARSE_MAX_BYTES`]. Ok(true) if the register changed.
fn sparse_set(s: &mut Sds, index: usize, count: u8) -> Result<bool, Corrupt> {
    if count > SPARSE_VAL_MAX_VALUE {
        return promote(s, index, count);
    }
    s.make_room(3);
    let sparse = HDR;
    let mut end = s.len;
    // Step 1: find the opcode covering `index`.
    let mut p = sparse;
    let mut first = 0usize;
    let mut prev: Option<usize> = None;
    let mut span = 0usize;
    while p < end {
        let b = s.buf[p];
        let mut oplen = 1;
        span = if is_zero(b) {
            zero_len(b)
        } else if is_val(b) {
            val_len(b)
        } else {
            oplen = 2;
            xzero_len(b, s.buf[p + 1])
        };
        if index < first + span {
            break;
        }
        prev = Some(p);
        p += oplen;
        first += span;
    }
    if span == 0 || p >= end {
        return Err(Corrupt);
    }
    let op = s.buf[p];
    let next = if is_xzero(op) { p + 2 } else { p + 1 };
    let next = (next < end).then_some(next);
    let (zero, xz) = (is_zero(op), is_xzero(op));
    let runlen = if zero {
        zero_len(op)
    } else if xz {
        xzero_len(op, s.buf[p + 1])
    } else {
        val_len(op)
    };

    let mut updated_in_place = false;
    if !zero && !xz {
        // Cases A and B: a VAL opcode.
        if val_value(op) >= count {
            return Ok(false);
        }
        if runlen == 1 {
            s.buf[p] = val(count, 1);
            updated_in_place = true;
        }
    }
    if !updated_in_place && zero && runlen == 1 {
        // Case C: a ZERO of one register.
        s.buf[p] = val(count, 1);
        updated_in_place = true;
    }
    if !updated_in_place {
        // Case D: split the opcode into up to three.
        let mut seq = [0u8; 5];
        let mut n = 0;
        let last = first + span - 1;
        if zero || xz {
            let zeros = |len: usize, seq: &mut [u8; 5], n: &mut usize| {
                if len > SPARSE_ZERO_MAX_LEN {
                    seq[*n..*n + 2].copy_from_slice(&xzero(len));
                    *n += 2;
                } else {
                    seq[*n] = (len - 1) as u8;
                    *n += 1;
                }
            };
            if index != first {
                zeros(index - first, &mut seq, &mut n);
            }
            seq[n] = val(count, 1);
            n += 1;
            if index != last {
                zeros(last - index, &mut seq, &mut n);
            }
        } else {
            let current = val_value(op);
            if index != first {
                seq[n] = val(current, index - first);
                n += 1;
            }
            seq[n] = val(count, 1);
            n += 1;
            if index != last {
                seq[n] = val(current, last - index);
                n += 1;
            }
        }
        // Step 3: put the new sequence in place of the old opcode.
        let oldlen = if xz { 2 } else { 1 };
        let delta = n as isize - oldlen as isize;
        if delta > 0 && s.len + delta as usize > SPARSE_MAX_BYTES {
            return promote(s, index, count);
        }
        if delta != 0 {
            if let Some(next) = next {
                s.buf.copy_within(next..end, next.wrapping_add_signed(delta));
            }
        }
        s.incr_len(delta);
        s.buf[p..p + n].copy_from_slice(&seq[..n]);
        end = end.wrapping_add_signed(delta);
    }

    // Step 4: merge adjacent VAL opcodes of the same value, scanning up to
    // five opcodes from the previous one.
    let mut p = prev.unwrap_or(sparse);
    let mut scan = 5;
    while p < end && scan > 0 {
        scan -= 1;
        let b = s.buf[p];
        if is_xzero(b) {
            p += 2;
            continue;
        } else if is_zero(b) {
            p += 1;
            continue;
        }
        if p + 1 < end && is_val(s.buf[p + 1]) {
            let v1 = val_value(b);
            let v2 = val_value(s.buf[p + 1]);
            if v1 == v2 {
                let len = val_len(b) + val_len(s.buf[p + 1]);
                if len <= SPARSE_VAL_MAX_LEN {
                    s.buf[p + 1] = val(v1, len);
                    s.buf.copy_within(p + 1..end + 1, p);
                    s.incr_len(-1);
                    end -= 1;
                    continue;
                }
            }
        }
        p += 1;
    }
    s.invalidate_cache();
    Ok(true)
}

/// The promotion at the end of `hllSparseSet`: convert, then set densely.
fn promote(s: &mut Sds, index: usize, count: u8) -> Result<bool, Corrupt> {
    sparse_to_dense(s)?;
    dense_set(&mut s.buf[HDR..HDR + (DENSE_SIZE - HDR)], index, count);
    Ok(true)
}

/// Redis's `hllAdd`: Ok(true) if a register changed.
fn add(s: &mut Sds, element: &[u8]) -> Result<bool, Corrupt> {
    let (index, count) = pattern(element);
    match s.encoding() {
        DENSE => Ok(dense_set(&mut s.buf[HDR..DENSE_SIZE], index, count)),
        _ => sparse_set(s, index, count),
    }
}

/// Redis's `hllMerge`: raises `max` to the registers of a (valid-header) HLL.
pub fn merge(max: &mut [u8; REGISTERS], hll: &[u8]) -> Result<(), Corrupt> {
    if hll[4] == DENSE {
        let regs = &hll[HDR..];
        for (i, m) in max.iter_mut().enumerate() {
            *m = (*m).max(dense_get(regs, i));
        }
        return Ok(());
    }
    let mut i = 0usize;
    let mut p = HDR;
    while p < hll.len() {
        let b = hll[p];
        let (run, oplen) = span(b, hll.get(p + 1).copied().unwrap_or(0));
        if run + i > REGISTERS {
            return Err(Corrupt);
        }
        if is_val(b) {
            let v = val_value(b);
            max[i..i + run].iter_mut().for_each(|m| *m = (*m).max(v));
        }
        i += run;
        p += oplen;
    }
    if i != REGISTERS {
        return Err(Corrupt);
    }
    Ok(())
}

/// Histogram of register values (Redis sizes it 64: a crafted dense HLL
/// may hold registers up to 63).
type Histogram = [u64; 64];

/// The histogram of an HLL's registers (`hllDenseRegHisto` /
/// `hllSparseRegHisto`), or Corrupt if a sparse body does not cover
/// exactly 16384 registers.
fn histogram(hll: &[u8]) -> Result<Histogram, Corrupt> {
    let mut h = [0u64; 64];
    if hll[4] == DENSE {
        let regs = &hll[HDR..];
        for i in 0..REGISTERS {
            h[usize::from(dense_get(regs, i))] += 1;
        }
        return Ok(h);
    }
    let mut idx = 0usize;
    let mut p = HDR;
    while p < hll.len() {
        let b = hll[p];
        let (run, oplen) = span(b, hll.get(p + 1).copied().unwrap_or(0));
        if run + idx > REGISTERS {
            return Err(Corrupt);
        }
        let value = if is_val(b) { usize::from(val_value(b)) } else { 0 };
        h[value] += run as u64;
        idx += run;
        p += oplen;
    }
    if idx != REGISTERS {
        return Err(Corrupt);
    }
    Ok(h)
}

/// The histogram of raw (one byte per register) registers.
fn raw_histogram(regs: &[u8; REGISTERS]) -> Histogram {
    let mut h = [0u64; 64];
    for &r in regs.iter() {
        h[usize::from(r & 63)] += 1;
    }
    h
}

/// Ertl's sigma, as Redis's `hllSigma`.
fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if previous == z {
            return z;
        }
    }
}

/// Ertl's tau, as Redis's `hllTau` (`pow(1 - x, 2)` is a square: GCC
/// emits a multiplication for it).
fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        let d = 1.0 - x;
        z -= (d * d) * y;
        if previous == z {
            return z / 3.0;
        }
    }
}

/// The estimate from a register histogram (Redis's `hllCount`).
fn estimate(h: &Histogram) -> u64 {
    let m = REGISTERS as f64;
    let mut z = m * tau((m - h[Q + 1] as f64) / m);
    for j in (1..=Q).rev() {
        z += h[j] as f64;
        z *= 0.5;
    }
    z += m * sigma(h[0] as f64 / m);
    // llroundl: to nearest, halves away from zero; a result outside the
    // long long range (only crafted HLLs with registers near 50 get there)
    // is x86-64's "integer indefinite", LLONG_MIN, which Redis converts to
    // 2^63 (and replies as LLONG_MIN again).
    let e = (ALPHA_INF * m * m / z).round();
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    if e.is_nan() || !(-LIMIT..LIMIT).contains(&e) {
        1 << 63
    } else {
        e as i64 as u64
    }
}

/// The cardinality estimate of one valid-header HLL, computed.
pub fn count(hll: &[u8]) -> Result<u64, Corrupt> {
    histogram(hll).map(|h| estimate(&h))
}

/// The cached cardinality, if the header marks it valid.
pub fn cached_count(hll: &[u8]) -> Option<u64> {
    let card = u64::from_le_bytes(hll[8..16].try_into().expect("8 bytes"));
    (hll[15] & 0x80 == 0).then_some(card)
}

/// The HLL at `key` for a write: its bytes as an [`Sds`] (the key stays in
/// place, marked "raw" as `dbUnshareStringValue` makes it), or a new empty
/// one (created: true) if missing. The caller stores the bytes back.
fn open_for_write(x: &mut Exec, key: &[u8]) -> Res<(Sds, bool)> {
    let now = x.now;
    match x.db().object_mut(key, now) {
        Some(obj) => {
            check_hll(&obj.value)?;
            obj.raw = true;
            let Value::Str(s) = &mut obj.value else { unreachable!("checked above") };
            Ok((Sds::new(Vec::from(std::mem::take(s))), false))
        }
        None => Ok((Sds::new(empty_hll()), true)),
    }
}

/// Stores an edited HLL back: in place if the key exists (TTL kept),
/// created (with Redis's "new" event) if not.
fn store(x: &mut Exec, key: &[u8], s: Sds, created: bool) {
    let now = x.now;
    let bytes = s.into_bytes();
    if created {
        let obj = Object::with(Value::Str(bytes), None, true);
        x.db().set_object(key, obj);
        x.notify(Class::New, "new", key);
    } else if let Some(obj) = x.db().object_mut(key, now) {
        obj.value = Value::Str(bytes);
    }
}

/// PFADD key [element [element ...]]
fn pfadd(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let key = &argv[1];
    let (mut s, created) = open_for_write(x, key)?;
    let mut updated = usize::from(created);
    for element in &argv[2..] {
        match add(&mut s, element) {
            Ok(true) => updated += 1,
            Ok(false) => {}
            Err(Corrupt) => {
                // Redis has changed the string in place up to here and
                // neither signals nor notifies.
                store(x, key, s, created);
                return Err(Reply::err(INVALID));
            }
        }
    }
    if updated > 0 {
        s.invalidate_cache();
    }
    store(x, key, s, created);
    if updated > 0 {
        x.modified(key);
        x.notify(Class::String, "pfadd", key);
    }
    Ok(Reply::Int(i64::from(updated > 0)))
}

/// PFCOUNT key [key ...]
///
/// A read: one key answers from the cached cardinality when it is valid
/// and otherwise computes the estimate without storing it (Redis stores
/// it); several keys are merged into a scratch HLL, as Redis does.
fn pfcount(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let db = q.db();
    if argv.len() > 2 {
        let mut max = Box::new([0u8; REGISTERS]);
        for key in &argv[1..] {
            let Some(value) = db.get(key, q.now) else { continue };
            check_hll(value)?;
            let Value::Str(s) = value else { unreachable!("checked above") };
            merge(&mut max, s).map_err(|_| Reply::err(INVALID))?;
        }
        return Ok(Reply::Int(estimate(&raw_histogram(&max)) as i64));
    }
    let Some(value) = db.get(&argv[1], q.now) else { return Ok(Reply::Int(0)) };
    check_hll(value)?;
    let Value::Str(s) = value else { unreachable!("checked above") };
    let card = match cached_count(s) {
        Some(card) => card,
        None => count(s).map_err(|_| Reply::err(INVALID))?,
    };
    Ok(Reply::Int(card as i64))
}

/// PFMERGE destkey [sourcekey [sourcekey ...]]
fn pfmerge(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let now = x.now;
    let mut max = Box::new([0u8; REGISTERS]);
    let mut use_dense = false;
    {
        let db = x.db();
        // The destination is a source too (argv[1] onwards).
        for key in &argv[1..] {
            let Some(value) = db.get(key, now) else { continue };
            let encoding = check_hll(value)?;
            let Value::Str(s) = value else { unreachable!("checked above") };
            use_dense |= encoding == DENSE;
            merge(&mut max, s).map_err(|_| Reply::err(INVALID))?;
        }
    }
    let key = &argv[1];
    let (mut s, created) = open_for_write(x, key)?;
    if use_dense && sparse_to_dense(&mut s).is_err() {
        store(x, key, s, created);
        return Err(Reply::err(INVALID));
    }
    for (i, &m) in max.iter().enumerate() {
        if m == 0 {
            continue;
        }
        if s.encoding() == DENSE {
            dense_set(&mut s.buf[HDR..DENSE_SIZE], i, m);
        } else {
            // Redis ignores a failure here (the destination was checked).
            let _ = sparse_set(&mut s, i, m);
        }
    }
    s.invalidate_cache();
    store(x, key, s, created);
    x.modified(key);
    x.notify(Class::String, "pfadd", key);
    Ok(Reply::Ok)
}

/// The sparse opcodes as PFDEBUG DECODE prints them.
fn decode(s: &Sds) -> String {
    let mut out = String::new();
    let mut p = HDR;
    while p < s.len {
        let b = s.buf[p];
        if is_zero(b) {
            out.push_str(&format!("z:{} ", zero_len(b)));
            p += 1;
        } else if is_xzero(b) {
            out.push_str(&format!("Z:{} ", xzero_len(b, s.buf[p + 1])));
            p += 2;
        } else {
            out.push_str(&format!("v:{},{} ", val_value(b), val_len(b)));
            p += 1;
        }
    }
    out.trim_matches(' ').to_string()
}

/// PFDEBUG GETREG | DECODE | ENCODING | TODENSE key
///
/// Redis's debugging command (a write: GETREG and TODENSE convert a sparse
/// HLL to dense, without signalling).
fn pfdebug(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let key = &argv[2];
    let now = x.now;
    if x.db().object_mut(key, now).is_none() {
        return Err(Reply::err("ERR The specified key does not exist"));
    }
    let (mut s, _) = open_for_write(x, key)?;
    let sub = &argv[1];
    let c_is = crate::cmd::bitmaps::c_is;
    let reply = if c_is(sub, "getreg") {
        if sparse_to_dense(&mut s).is_err() {
            store(x, key, s, false);
            return Err(Reply::err(INVALID));
        }
        let regs = &s.buf[HDR..DENSE_SIZE];
        Reply::Array((0..REGISTERS).map(|i| Reply::Int(i64::from(dense_get(regs, i)))).collect())
    } else if c_is(sub, "decode") {
        if s.encoding() != SPARSE {
            store(x, key, s, false);
            return Err(Reply::err("ERR HLL encoding is not sparse"));
        }
        Reply::Bulk(Bytes::from(decode(&s)))
    } else if c_is(sub, "encoding") {
        Reply::status(if s.encoding() == DENSE { "dense" } else { "sparse" })
    } else if c_is(sub, "todense") {
        let was_sparse = s.encoding() == SPARSE;
        if sparse_to_dense(&mut s).is_err() {
            store(x, key, s, false);
            return Err(Reply::err(INVALID));
        }
        Reply::Int(i64::from(was_sparse))
    } else {
        store(x, key, s, false);
        return Err(Reply::error(format!(
            "ERR Unknown PFDEBUG subcommand '{}'",
            String::from_utf8_lossy(c_str(sub))
        )));
    };
    store(x, key, s, false);
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_hll_is_redis_bytes() {
        let e = empty_hll();
        assert_eq!(&e[..], b"HYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x7f\xff");
        assert_eq!(count(&e), Ok(0));
        assert_eq!(DENSE_SIZE, 12304);
    }

    #[test]
    fn dense_registers_round_trip() {
        let mut regs = vec![0u8; DENSE_SIZE - HDR];
        for i in 0..REGISTERS {
            dense_put(&mut regs, i, ((i * 7) % 64) as u8);
        }
        for i in 0..REGISTERS {
            assert_eq!(dense_get(&regs, i), ((i * 7) % 64) as u8, "register {i}");
        }
    }

    /// Adding the same elements to a sparse and a dense HLL gives the same
    /// registers and the same estimate (Redis's PFSELFTEST, in small).
    #[test]
    fn sparse_and_dense_agree() {
        let mut sparse = Sds::new(empty_hll());
        let mut dense = Sds::new(empty_hll());
        sparse_to_dense(&mut dense).unwrap();
        for i in 0..5000u32 {
            let e = i.to_le_bytes();
            let a = add(&mut sparse, &e).unwrap();
            let b = add(&mut dense, &e).unwrap();
            assert_eq!(a, b);
            if i % 97 == 0 {
                let (sb, db) = (&sparse.buf[..sparse.len], &dense.buf[..dense.len]);
                assert_eq!(count(sb), count(db), "after {i}");
            }
        }
        assert_eq!(sparse.encoding(), DENSE, "turned dense past 3000 bytes");
        assert_eq!(&sparse.buf[HDR..sparse.len], &dense.buf[HDR..dense.len]);
    }

    #[test]
    fn corrupt_sparse_is_an_error_not_a_panic() {
        let mut short = empty_hll();
        short.truncate(HDR + 1); // an XZERO cut in half
        let mut s = Sds::new(short.clone());
        for i in 0..200u32 {
            let _ = add(&mut s, &i.to_le_bytes());
        }
        assert!(count(&short).is_err() || count(&short).is_ok());
        let mut nothing = empty_hll();
        nothing.truncate(HDR);
        assert_eq!(add(&mut Sds::new(nothing.clone()), b"a"), Err(Corrupt));
        assert_eq!(count(&nothing), Err(Corrupt));
        let mut over = empty_hll();
        over.extend_from_slice(&[0xff; 40]);
        assert_eq!(count(&over), Err(Corrupt));
        let mut max = [0u8; REGISTERS];
        assert_eq!(merge(&mut max, &over), Err(Corrupt));
        assert_eq!(merge(&mut max, &nothing), Err(Corrupt));
    }

    #[test]
    fn events_like_redis() {
        use crate::cmd::bitmaps::tests::events;
        assert_eq!(events(&[], "PFADD h a"), ["new h", "pfadd h"]);
        assert_eq!(events(&[], "PFADD h"), ["new h", "pfadd h"]);
        assert!(events(&["PFADD h a"], "PFADD h a").is_empty());
        assert_eq!(events(&["PFADD h a"], "PFADD h b"), ["pfadd h"]);
        assert_eq!(events(&["PFADD h a"], "PFMERGE h"), ["pfadd h"]);
        assert_eq!(events(&["PFADD h a"], "PFMERGE d h"), ["new d", "pfadd d"]);
        assert!(events(&["PFADD h a"], "PFDEBUG TODENSE h").is_empty());
        assert!(events(&["SET h x"], "PFADD h a").is_empty());
    }
}

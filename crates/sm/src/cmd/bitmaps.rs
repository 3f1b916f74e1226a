//! Bitmap commands: SETBIT GETBIT BITCOUNT BITPOS BITOP BITFIELD BITFIELD_RO.
//!
//! A bitmap is a plain string (`Value::Str`); bit 0 is the most significant
//! bit of the first byte, as in Redis (`src/bitops.c`). Every handler follows
//! the order of checks of Redis 7.0's, because that order decides which
//! error a client sees (BITCOUNT looks the key up before it parses its
//! range; BITFIELD parses every subcommand before it looks the key up …).
//!
//! Writes change the string in place, keeping its TTL, and mark it "raw" as
//! Redis's `dbUnshareStringValue` does. The buffer is taken out of the
//! object and changed without a copy when nothing else shares it (a
//! snapshot in progress may; then it is copied once).
//!
//! Offsets are limited like Redis's: a bit offset whose byte is at or past
//! 512 MB ([`MAX_STRING_LEN`]) is refused, so no command can make a string
//! longer than 512 MB plus the width of one BITFIELD integer.

use bytes::{Bytes, BytesMut};

use crate::args::{self, Res};
use crate::cmd::strings::MAX_STRING_LEN;
use crate::command::Spec;
use crate::db::Object;
use crate::event::Class;
use crate::reply::{errors, Reply};
use crate::state::{Exec, Query};
use crate::value::Value;

pub const COMMANDS: &[Spec] = &[
    Spec::write("setbit", 4, (1, 1, 1), setbit),
    Spec::read("getbit", 3, (1, 1, 1), getbit),
    Spec::read("bitcount", -2, (1, 1, 1), bitcount),
    Spec::read("bitpos", -3, (1, 1, 1), bitpos),
    Spec::write("bitop", -4, (2, -1, 1), bitop),
    Spec::write("bitfield", -2, (1, 1, 1), bitfield),
    Spec::read("bitfield_ro", -2, (1, 1, 1), bitfield_ro),
];

const BIT_OFFSET_ERR: &str = "ERR bit offset is not an integer or out of range";
const BIT_VALUE_ERR: &str = "ERR bit is not an integer or out of range";
const BITFIELD_TYPE_ERR: &str =
    "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";

/// The argument as C sees it (`strcasecmp`, `strlen`): up to its first NUL.
pub(crate) fn c_str(arg: &[u8]) -> &[u8] {
    &arg[..arg.iter().position(|&b| b == 0).unwrap_or(arg.len())]
}

/// `strcasecmp(arg, word) == 0`: Redis compares option names as C strings,
/// so `"and\0x"` is AND.
pub(crate) fn c_is(arg: &[u8], word: &str) -> bool {
    c_str(arg).eq_ignore_ascii_case(word.as_bytes())
}

/// Takes a string's bytes out for an in-place change: no copy when nothing
/// else holds them.
pub(crate) fn take_mut(s: &mut Bytes) -> BytesMut {
    std::mem::take(s).try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]))
}

/// Redis's `getBitOffsetFromArgument`: a bit offset, optionally `#n` (n
/// times `bits`, BITFIELD only); its byte must be below 512 MB. The `#`
/// product wraps on overflow as the C multiplication does.
fn bit_offset(arg: &[u8], hash_bits: Option<u32>) -> Res<u64> {
    let (hashed, digits) = match (arg.first(), hash_bits) {
        (Some(b'#'), Some(_)) => (true, &arg[1..]),
        _ => (false, arg),
    };
    let mut n = args::parse_i64(digits).ok_or(Reply::err(BIT_OFFSET_ERR))?;
    if let (true, Some(bits)) = (hashed, hash_bits) {
        n = n.wrapping_mul(i64::from(bits));
    }
    if n < 0 || (n >> 3) >= MAX_STRING_LEN {
        return Err(Reply::err(BIT_OFFSET_ERR));
    }
    Ok(n as u64)
}

/// Redis's `lookupStringForBitCommand`: the string at `key` with room for
/// bit `maxbit` (zero bytes appended, or a new key of zeros), handed to `f`
/// with Redis's `dirty` (created or grown). Emits "new" for a created key;
/// the caller signals and notifies the change itself, when Redis does.
fn with_bits<R>(
    x: &mut Exec,
    key: &[u8],
    maxbit: u64,
    f: impl FnOnce(&mut BytesMut, bool) -> R,
) -> Res<R> {
    let now = x.now;
    let need = (maxbit >> 3) as usize + 1;
    match x.db().object_mut(key, now) {
        Some(obj) => {
            let Value::Str(s) = &mut obj.value else {
                return Err(Reply::err(errors::WRONGTYPE));
            };
            let mut buf = take_mut(s);
            let dirty = buf.len() < need;
            if dirty {
                buf.resize(need, 0);
            }
            let out = f(&mut buf, dirty);
            *s = buf.freeze();
            obj.raw = true;
            Ok(out)
        }
        None => {
            let mut buf = BytesMut::zeroed(need);
            let out = f(&mut buf, true);
            let obj = Object::with(Value::Str(buf.freeze()), None, true);
            x.db().set_object(key, obj);
            x.notify(Class::New, "new", key);
            Ok(out)
        }
    }
}

/// SETBIT key offset value
fn setbit(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let offset = bit_offset(&argv[2], None)?;
    let on = args::parse_i64(&argv[3]).ok_or(Reply::err(BIT_VALUE_ERR))?;
    if on & !1 != 0 {
        return Err(Reply::err(BIT_VALUE_ERR));
    }
    let byte = (offset >> 3) as usize;
    let shift = 7 - (offset & 7) as u32;
    let (old, changed) = with_bits(x, &argv[1], offset, |buf, dirty| {
        let old = (buf[byte] >> shift) & 1;
        let changed = dirty || i64::from(old) != on;
        if changed {
            buf[byte] = (buf[byte] & !(1 << shift)) | ((on as u8) << shift);
        }
        (old, changed)
    })?;
    if changed {
        x.modified(&argv[1]);
        x.notify(Class::String, "setbit", &argv[1]);
    }
    Ok(Reply::Int(i64::from(old)))
}

/// GETBIT key offset
fn getbit(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let offset = bit_offset(&argv[2], None)?;
    let Some(s) = q.db().get_str(&argv[1], q.now)? else { return Ok(Reply::Int(0)) };
    let byte = (offset >> 3) as usize;
    let bit = s.get(byte).map_or(0, |b| (b >> (7 - (offset & 7))) & 1);
    Ok(Reply::Int(i64::from(bit)))
}

/// Number of set bits (Redis's `redisPopcount`).
pub(crate) fn popcount(s: &[u8]) -> u64 {
    let mut chunks = s.chunks_exact(8);
    let mut n: u64 = chunks
        .by_ref()
        .map(|c| u64::from(u64::from_ne_bytes(c.try_into().expect("8 bytes")).count_ones()))
        .sum();
    n += chunks.remainder().iter().map(|b| u64::from(b.count_ones())).sum::<u64>();
    n
}

/// Parses a BIT|BYTE unit argument.
fn unit_is_bit(arg: &[u8]) -> Res<bool> {
    if c_is(arg, "bit") {
        Ok(true)
    } else if c_is(arg, "byte") {
        Ok(false)
    } else {
        Err(Reply::err(errors::SYNTAX))
    }
}

/// A range of a string in bytes, with the bits of its first and last byte
/// that lie outside a bit range (Redis's `first_byte_neg_mask` and
/// `last_byte_neg_mask`).
struct ByteRange {
    start: i64,
    end: i64,
    first_mask: u8,
    last_mask: u8,
}

/// Converts a `start end` range (negative counts from the end; in bits if
/// `is_bit`) to bytes and edge masks, clamped like BITCOUNT and BITPOS do.
fn clamp_range(mut start: i64, mut end: i64, len: usize, is_bit: bool) -> ByteRange {
    let mut total = len as i64;
    if is_bit {
        total <<= 3;
    }
    if start < 0 {
        start += total;
    }
    if end < 0 {
        end += total;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= total {
        end = total - 1;
    }
    let (mut first_mask, mut last_mask) = (0, 0);
    if is_bit && start <= end {
        first_mask = !((1u16 << (8 - (start & 7))) - 1) as u8;
        last_mask = ((1u16 << (7 - (end & 7))) - 1) as u8;
        start >>= 3;
        end >>= 3;
    }
    ByteRange { start, end, first_mask, last_mask }
}

/// BITCOUNT key [start end [BYTE | BIT]]
fn bitcount(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let Some(s) = q.db().get_str(&argv[1], q.now)? else { return Ok(Reply::Int(0)) };
    let range = match argv.len() {
        2 => ByteRange { start: 0, end: s.len() as i64 - 1, first_mask: 0, last_mask: 0 },
        4 | 5 => {
            let start = args::int(&argv[2])?;
            let end = args::int(&argv[3])?;
            if start < 0 && end < 0 && start > end {
                return Ok(Reply::Int(0));
            }
            let is_bit = if argv.len() == 5 { unit_is_bit(&argv[4])? } else { false };
            clamp_range(start, end, s.len(), is_bit)
        }
        _ => return Err(Reply::err(errors::SYNTAX)),
    };
    if range.start > range.end {
        return Ok(Reply::Int(0));
    }
    let (start, end) = (range.start as usize, range.end as usize);
    let mut count = popcount(&s[start..=end]);
    count -= u64::from((s[start] & range.first_mask).count_ones());
    count -= u64::from((s[end] & range.last_mask).count_ones());
    Ok(Reply::Int(count as i64))
}

/// The position of the first bit equal to `bit` among bits `lo..=hi` of
/// `s` (both within the string), if any.
fn find_bit(s: &[u8], bit: bool, lo: u64, hi: u64) -> Option<u64> {
    let (first, last) = ((lo >> 3) as usize, (hi >> 3) as usize);
    // A byte with the bits we look for set, and the bits outside the range clear.
    let looked_for = |i: usize| -> u8 {
        let mut b = if bit { s[i] } else { !s[i] };
        if i == first {
            b &= 0xff >> (lo & 7);
        }
        if i == last {
            b &= 0xff << (7 - (hi & 7));
        }
        b
    };
    let hit = |i: usize, b: u8| Some(((i as u64) << 3) + u64::from(b.leading_zeros()));
    let b = looked_for(first);
    if b != 0 {
        return hit(first, b);
    }
    if last == first {
        return None;
    }
    let skip = if bit { 0u8 } else { 0xff };
    let middle = &s[first + 1..last];
    let mut i = 0;
    // Whole words first: a run of all-skip bytes is the common case.
    while i + 8 <= middle.len() && middle[i..i + 8].iter().all(|&b| b == skip) {
        i += 8;
    }
    if let Some(at) = middle[i..].iter().position(|&b| b != skip) {
        let idx = first + 1 + i + at;
        return hit(idx, looked_for(idx));
    }
    let b = looked_for(last);
    if b != 0 {
        return hit(last, b);
    }
    None
}

/// BITPOS key bit [start [end [BYTE | BIT]]]
fn bitpos(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let bit = args::int(&argv[2])?;
    if bit != 0 && bit != 1 {
        return Err(Reply::err("ERR The bit argument must be 1 or 0."));
    }
    let Some(s) = q.db().get_str(&argv[1], q.now)? else {
        return Ok(Reply::Int(if bit == 1 { -1 } else { 0 }));
    };
    let len = s.len();
    let mut end_given = false;
    let mut is_bit = false;
    let (start, end) = match argv.len() {
        3 => (0, len as i64 - 1),
        4..=6 => {
            let start = args::int(&argv[3])?;
            if argv.len() == 6 {
                is_bit = unit_is_bit(&argv[5])?;
            }
            let end = if argv.len() >= 5 {
                end_given = true;
                args::int(&argv[4])?
            } else {
                len as i64 - 1
            };
            (start, end)
        }
        _ => return Err(Reply::err(errors::SYNTAX)),
    };
    let range = if argv.len() == 3 {
        ByteRange { start, end, first_mask: 0, last_mask: 0 }
    } else {
        clamp_range(start, end, len, is_bit)
    };
    if range.start > range.end {
        return Ok(Reply::Int(-1));
    }
    // The bit range: `lo..=hi` from the byte range minus the masked edges.
    let lo = ((range.start as u64) << 3) + u64::from(range.first_mask.count_ones());
    let hi = ((range.end as u64) << 3) + 7 - u64::from(range.last_mask.count_ones());
    let found = find_bit(s, bit == 1, lo, hi);
    Ok(Reply::Int(match found {
        Some(pos) => pos as i64,
        // Past the string every bit is 0, unless the client bounded the range.
        None if bit == 0 && !end_given => (range.end + 1) << 3,
        None => -1,
    }))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BitOp {
    And,
    Or,
    Xor,
    Not,
}

/// BITOP AND | OR | XOR | NOT destkey key [key ...]
fn bitop(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let op = match &argv[1] {
        a if c_is(a, "and") => BitOp::And,
        a if c_is(a, "or") => BitOp::Or,
        a if c_is(a, "xor") => BitOp::Xor,
        a if c_is(a, "not") => BitOp::Not,
        _ => return Err(Reply::err(errors::SYNTAX)),
    };
    if op == BitOp::Not && argv.len() != 4 {
        return Err(Reply::err("ERR BITOP NOT must be called with a single source key."));
    }
    let now = x.now;
    let db = x.db();
    let mut sources: Vec<Bytes> = Vec::with_capacity(argv.len() - 3);
    for key in &argv[3..] {
        sources.push(db.get_str(key, now)?.cloned().unwrap_or_default());
    }
    let maxlen = sources.iter().map(Bytes::len).max().unwrap_or(0);
    let dest = &argv[2];
    if maxlen == 0 {
        // Redis's dbDelete removes the key even if it is expired but not
        // yet purged, and then reports it deleted.
        if x.db().remove(dest).is_some() {
            x.modified(dest);
            x.notify(Class::Generic, "del", dest);
        }
        return Ok(Reply::Int(0));
    }
    let mut out = vec![0u8; maxlen];
    out[..sources[0].len()].copy_from_slice(&sources[0]);
    match op {
        BitOp::Not => out.iter_mut().for_each(|b| *b = !*b),
        BitOp::And => {
            for src in &sources[1..] {
                out.iter_mut().zip(src.iter()).for_each(|(o, s)| *o &= s);
                out[src.len()..].fill(0);
            }
        }
        BitOp::Or => {
            for src in &sources[1..] {
                out.iter_mut().zip(src.iter()).for_each(|(o, s)| *o |= s);
            }
        }
        BitOp::Xor => {
            for src in &sources[1..] {
                out.iter_mut().zip(src.iter()).for_each(|(o, s)| *o ^= s);
            }
        }
    }
    drop(sources);
    let created = !x.db().contains(dest, now);
    let obj = Object::with(Value::Str(Bytes::from(out)), None, true);
    x.db().set_object(dest, obj);
    if created {
        x.notify(Class::New, "new", dest);
    }
    x.modified(dest);
    x.notify(Class::String, "set", dest);
    Ok(Reply::Int(maxlen as i64))
}

/// What BITFIELD does when a value does not fit its type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum FieldKind {
    Get,
    Set,
    IncrBy,
}

/// One BITFIELD subcommand, parsed.
#[derive(Clone, Copy, Debug)]
struct FieldOp {
    kind: FieldKind,
    signed: bool,
    bits: u32,
    offset: u64,
    /// The SET value or the INCRBY increment.
    value: i64,
    overflow: Overflow,
}

/// Redis's `getBitfieldTypeFromArgument`: `i1`..`i64` or `u1`..`u63`. The
/// width is read as a C string (up to a NUL byte).
fn field_type(arg: &[u8]) -> Res<(bool, u32)> {
    let err = || Reply::err(BITFIELD_TYPE_ERR);
    let signed = match arg.first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => return Err(err()),
    };
    let bits = args::parse_i64(c_str(&arg[1..])).ok_or_else(err)?;
    if bits < 1 || (signed && bits > 64) || (!signed && bits > 63) {
        return Err(err());
    }
    Ok((signed, bits as u32))
}

/// The parsed subcommands, and the highest bit a SET or INCRBY writes (None
/// if there is no write: only GETs, or nothing).
struct FieldOps {
    ops: Vec<FieldOp>,
    highest_write: Option<u64>,
}

/// Parses every BITFIELD subcommand, with Redis's errors, before the key is
/// looked at.
fn parse_bitfield(argv: &[Bytes]) -> Res<FieldOps> {
    let mut ops = Vec::new();
    let mut highest_write: Option<u64> = None;
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < argv.len() {
        let remaining = argv.len() - j - 1;
        let sub = &argv[j];
        let kind = if c_is(sub, "get") && remaining >= 2 {
            FieldKind::Get
        } else if c_is(sub, "set") && remaining >= 3 {
            FieldKind::Set
        } else if c_is(sub, "incrby") && remaining >= 3 {
            FieldKind::IncrBy
        } else if c_is(sub, "overflow") && remaining >= 1 {
            let name = &argv[j + 1];
            overflow = if c_is(name, "wrap") {
                Overflow::Wrap
            } else if c_is(name, "sat") {
                Overflow::Sat
            } else if c_is(name, "fail") {
                Overflow::Fail
            } else {
                return Err(Reply::err("ERR Invalid OVERFLOW type specified"));
            };
            j += 2;
            continue;
        } else {
            return Err(Reply::err(errors::SYNTAX));
        };
        let (signed, bits) = field_type(&argv[j + 1])?;
        let offset = bit_offset(&argv[j + 2], Some(bits))?;
        let mut value = 0;
        if kind != FieldKind::Get {
            let last = offset + u64::from(bits) - 1;
            highest_write = Some(highest_write.map_or(last, |h| h.max(last)));
            value = args::int(&argv[j + 3])?;
        }
        ops.push(FieldOp { kind, signed, bits, offset, value, overflow });
        j += if kind == FieldKind::Get { 3 } else { 4 };
    }
    Ok(FieldOps { ops, highest_write })
}

/// Reads an unsigned `bits`-wide integer at bit `offset`; bits past the end
/// of `p` read as 0.
fn get_unsigned(p: &[u8], offset: u64, bits: u32) -> u64 {
    let mut value = 0u64;
    for j in 0..u64::from(bits) {
        let at = offset + j;
        let byte = p.get((at >> 3) as usize).copied().unwrap_or(0);
        value = (value << 1) | u64::from((byte >> (7 - (at & 7))) & 1);
    }
    value
}

/// Reads a two's-complement `bits`-wide integer at bit `offset`.
fn get_signed(p: &[u8], offset: u64, bits: u32) -> i64 {
    let mut value = get_unsigned(p, offset, bits);
    if bits < 64 && value & (1 << (bits - 1)) != 0 {
        value |= u64::MAX << bits;
    }
    value as i64
}

/// Writes the low `bits` bits of `value` at bit `offset` (the buffer has
/// been grown to hold them).
fn set_bits(p: &mut [u8], offset: u64, bits: u32, value: u64) {
    for j in 0..u64::from(bits) {
        let bit = (value >> (u64::from(bits) - 1 - j)) & 1;
        let at = offset + j;
        if let Some(byte) = p.get_mut((at >> 3) as usize) {
            let shift = 7 - (at & 7);
            *byte = (*byte & !(1 << shift)) | ((bit as u8) << shift);
        }
    }
}

/// Redis's `checkUnsignedBitfieldOverflow`: whether `value + incr` fits in
/// `bits` unsigned bits, and the value to store if not (None for FAIL).
/// The arithmetic wraps exactly like the C's.
fn unsigned_overflow(value: u64, incr: i64, bits: u32, ow: Overflow) -> Option<Option<u64>> {
    let max = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
    let max_incr = max.wrapping_sub(value) as i64;
    let min_incr = (value as i64).wrapping_neg();
    let limit = |sat: u64| match ow {
        Overflow::Wrap => Some(value.wrapping_add(incr as u64) & !(u64::MAX << bits)),
        Overflow::Sat => Some(sat),
        Overflow::Fail => None,
    };
    if value > max || (incr > 0 && incr > max_incr) {
        Some(limit(max))
    } else if incr < 0 && incr < min_incr {
        Some(limit(0))
    } else {
        None
    }
}

/// Redis's `checkSignedBitfieldOverflow`, wrapping like the C does (which
/// makes SAT of a SET value far below the minimum saturate to the maximum,
/// as Redis does).
fn signed_overflow(value: i64, incr: i64, bits: u32, ow: Overflow) -> Option<Option<i64>> {
    let max = if bits == 64 { i64::MAX } else { (1i64 << (bits - 1)) - 1 };
    let min = -max - 1;
    let max_incr = (max as u64).wrapping_sub(value as u64) as i64;
    let min_incr = min.wrapping_sub(value);
    let limit = |sat: i64| match ow {
        Overflow::Wrap => {
            let mut c = (value as u64).wrapping_add(incr as u64);
            if bits < 64 {
                let mask = u64::MAX << bits;
                if c & (1u64 << (bits - 1)) != 0 {
                    c |= mask;
                } else {
                    c &= !mask;
                }
            }
            Some(c as i64)
        }
        Overflow::Sat => Some(sat),
        Overflow::Fail => None,
    };
    if value > max || (bits != 64 && incr > max_incr) || (value >= 0 && incr > 0 && incr > max_incr)
    {
        Some(limit(max))
    } else if value < min
        || (bits != 64 && incr < min_incr)
        || (value < 0 && incr < 0 && incr < min_incr)
    {
        Some(limit(min))
    } else {
        None
    }
}

/// Runs one SET or INCRBY on the buffer: the reply (the old value for SET,
/// the new one for INCRBY, nil when FAIL refuses) and whether bits changed.
fn write_field(buf: &mut [u8], op: &FieldOp) -> (Reply, bool) {
    let incr = op.kind == FieldKind::IncrBy;
    if op.signed {
        let old = get_signed(buf, op.offset, op.bits);
        let (check_value, check_incr) = if incr { (old, op.value) } else { (op.value, 0) };
        let new = match signed_overflow(check_value, check_incr, op.bits, op.overflow) {
            Some(None) => return (Reply::Nil, false),
            Some(Some(limit)) => limit,
            None => check_value.wrapping_add(check_incr),
        };
        set_bits(buf, op.offset, op.bits, new as u64);
        (Reply::Int(if incr { new } else { old }), old != new)
    } else {
        let old = get_unsigned(buf, op.offset, op.bits);
        let (check_value, check_incr) = if incr { (old, op.value) } else { (op.value as u64, 0) };
        let new = match unsigned_overflow(check_value, check_incr, op.bits, op.overflow) {
            Some(None) => return (Reply::Nil, false),
            Some(Some(limit)) => limit,
            None => check_value.wrapping_add(check_incr as u64),
        };
        set_bits(buf, op.offset, op.bits, new);
        (Reply::Int((if incr { new } else { old }) as i64), old != new)
    }
}

/// A GET subcommand against `p` (bits past the end read as 0).
fn read_field(p: &[u8], op: &FieldOp) -> Reply {
    if op.signed {
        Reply::Int(get_signed(p, op.offset, op.bits))
    } else {
        Reply::Int(get_unsigned(p, op.offset, op.bits) as i64)
    }
}

/// BITFIELD key [GET encoding offset | [OVERFLOW WRAP | SAT | FAIL]
///   SET encoding offset value | INCRBY encoding offset increment ...]
fn bitfield(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let parsed = parse_bitfield(argv)?;
    let key = &argv[1];
    let Some(highest) = parsed.highest_write else {
        let now = x.now;
        let s = x.db().get_str(key, now)?.cloned().unwrap_or_default();
        return Ok(Reply::Array(parsed.ops.iter().map(|op| read_field(&s, op)).collect()));
    };
    let (replies, changes) = with_bits(x, key, highest, |buf, dirty| {
        let mut changes = 0;
        let replies = parsed
            .ops
            .iter()
            .map(|op| match op.kind {
                FieldKind::Get => read_field(buf, op),
                _ => {
                    let (reply, changed) = write_field(buf, op);
                    if changed || (dirty && reply != Reply::Nil) {
                        changes += 1;
                    }
                    reply
                }
            })
            .collect();
        (replies, changes)
    })?;
    if changes > 0 {
        x.modified(key);
        x.notify(Class::String, "setbit", key);
    }
    Ok(Reply::Array(replies))
}

/// BITFIELD_RO key [GET encoding offset ...]
fn bitfield_ro(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let parsed = parse_bitfield(argv)?;
    if parsed.highest_write.is_some() {
        return Err(Reply::err("ERR BITFIELD_RO only supports the GET subcommand"));
    }
    let s = q.db().get_str(&argv[1], q.now)?.cloned().unwrap_or_default();
    Ok(Reply::Array(parsed.ops.iter().map(|op| read_field(&s, op)).collect()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::*;
    use crate::{Op, Stamp};

    /// Stores binary bytes at `key` (the harness splits text on spaces).
    fn set_raw(h: &mut Harness, key: &str, value: &[u8]) {
        h.index += 1;
        let stamp = Stamp { index: h.index, time_ms: h.now, seed: 0 };
        let argv = vec![
            Bytes::from_static(b"SET"),
            Bytes::copy_from_slice(key.as_bytes()),
            Bytes::copy_from_slice(value),
        ];
        assert_eq!(h.state.apply(&stamp, &Op::Command { db: 0, argv }), Reply::Ok);
    }

    fn ints(v: &[i64]) -> Reply {
        Reply::Array(v.iter().map(|&n| int(n)).collect())
    }

    #[test]
    fn setbit_getbit_and_growth() {
        let mut h = Harness::new();
        assert_eq!(h.run("SETBIT k 7 1"), int(0));
        assert_eq!(h.run("GET k"), Reply::Bulk(Bytes::from_static(b"\x01")));
        assert_eq!(h.run("SETBIT k 7 1"), int(1));
        assert_eq!(h.run("SETBIT k 100 1"), int(0));
        assert_eq!(h.run("STRLEN k"), int(13));
        assert_eq!(h.run("GETBIT k 100"), int(1));
        assert_eq!(h.run("GETBIT k 99999999"), int(0));
        assert_eq!(h.run("SETBIT k 4294967296 1"), err(BIT_OFFSET_ERR));
        assert_eq!(h.run("SETBIT k -1 1"), err(BIT_OFFSET_ERR));
        assert_eq!(h.run("SETBIT k #1 1"), err(BIT_OFFSET_ERR));
        assert_eq!(h.run("SETBIT k 1 2"), err(BIT_VALUE_ERR));
        assert_eq!(h.run("SETBIT k 1 -1"), err(BIT_VALUE_ERR));
        assert_eq!(h.run("OBJECT ENCODING k"), bulk("raw"));
        h.run("SET n 1");
        assert_eq!(h.run("SETBIT n 0 0"), int(0));
        assert_eq!(h.run("OBJECT ENCODING n"), bulk("raw"), "unshared even when unchanged");
    }

    #[test]
    fn setbit_keeps_the_ttl() {
        let mut h = Harness::new();
        h.run("SET k a EX 100");
        h.run("SETBIT k 100 1");
        assert_eq!(h.run("TTL k"), int(100));
    }

    #[test]
    fn bitcount_and_bitpos_ranges() {
        // Replies checked against redis-server 7.0.15.
        let mut h = Harness::new();
        h.run("SET k foobar");
        assert_eq!(h.run("BITCOUNT k"), int(26));
        assert_eq!(h.run("BITCOUNT k 1 1"), int(6));
        assert_eq!(h.run("BITCOUNT k 5 30 BIT"), int(17));
        assert_eq!(h.run("BITCOUNT k -1 -2 bogus"), int(0));
        assert_eq!(h.run("BITCOUNT k 1"), err(errors::SYNTAX));
        assert_eq!(h.run("BITCOUNT missing 1"), int(0));
        set_raw(&mut h, "p", b"\xff\xf0\x00");
        assert_eq!(h.run("BITPOS p 0"), int(12));
        assert_eq!(h.run("BITPOS p 1 2"), int(-1));
        assert_eq!(h.run("BITPOS p 0 0 0"), int(-1));
        assert_eq!(h.run("BITPOS p 1 7 15 BIT"), int(7));
        assert_eq!(h.run("BITPOS p 0 7 11 BIT"), int(-1));
        set_raw(&mut h, "f", b"\xff\xff");
        assert_eq!(h.run("BITPOS f 0"), int(16));
        assert_eq!(h.run("BITPOS f 0 0 -1"), int(-1));
    }

    #[test]
    fn find_bit_matches_a_bit_by_bit_scan() {
        let s: Vec<u8> = (0..40u32).map(|i| (i.wrapping_mul(97) % 7) as u8 * 37).collect();
        let s = [&s[..], &[0xff; 20], &[0; 20], &s[..]].concat();
        let total = s.len() as u64 * 8;
        for lo in (0..total).step_by(5) {
            for hi in (lo..total).step_by(11) {
                for bit in [false, true] {
                    let slow = (lo..=hi)
                        .find(|&i| ((s[(i >> 3) as usize] >> (7 - (i & 7))) & 1 == 1) == bit);
                    assert_eq!(find_bit(&s, bit, lo, hi), slow, "{lo} {hi} {bit}");
                }
            }
        }
    }

    #[test]
    fn bitfield_overflow_semantics() {
        // Replies checked against redis-server 7.0.15.
        let mut h = Harness::new();
        let line = "BITFIELD k INCRBY u2 100 1 OVERFLOW SAT incrby u2 102 1";
        assert_eq!(h.run(line), ints(&[1, 1]));
        assert_eq!(h.run(line), ints(&[2, 2]));
        assert_eq!(h.run(line), ints(&[3, 3]));
        assert_eq!(h.run(line), ints(&[0, 3]));
        assert_eq!(
            h.run("BITFIELD k OVERFLOW FAIL INCRBY i8 0 200 GET i8 0"),
            Reply::Array(vec![Reply::Nil, int(0)])
        );
        assert_eq!(h.run("BITFIELD k2 OVERFLOW SAT SET i8 0 -9223372036854775808"), ints(&[0]));
        assert_eq!(h.run("BITFIELD k2 GET i8 0"), ints(&[127]));
        assert_eq!(h.run("BITFIELD k3 SET i8 #1 -100 GET u8 8 GET i8 #1"), ints(&[0, 156, -100]));
        assert_eq!(h.run("BITFIELD k3 GET u8 #2305843009213693953"), ints(&[156]));
        assert_eq!(h.run("BITFIELD k GET u64 0"), err(BITFIELD_TYPE_ERR));
        assert_eq!(h.run("BITFIELD k GET i65 0"), err(BITFIELD_TYPE_ERR));
        assert_eq!(h.run("BITFIELD k OVERFLOW bogus"), err("ERR Invalid OVERFLOW type specified"));
        assert_eq!(h.run("BITFIELD k GET i8"), err(errors::SYNTAX));
        assert_eq!(
            h.run("BITFIELD_RO k SET i8 0 1"),
            err("ERR BITFIELD_RO only supports the GET subcommand")
        );
        assert_eq!(h.run("BITFIELD k4 SET i64 0 -1 GET i64 0 GET u63 1"), ints(&[0, -1, i64::MAX]));
    }

    #[test]
    fn bitfield_fail_still_creates_the_key() {
        let mut h = Harness::new();
        let reply = h.run("BITFIELD k OVERFLOW FAIL INCRBY u2 0 10");
        assert_eq!(reply, Reply::Array(vec![Reply::Nil]));
        assert_eq!(h.run("STRLEN k"), int(1));
    }

    #[test]
    fn bitop_results_and_deletion() {
        let mut h = Harness::new();
        h.run("SET a abc");
        set_raw(&mut h, "b", b"\x01");
        assert_eq!(h.run("BITOP AND d a b"), int(3));
        assert_eq!(h.run("GET d"), Reply::Bulk(Bytes::from_static(b"\x01\x00\x00")));
        assert_eq!(h.run("BITOP OR d a b"), int(3));
        assert_eq!(h.run("GET d"), bulk("abc"));
        assert_eq!(
            h.run("BITOP NOT d a b"),
            err("ERR BITOP NOT must be called with a single source key.")
        );
        assert_eq!(h.run("BITOP nand d a"), err(errors::SYNTAX));
        assert_eq!(h.run("BITOP XOR d missing other"), int(0));
        assert_eq!(h.run("EXISTS d"), int(0));
    }

    /// The keyspace events of `line` run after `setup`, as "event key".
    pub(crate) fn events(setup: &[&str], line: &str) -> Vec<String> {
        use crate::event::{Event, Notify};
        let mut h = Harness::new();
        h.state.set_notify(Notify(u32::MAX));
        for l in setup {
            h.run(l);
        }
        h.state.take_events();
        h.run(line);
        h.state
            .take_events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Keyspace { event, key, .. } => {
                    Some(format!("{event} {}", String::from_utf8_lossy(&key)))
                }
                _ => None,
            })
            .collect()
    }

    /// Events where Redis 7.0 notifies: "new" when a key is created, the
    /// command's event only when something changed.
    #[test]
    fn events_like_redis() {
        assert_eq!(events(&[], "SETBIT k 3 1"), ["new k", "setbit k"]);
        assert_eq!(events(&["SETBIT k 3 1"], "SETBIT k 3 1"), Vec::<String>::new());
        assert_eq!(events(&["SETBIT k 3 1"], "SETBIT k 100 0"), ["setbit k"], "grown");
        assert_eq!(events(&["SET a x"], "BITOP NOT d a"), ["new d", "set d"]);
        assert_eq!(events(&["SET a x", "SET d y"], "BITOP NOT d a"), ["set d"]);
        assert_eq!(events(&["SET d y"], "BITOP OR d missing"), ["del d"]);
        assert!(events(&[], "BITOP OR d missing").is_empty());
        assert_eq!(events(&[], "BITFIELD k OVERFLOW FAIL INCRBY u2 0 9"), ["new k"]);
        assert_eq!(events(&[], "BITFIELD k SET u8 0 0"), ["new k", "setbit k"]);
        assert!(events(&["BITFIELD k SET u8 0 5"], "BITFIELD k SET u8 0 5").is_empty());
        assert!(events(&["SET k x"], "BITFIELD k GET u8 0").is_empty());
        assert!(events(&["SET k x"], "SETBIT k -1 1").is_empty());
    }

    /// SETBIT and BITFIELD change a string nothing else holds in place: a
    /// bit flip in a large bitmap costs no copy of it.
    #[test]
    fn bit_writes_do_not_copy_an_unshared_string() {
        let mut h = Harness::new();
        h.run("SETBIT big 8000000 1");
        let address = |h: &Harness| match h.state.dbs()[0].get(b"big", h.now) {
            Some(Value::Str(s)) => s.as_ptr(),
            _ => panic!("big is a string"),
        };
        let before = address(&h);
        h.run("SETBIT big 5 1");
        h.run("BITFIELD big INCRBY u8 100 3");
        assert_eq!(address(&h), before);
        // A snapshot of the state shares the bytes: the next write copies
        // them, and the copy taken earlier keeps its value.
        let copy = h.state.clone();
        h.run("SETBIT big 6 1");
        assert_ne!(address(&h), before);
        let get = crate::testing::argv("GETBIT big 6");
        assert_eq!(copy.query(0, &get, h.now, 0), int(0));
        assert_eq!(h.run("GETBIT big 6"), int(1));
    }
}

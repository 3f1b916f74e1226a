//! Listpacks (`listpack.c`): the compact encoding Redis 7.0 serializes small
//! hashes and sorted sets as, and every node of a list's quicklist.
//!
//! A listpack is a 6-byte header (total bytes, u32 LE; number of elements,
//! u16 LE, 65535 when unknown), the entries and a 0xFF terminator. An entry is
//! its encoding (a small integer inline, a 13/16/24/32/64-bit integer, or a
//! string with a 6/12/32-bit length), its data, and its own length again,
//! written backwards in 7-bit groups (the "backlen") so the list can be
//! walked from the end.
//!
//! [`Builder`] writes entries exactly as Redis's `lpAppend` does (a string
//! that is a canonical integer is stored as an integer); [`decode`] reads one
//! with every check of `lpValidateIntegrity` in deep mode, so corrupt input is
//! refused rather than trusted.

/// A listpack entry as stored: a string or an integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    Str(&'a [u8]),
    Int(i64),
}

impl Entry<'_> {
    /// The entry as Redis reads it back as a string (integers in decimal).
    pub fn to_bytes(self) -> bytes::Bytes {
        match self {
            Entry::Str(s) => bytes::Bytes::copy_from_slice(s),
            Entry::Int(n) => crate::args::int_bytes(n),
        }
    }
}

const HDR_SIZE: usize = 6;
const NUMELE_UNKNOWN: usize = u16::MAX as usize;
const EOF: u8 = 0xFF;

/// Builds a listpack by appending, like repeated `lpAppend`.
#[derive(Clone, Debug, Default)]
pub struct Builder {
    entries: Vec<u8>,
    count: usize,
}

/// Redis's `lpEncodeBacklen`: the entry length, high bits first, every byte
/// but the first flagged with 128.
fn push_backlen(out: &mut Vec<u8>, l: usize) {
    let l = l as u64;
    if l <= 127 {
        out.push(l as u8);
    } else if l < 16383 {
        out.extend_from_slice(&[(l >> 7) as u8, (l & 127) as u8 | 128]);
    } else if l < 2_097_151 {
        out.extend_from_slice(&[
            (l >> 14) as u8,
            ((l >> 7) & 127) as u8 | 128,
            (l & 127) as u8 | 128,
        ]);
    } else if l < 268_435_455 {
        out.extend_from_slice(&[
            (l >> 21) as u8,
            ((l >> 14) & 127) as u8 | 128,
            ((l >> 7) & 127) as u8 | 128,
            (l & 127) as u8 | 128,
        ]);
    } else {
        out.extend_from_slice(&[
            (l >> 28) as u8,
            ((l >> 21) & 127) as u8 | 128,
            ((l >> 14) & 127) as u8 | 128,
            ((l >> 7) & 127) as u8 | 128,
            (l & 127) as u8 | 128,
        ]);
    }
}

/// The number of bytes `push_backlen` writes for `l`.
fn backlen_size(l: u64) -> usize {
    match l {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    }
}

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    /// The size of the listpack built so far (`lpBytes`).
    pub fn bytes(&self) -> usize {
        HDR_SIZE + self.entries.len() + 1
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a string, as an integer if it is one (`lpAppend`).
    pub fn push(&mut self, s: &[u8]) {
        match crate::args::parse_i64(s) {
            Some(n) => self.push_int(n),
            None => self.push_str(s),
        }
    }

    /// Appends a string entry.
    fn push_str(&mut self, s: &[u8]) {
        let start = self.entries.len();
        let len = s.len();
        if len < 64 {
            self.entries.push(0x80 | len as u8);
        } else if len < 4096 {
            self.entries.extend_from_slice(&[0xE0 | (len >> 8) as u8, (len & 0xff) as u8]);
        } else {
            self.entries.push(0xF0);
            self.entries.extend_from_slice(&(len as u32).to_le_bytes());
        }
        self.entries.extend_from_slice(s);
        let entry_len = self.entries.len() - start;
        push_backlen(&mut self.entries, entry_len);
        self.count += 1;
    }

    /// Appends an integer entry (`lpAppendInteger`).
    pub fn push_int(&mut self, v: i64) {
        let start = self.entries.len();
        let e = &mut self.entries;
        if (0..=127).contains(&v) {
            e.push(v as u8);
        } else if (-4096..=4095).contains(&v) {
            let u = if v < 0 { (1i64 << 13) + v } else { v } as u64;
            e.extend_from_slice(&[(u >> 8) as u8 | 0xC0, (u & 0xff) as u8]);
        } else if (-32768..=32767).contains(&v) {
            e.push(0xF1);
            e.extend_from_slice(&(v as i16).to_le_bytes());
        } else if (-8_388_608..=8_388_607).contains(&v) {
            e.push(0xF2);
            e.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
        } else if (-2_147_483_648..=2_147_483_647).contains(&v) {
            e.push(0xF3);
            e.extend_from_slice(&(v as i32).to_le_bytes());
        } else {
            e.push(0xF4);
            e.extend_from_slice(&v.to_le_bytes());
        }
        let entry_len = self.entries.len() - start;
        push_backlen(&mut self.entries, entry_len);
        self.count += 1;
    }

    /// The finished listpack.
    pub fn finish(&self) -> Vec<u8> {
        let total = self.bytes();
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&(total as u32).to_le_bytes());
        let count = self.count.min(NUMELE_UNKNOWN) as u16;
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&self.entries);
        out.push(EOF);
        out
    }
}

/// The encoded size of the entry at `p` (encoding, length bytes and data,
/// without the backlen), or `None` for an invalid encoding byte.
/// `lpCurrentEncodedSizeBytes` and `lpCurrentEncodedSizeUnsafe`, bounds
/// checked: the length bytes must be inside `lp`.
fn entry_size(lp: &[u8], p: usize) -> Option<(u64, Entry<'_>)> {
    let b = lp[p];
    let byte = |i: usize| lp.get(p + i).copied();
    let sign = |u: u64, bits: u32| -> i64 {
        // Two's complement of a `bits`-wide value.
        let shift = 64 - bits;
        ((u << shift) as i64) >> shift
    };
    let int = |n: usize| -> Option<u64> {
        let mut v = 0u64;
        for i in 0..n {
            v |= u64::from(byte(1 + i)?) << (8 * i);
        }
        Some(v)
    };
    Some(if b & 0x80 == 0 {
        (1, Entry::Int(i64::from(b & 0x7f)))
    } else if b & 0xC0 == 0x80 {
        let len = usize::from(b & 0x3f);
        (1 + len as u64, Entry::Str(lp.get(p + 1..p + 1 + len).unwrap_or(&[])))
    } else if b & 0xE0 == 0xC0 {
        let u = (u64::from(b & 0x1f) << 8) | u64::from(byte(1)?);
        (2, Entry::Int(sign(u, 13)))
    } else if b == 0xF1 {
        (3, Entry::Int(sign(int(2)?, 16)))
    } else if b == 0xF2 {
        (4, Entry::Int(sign(int(3)?, 24)))
    } else if b == 0xF3 {
        (5, Entry::Int(sign(int(4)?, 32)))
    } else if b == 0xF4 {
        (9, Entry::Int(int(8)? as i64))
    } else if b & 0xF0 == 0xE0 {
        let len = (usize::from(b & 0x0f) << 8) | usize::from(byte(1)?);
        (2 + len as u64, Entry::Str(lp.get(p + 2..p + 2 + len).unwrap_or(&[])))
    } else if b == 0xF0 {
        let len = int(4)? as usize;
        (
            5 + len as u64,
            Entry::Str(lp.get(p + 5..p.saturating_add(5).saturating_add(len)).unwrap_or(&[])),
        )
    } else {
        return None;
    })
}

/// Redis's `lpDecodeBacklen` reading backwards from `p`: `None` past five
/// bytes or before the start.
fn decode_backlen(lp: &[u8], mut p: usize) -> Option<u64> {
    let mut val = 0u64;
    let mut shift = 0u32;
    loop {
        val |= u64::from(lp[p] & 127) << shift;
        if lp[p] & 128 == 0 {
            return Some(val);
        }
        shift += 7;
        p = p.checked_sub(1)?;
        if shift > 28 {
            return None;
        }
    }
}

/// Decodes a whole listpack, checking it like `lpValidateIntegrity` with
/// `deep`: the header's size, the terminator, every entry's encoding and
/// backlen, and the header's count. `None` if anything is off.
pub fn decode(lp: &[u8]) -> Option<Vec<Entry<'_>>> {
    let size = lp.len();
    if size < HDR_SIZE + 1 {
        return None;
    }
    let total = u32::from_le_bytes(lp[0..4].try_into().ok()?) as usize;
    if total != size || lp[size - 1] != EOF {
        return None;
    }
    let numele = usize::from(u16::from_le_bytes([lp[4], lp[5]]));
    let last = size - 1; // the terminator: no entry may reach past it
    let mut out = Vec::with_capacity(numele.min(size));
    let mut p = HDR_SIZE;
    while lp[p] != EOF {
        let (encoded, entry) = entry_size(lp, p)?;
        // The encoding and length bytes must be inside (`lpCurrentEncodedSizeBytes`).
        let header = match lp[p] {
            b if b & 0xF0 == 0xE0 => 2,
            0xF0 => 5,
            _ => 1,
        };
        if p + header > last {
            return None;
        }
        let back = backlen_size(encoded) as u64;
        let entry_len = encoded.checked_add(back)?;
        let end = (p as u64).checked_add(entry_len)?;
        if end > last as u64 {
            return None;
        }
        let next = end as usize;
        if decode_backlen(lp, next - 1)?.checked_add(back)? != entry_len {
            return None;
        }
        out.push(entry);
        p = next;
    }
    if p != last {
        return None;
    }
    if numele != NUMELE_UNKNOWN && numele != out.len() {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip() {
        let mut b = Builder::new();
        let long = vec![b'x'; 5000];
        let mid = vec![b'y'; 100];
        let values: Vec<Vec<u8>> = vec![
            b"0".to_vec(),
            b"127".to_vec(),
            b"128".to_vec(),
            b"-1".to_vec(),
            b"-4096".to_vec(),
            b"4095".to_vec(),
            b"4096".to_vec(),
            b"-32768".to_vec(),
            b"8388607".to_vec(),
            b"-8388609".to_vec(),
            b"2147483647".to_vec(),
            b"-9223372036854775808".to_vec(),
            b"9223372036854775807".to_vec(),
            b"-0".to_vec(),
            b"007".to_vec(),
            b"".to_vec(),
            b"hello".to_vec(),
            mid.clone(),
            long.clone(),
        ];
        for v in &values {
            b.push(v);
        }
        let lp = b.finish();
        assert_eq!(lp.len(), b.bytes());
        let decoded = decode(&lp).expect("valid");
        let back: Vec<Vec<u8>> = decoded.into_iter().map(|e| e.to_bytes().to_vec()).collect();
        assert_eq!(back, values);
    }

    #[test]
    fn known_bytes() {
        // HSET h a 1 in redis-server 7.0.15 dumps this listpack.
        let mut b = Builder::new();
        b.push(b"a");
        b.push(b"1");
        assert_eq!(b.finish(), vec![0x0c, 0, 0, 0, 0x02, 0x00, 0x81, b'a', 0x02, 0x01, 0x01, 0xff]);
    }

    #[test]
    fn corruption_is_refused() {
        let mut b = Builder::new();
        b.push(b"abc");
        b.push(b"12345");
        let lp = b.finish();
        assert!(decode(&lp).is_some());
        for i in 0..lp.len() {
            for v in [0u8, 1, 0x7f, 0x80, 0xc0, 0xe0, 0xf0, 0xf4, 0xf5, 0xff] {
                let mut bad = lp.clone();
                bad[i] = v;
                // Never panics; a change either still decodes or is refused.
                let _ = decode(&bad);
            }
        }
        assert!(decode(&lp[..lp.len() - 1]).is_none());
        let mut wrong_count = lp.clone();
        wrong_count[4] = 3;
        assert!(decode(&wrong_count).is_none());
    }
}

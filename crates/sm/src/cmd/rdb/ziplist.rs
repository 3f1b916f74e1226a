//! Ziplists and zipmaps: the encodings of Redis before 7.0 (lists, hashes
//! and sorted sets up to 6.2, hashes up to 2.4). Redis 7.0 never writes them,
//! but RESTORE accepts payloads of older RDB versions, which hold them. Only
//! decoders are needed, each with the deep checks of
//! `ziplistValidateIntegrity` and `zipmapValidateIntegrity`.
//!
//! A ziplist is a header (total bytes u32 LE, offset of the last entry u32
//! LE, count u16 LE), entries, and 0xFF. An entry is the previous entry's
//! length (1 byte, or 0xFE and a u32 LE), an encoding (a string with a
//! 6/14/32-bit length, the 32-bit one big-endian, or an 8/16/24/32/64-bit
//! integer, or a 4-bit immediate 0..12) and its data.

use super::listpack::Entry;

const HEADER_SIZE: usize = 10;
const END: u8 = 0xFF;
const BIG_PREVLEN: u8 = 0xFE;

const STR_06B: u8 = 0x00;
const STR_14B: u8 = 0x40;
const STR_32B: u8 = 0x80;
const INT_16B: u8 = 0xC0;
const INT_32B: u8 = 0xD0;
const INT_64B: u8 = 0xE0;
const INT_24B: u8 = 0xF0;
const INT_8B: u8 = 0xFE;
const INT_IMM_MIN: u8 = 0xF1;
const INT_IMM_MAX: u8 = 0xFD;

/// `zipEncodingLenSize`: bytes of encoding and length, `None` if invalid.
fn encoding_len_size(encoding: u8) -> Option<usize> {
    match encoding {
        INT_16B | INT_32B | INT_24B | INT_64B | INT_8B => Some(1),
        INT_IMM_MIN..=INT_IMM_MAX => Some(1),
        STR_06B => Some(1),
        STR_14B => Some(2),
        STR_32B => Some(5),
        _ => None,
    }
}

/// Decodes a ziplist with every deep check of `ziplistValidateIntegrity`.
pub fn decode(zl: &[u8]) -> Option<Vec<Entry<'_>>> {
    let size = zl.len();
    if size < HEADER_SIZE + 1 {
        return None;
    }
    let bytes = u32::from_le_bytes(zl[0..4].try_into().ok()?) as usize;
    if bytes != size || zl[size - 1] != END {
        return None;
    }
    let tail = u32::from_le_bytes(zl[4..8].try_into().ok()?) as usize;
    if tail > size - 1 {
        return None;
    }
    let header_count = usize::from(u16::from_le_bytes([zl[8], zl[9]]));
    let last = size - 1;
    let out_of_range = |p: usize| p < HEADER_SIZE || p > last;
    let mut out = Vec::new();
    let mut p = HEADER_SIZE;
    let mut prev: Option<usize> = None;
    let mut prev_raw_size = 0usize;
    while zl[p] != END {
        // zipEntrySafe, validating the previous length too.
        let prevlensize = if zl[p] < BIG_PREVLEN { 1 } else { 5 };
        if out_of_range(p + prevlensize) {
            return None;
        }
        let mut encoding = zl[p + prevlensize];
        if encoding < 0xC0 {
            encoding &= 0xC0;
        }
        let lensize = encoding_len_size(encoding)?;
        if out_of_range(p + prevlensize + lensize) {
            return None;
        }
        let prevlen = if prevlensize == 1 {
            usize::from(zl[p])
        } else {
            u32::from_le_bytes(zl[p + 1..p + 5].try_into().ok()?) as usize
        };
        let e = p + prevlensize;
        let len = match encoding {
            STR_06B => usize::from(zl[e] & 0x3f),
            STR_14B => (usize::from(zl[e] & 0x3f) << 8) | usize::from(zl[e + 1]),
            STR_32B => u32::from_be_bytes(zl[e + 1..e + 5].try_into().ok()?) as usize,
            INT_8B => 1,
            INT_16B => 2,
            INT_24B => 3,
            INT_32B => 4,
            INT_64B => 8,
            _ => 0, // 4-bit immediate
        };
        let headersize = prevlensize + lensize;
        let end = p.checked_add(headersize)?.checked_add(len)?;
        if out_of_range(end) || p < HEADER_SIZE + prevlen {
            return None;
        }
        if prevlen != prev_raw_size {
            return None;
        }
        let data = &zl[p + headersize..end];
        let entry = match encoding {
            STR_06B | STR_14B | STR_32B => Entry::Str(data),
            INT_8B => Entry::Int(i64::from(data[0] as i8)),
            INT_16B => Entry::Int(i64::from(i16::from_le_bytes(data.try_into().ok()?))),
            INT_24B => {
                let u = u32::from(data[0]) | u32::from(data[1]) << 8 | u32::from(data[2]) << 16;
                Entry::Int(i64::from(((u << 8) as i32) >> 8))
            }
            INT_32B => Entry::Int(i64::from(i32::from_le_bytes(data.try_into().ok()?))),
            INT_64B => Entry::Int(i64::from_le_bytes(data.try_into().ok()?)),
            imm => Entry::Int(i64::from(imm & 0x0f) - 1),
        };
        out.push(entry);
        prev_raw_size = headersize + len;
        prev = Some(p);
        p = end;
    }
    if p != last {
        return None;
    }
    if prev.is_some_and(|prev| prev != tail) {
        return None;
    }
    if header_count != usize::from(u16::MAX) && out.len() != header_count {
        return None;
    }
    Some(out)
}

const ZIPMAP_BIGLEN: u8 = 254;
const ZIPMAP_END: u8 = 255;

/// Decodes a zipmap (a Redis 2.4 hash) into field/value pairs, with the deep
/// checks of `zipmapValidateIntegrity`.
pub fn decode_zipmap(zm: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let size = zm.len();
    if size < 2 || zm[size - 1] != ZIPMAP_END {
        return None;
    }
    let out_of_range = |p: usize| p < 2 || p > size - 1;
    let length = |p: usize| -> Option<(usize, usize)> {
        if zm[p] < ZIPMAP_BIGLEN {
            Some((usize::from(zm[p]), 1))
        } else {
            let b: [u8; 4] = zm.get(p + 1..p + 5)?.try_into().ok()?;
            Some((u32::from_le_bytes(b) as usize, 5))
        }
    };
    let mut out = Vec::new();
    let mut p = 1;
    while zm[p] != ZIPMAP_END {
        let s = if zm[p] < ZIPMAP_BIGLEN { 1 } else { 5 };
        if out_of_range(p + s) {
            return None;
        }
        let (flen, _) = length(p)?;
        let field_at = p + s;
        p = field_at.checked_add(flen)?;
        if out_of_range(p) {
            return None;
        }
        let s = if zm[p] < ZIPMAP_BIGLEN { 1 } else { 5 };
        if out_of_range(p + s) {
            return None;
        }
        let (vlen, _) = length(p)?;
        p += s;
        let free = usize::from(zm[p]);
        p += 1;
        let value_at = p;
        p = p.checked_add(vlen)?.checked_add(free)?;
        if out_of_range(p) {
            return None;
        }
        out.push((&zm[field_at..field_at + flen], &zm[value_at..value_at + vlen]));
    }
    if out.is_empty() {
        return None;
    }
    if zm[0] != ZIPMAP_BIGLEN && usize::from(zm[0]) != out.len() {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ziplist of "a", 12, -2, 1000 and 70000, as Redis 6.2 wrote one.
    fn sample() -> Vec<u8> {
        let entries: Vec<Vec<u8>> = vec![
            vec![0x01, b'a'],                // 6-bit string
            vec![0xfd],                      // immediate 12
            vec![INT_8B, 0xfe],              // -2
            vec![INT_16B, 0xe8, 0x03],       // 1000
            vec![INT_24B, 0x70, 0x11, 0x01], // 70000
        ];
        let mut body = Vec::new();
        let mut prevlen = 0usize;
        let mut tail = 0;
        for e in &entries {
            tail = HEADER_SIZE + body.len();
            body.push(prevlen as u8);
            body.extend_from_slice(e);
            prevlen = 1 + e.len();
        }
        let total = HEADER_SIZE + body.len() + 1;
        let mut zl = Vec::new();
        zl.extend_from_slice(&(total as u32).to_le_bytes());
        zl.extend_from_slice(&(tail as u32).to_le_bytes());
        zl.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        zl.extend_from_slice(&body);
        zl.push(END);
        zl
    }

    #[test]
    fn decodes_every_encoding() {
        let zl = sample();
        let got = decode(&zl).expect("valid");
        assert_eq!(
            got,
            vec![
                Entry::Str(b"a"),
                Entry::Int(12),
                Entry::Int(-2),
                Entry::Int(1000),
                Entry::Int(70000)
            ]
        );
    }

    #[test]
    fn corruption_is_refused_without_panics() {
        let zl = sample();
        for i in 0..zl.len() {
            for v in [0u8, 1, 0x3f, 0x40, 0x80, 0xc0, 0xf0, 0xfe, 0xff] {
                let mut bad = zl.clone();
                bad[i] = v;
                let _ = decode(&bad);
            }
        }
        let mut bad_tail = zl.clone();
        bad_tail[4] = 10;
        assert!(decode(&bad_tail).is_none());
        assert!(decode(&zl[..zl.len() - 1]).is_none());
    }

    #[test]
    fn zipmaps() {
        // 2 pairs: "f" -> "v" (1 free byte), "g" -> "ww".
        let zm = [2, 1, b'f', 1, 1, b'v', 0, 1, b'g', 2, 0, b'w', b'w', ZIPMAP_END];
        let got = decode_zipmap(&zm).expect("valid");
        assert_eq!(got, vec![(&b"f"[..], &b"v"[..]), (&b"g"[..], &b"ww"[..])]);
        for i in 0..zm.len() {
            for v in [0u8, 1, 5, 253, 254, 255] {
                let mut bad = zm;
                bad[i] = v;
                let _ = decode_zipmap(&bad);
            }
        }
        assert!(decode_zipmap(&[0, ZIPMAP_END]).is_none(), "empty");
    }
}

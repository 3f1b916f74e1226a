//! LZF, as Redis 7.0 compresses and decompresses RDB strings (`lzf_c.c`,
//! `lzf_d.c`, liblzf 3.6 with Redis's settings: `HLOG` 16, `VERY_FAST`,
//! no `ULTRA_FAST`).
//!
//! DUMP must produce Redis's bytes, so [`compress`] is the reference
//! compressor step for step: the same hash, the same match search (including
//! the unrolled loop that may extend a match to the last two bytes) and the
//! same two table updates after a match. Redis leaves the hash table
//! uninitialised, but only accepts a table entry that points before the
//! current position inside the input and matches three bytes; an empty table
//! gives the output Redis gives for every input we have compared.
//!
//! Format: `000LLLLL` + L+1 literal bytes; `LLLooooo oooooooo` a back
//! reference of L+2 bytes (L < 7) at distance o+1; `111ooooo LLLLLLLL
//! oooooooo` one of L+9 bytes.

const HLOG: u32 = 16;
const HSIZE: usize = 1 << HLOG;
const MAX_LIT: usize = 1 << 5;
const MAX_OFF: usize = 1 << 13;
const MAX_REF: usize = (1 << 8) + (1 << 3);

/// Compresses `input` into at most `out_len` bytes, or `None` if it does not
/// fit (Redis's `lzf_compress` returning 0).
pub fn compress(input: &[u8], out_len: usize) -> Option<Vec<u8>> {
    let in_len = input.len();
    if in_len == 0 || out_len == 0 {
        return None;
    }
    let first = |p: usize| -> u32 { (u32::from(input[p]) << 8) | u32::from(input[p + 1]) };
    let next = |v: u32, p: usize| -> u32 { (v << 8) | u32::from(input[p + 2]) };
    let idx = |h: u32| -> usize {
        ((h >> (3 * 8 - HLOG)).wrapping_sub(h.wrapping_mul(5)) as usize) & (HSIZE - 1)
    };
    // Positions, usize::MAX for an empty slot (a NULL pointer).
    let mut htab = vec![usize::MAX; HSIZE];
    // A little slack: the run header is reserved one past the last byte.
    let mut out = vec![0u8; out_len + 4];
    let mut ip = 0usize;
    let mut op = 1usize; // start a literal run
    let mut lit = 0usize;
    let mut hval = if in_len >= 2 { first(0) } else { 0 };

    while ip + 2 < in_len {
        hval = next(hval, ip);
        let slot = idx(hval);
        let r = htab[slot];
        htab[slot] = ip;
        let is_match = r != usize::MAX
            && r < ip
            && ip - r - 1 < MAX_OFF
            && r > 0
            && input[r + 2] == input[ip + 2]
            && input[r] == input[ip]
            && input[r + 1] == input[ip + 1];
        if is_match {
            let off = ip - r - 1;
            let mut len = 2usize;
            let maxlen = (in_len - ip - len).min(MAX_REF);
            if op + 3 + 1 >= out_len && op - usize::from(lit == 0) + 3 + 1 >= out_len {
                return None;
            }
            out[op - lit - 1] = (lit as u8).wrapping_sub(1); // stop the run
            op -= usize::from(lit == 0); // undo an empty run
            'search: {
                if maxlen > 16 {
                    for _ in 0..16 {
                        len += 1;
                        if input[r + len] != input[ip + len] {
                            break 'search;
                        }
                    }
                }
                loop {
                    len += 1;
                    if !(len < maxlen && input[r + len] == input[ip + len]) {
                        break;
                    }
                }
            }
            len -= 2; // now the number of octets - 1
            ip += 1;
            if len < 7 {
                out[op] = ((off >> 8) + (len << 5)) as u8;
                op += 1;
            } else {
                out[op] = ((off >> 8) + (7 << 5)) as u8;
                out[op + 1] = (len - 7) as u8;
                op += 2;
            }
            out[op] = off as u8;
            op += 1;
            lit = 0;
            op += 1; // start a run
            ip += len + 1;
            if ip + 2 >= in_len {
                break;
            }
            ip -= 2;
            hval = first(ip);
            hval = next(hval, ip);
            htab[idx(hval)] = ip;
            ip += 1;
            hval = next(hval, ip);
            htab[idx(hval)] = ip;
            ip += 1;
        } else {
            if op >= out_len {
                return None;
            }
            lit += 1;
            out[op] = input[ip];
            op += 1;
            ip += 1;
            if lit == MAX_LIT {
                out[op - lit - 1] = (lit - 1) as u8;
                lit = 0;
                op += 1;
            }
        }
    }
    if op + 3 > out_len {
        return None;
    }
    while ip < in_len {
        lit += 1;
        out[op] = input[ip];
        op += 1;
        ip += 1;
        if lit == MAX_LIT {
            out[op - lit - 1] = (lit - 1) as u8;
            lit = 0;
            op += 1;
        }
    }
    out[op - lit - 1] = (lit as u8).wrapping_sub(1);
    op -= usize::from(lit == 0);
    out.truncate(op);
    Some(out)
}

/// Decompresses `input`, which must expand to at most `out_len` bytes;
/// returns what it produced, or `None` for corrupt input (Redis's
/// `lzf_decompress` returning 0). The caller checks the length.
pub fn decompress(input: &[u8], out_len: usize) -> Option<Vec<u8>> {
    // Grown as needed: the declared size is not trusted for the allocation.
    let mut out: Vec<u8> = Vec::with_capacity(out_len.min(input.len().saturating_mul(4)));
    let mut ip = 0usize;
    while ip < input.len() {
        let ctrl = usize::from(input[ip]);
        ip += 1;
        if ctrl < (1 << 5) {
            let n = ctrl + 1;
            if out.len() + n > out_len || ip + n > input.len() {
                return None;
            }
            out.extend_from_slice(&input[ip..ip + n]);
            ip += n;
        } else {
            let mut len = ctrl >> 5;
            let mut back = (ctrl & 0x1f) << 8;
            if ip >= input.len() {
                return None;
            }
            if len == 7 {
                len += usize::from(input[ip]);
                ip += 1;
                if ip >= input.len() {
                    return None;
                }
            }
            back += usize::from(input[ip]);
            ip += 1;
            if out.len() + len + 2 > out_len {
                return None;
            }
            // The reference starts `back + 1` bytes before the output's end.
            let start = out.len().checked_sub(back + 1)?;
            // Byte by byte: the source may overlap what is being written.
            for i in 0..len + 2 {
                let b = out[start + i];
                out.push(b);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let samples: Vec<Vec<u8>> = vec![
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec(),
            b"abcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabc".to_vec(),
            (0..5000u32).flat_map(|i| (i % 251).to_le_bytes()).collect(),
            (0..3000u32).map(|i| (i * 7 % 13) as u8).collect(),
            b"hello world, hello world, hello world!".to_vec(),
        ];
        for s in samples {
            let c = compress(&s, s.len() - 4).expect("compressible");
            assert!(c.len() < s.len() - 4);
            assert_eq!(decompress(&c, s.len()).as_deref(), Some(&s[..]));
        }
    }

    #[test]
    fn incompressible_input_does_not_fit() {
        let s: Vec<u8> = (0..64u8).collect();
        assert_eq!(compress(&s, s.len() - 4), None);
    }

    #[test]
    fn known_redis_output() {
        // The compressed parts of DUMP payloads from redis-server 7.0.15.
        let s = vec![b'a'; 100];
        let c = compress(&s, s.len() - 4).unwrap();
        assert_eq!(c, vec![0x01, 0x61, 0x61, 0xe0, 0x57, 0x00, 0x01, 0x61, 0x61]);
        let s = b"hello world, hello world, hello world!";
        let c = compress(s, s.len() - 4).unwrap();
        let mut want = vec![0x0d];
        want.extend_from_slice(b"hello world, h");
        want.extend_from_slice(&[0xe0, 0x0d, 0x0c, 0x01, 0x64, 0x21]);
        assert_eq!(c, want);
    }

    #[test]
    fn corrupt_input_is_refused() {
        assert_eq!(decompress(&[0x05, b'a'], 10), None, "literal past the input");
        assert_eq!(decompress(&[0x20, 0x00], 10), None, "reference before the output");
        assert_eq!(decompress(&[0x00, b'a', 0xe0], 10), None, "truncated reference");
        assert_eq!(decompress(&[0x01, b'a', b'b'], 1), None, "output too small");
    }
}

//! Floating-point parsing and formatting exactly as Redis 7.0 does it.
//!
//! Doubles are parsed with C `strtod` (Redis accepts `inf`, `1e3`, hex floats and
//! rejects NaN, leading spaces and out-of-range values) and printed with `%.17g`
//! (so `1.1` reads back as `1.1000000000000001`, as Redis 7.0 prints it).
//! INCRBYFLOAT and HINCRBYFLOAT compute in C `long double`. The C side lives in
//! `csrc/numfmt.c`; everything here is pure and deterministic for a given
//! architecture (see ARCHITECTURE.md on mixed-architecture clusters).

use std::ffi::c_char;

use bytes::Bytes;

extern "C" {
    fn raftcache_parse_double(s: *const c_char, len: usize, out: *mut f64) -> i32;
    fn raftcache_classify_long_double(s: *const c_char, len: usize) -> i32;
    fn raftcache_ld_add(
        cur: *const c_char,
        cur_len: usize,
        incr: *const c_char,
        incr_len: usize,
        out: *mut c_char,
        out_len: usize,
    ) -> i32;
}

/// Longest text the C side handles, like Redis's `MAX_LONG_DOUBLE_CHARS`.
const MAX_LONG_DOUBLE_CHARS: usize = 5 * 1024;

/// Parses a double like Redis's `getDoubleFromObject`; `None` if it is not one.
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    // Fast path for plain integers, which is what most scores are.
    if !s.is_empty() && s.len() <= 15 && s.iter().all(u8::is_ascii_digit) {
        let mut n: u64 = 0;
        for &c in s {
            n = n * 10 + u64::from(c - b'0');
        }
        return Some(n as f64);
    }
    if s.is_empty() || s.len() >= MAX_LONG_DOUBLE_CHARS {
        return None;
    }
    let mut out = 0f64;
    // SAFETY: the pointer and length describe a live slice; the C side copies
    // at most `len` bytes and writes only to `out`.
    let ok = unsafe { raftcache_parse_double(s.as_ptr().cast(), s.len(), &mut out) };
    (ok == 1).then_some(out)
}

/// How a text parses as a C `long double`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongDouble {
    Invalid,
    Finite,
    Infinite,
}

/// Classifies a text like Redis's `getLongDoubleFromObject` would parse it.
pub fn classify_long_double(s: &[u8]) -> LongDouble {
    // SAFETY: as in `parse_f64`; the C side only reads `len` bytes.
    match unsafe { raftcache_classify_long_double(s.as_ptr().cast(), s.len()) } {
        1 => LongDouble::Finite,
        2 => LongDouble::Infinite,
        _ => LongDouble::Invalid,
    }
}

/// Why a long-double addition failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddError {
    /// The current value is not a float.
    CurrentNotFloat,
    /// The increment is not a float.
    IncrementNotFloat,
    /// The sum is NaN or infinite.
    NanOrInfinity,
}

/// `cur + incr` in long double, printed like Redis's `ld2string(LD_STR_HUMAN)`.
pub fn long_double_add(cur: &[u8], incr: &[u8]) -> Result<Bytes, AddError> {
    let mut out = vec![0u8; MAX_LONG_DOUBLE_CHARS];
    // SAFETY: all three buffers are live for the call; the C side writes at most
    // `out.len()` bytes into `out` (snprintf with that bound).
    let n = unsafe {
        raftcache_ld_add(
            cur.as_ptr().cast(),
            cur.len(),
            incr.as_ptr().cast(),
            incr.len(),
            out.as_mut_ptr().cast(),
            out.len(),
        )
    };
    match n {
        -1 => Err(AddError::CurrentNotFloat),
        -2 => Err(AddError::IncrementNotFloat),
        n if n > 0 => {
            out.truncate(n as usize);
            Ok(Bytes::from(out))
        }
        // -3 (NaN/inf) and -4 (cannot print, only for infinities) read the same.
        _ => Err(AddError::NanOrInfinity),
    }
}

/// Formats a double like C's `printf("%.17g")`, as Redis 7.0's `addReplyDouble`
/// does (`inf` and `-inf` for infinities).
pub fn format_g17(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if d.is_nan() {
        return "nan".into();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    // `{:.16e}` rounds to 17 significant digits exactly as printf does.
    let sci = format!("{:.16e}", d);
    let (mantissa, exp) = sci.split_once('e').expect("exponent in {:e} output");
    let exp: i32 = exp.parse().expect("integer exponent");
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::with_capacity(24);
    if negative {
        out.push('-');
    }
    if !(-4..17).contains(&exp) {
        // Exponential form: d.ddde±XX, trailing zeros removed.
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        let rest = rest.trim_end_matches('0');
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let abs = exp.unsigned_abs();
        if abs < 10 {
            out.push('0');
        }
        out.push_str(&abs.to_string());
    } else if exp >= 0 {
        let split = (exp + 1) as usize;
        let (int, frac) = digits.split_at(split);
        out.push_str(int);
        let frac = frac.trim_end_matches('0');
        if !frac.is_empty() {
            out.push('.');
            out.push_str(frac);
        }
    } else {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(digits.trim_end_matches('0'));
    }
    out
}

/// Formats a double the way Redis stores a zset score or replies to
/// ZINCRBY: `%.17g`, as bytes.
pub fn g17_bytes(d: f64) -> Bytes {
    Bytes::from(format_g17(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g17_matches_printf() {
        let cases: &[(f64, &str)] = &[
            (1.1, "1.1000000000000001"),
            (1.0, "1"),
            (0.5, "0.5"),
            (-2.5, "-2.5"),
            (100.0, "100"),
            (1e17, "1e+17"),
            (1e16, "10000000000000000"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            (3.0e-5, "3.0000000000000001e-05"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (0.0, "0"),
            (-0.0, "-0"),
            (1.5e300, "1.5000000000000001e+300"),
        ];
        for (d, want) in cases {
            assert_eq!(format_g17(*d), *want, "formatting {d:e}");
        }
    }

    #[test]
    fn parses_like_strtod() {
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"inf"), Some(f64::INFINITY));
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"+inf"), Some(f64::INFINITY));
        assert_eq!(parse_f64(b"1e3"), Some(1000.0));
        assert_eq!(parse_f64(b"0x10"), Some(16.0));
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(parse_f64(b" 1"), None);
        assert_eq!(parse_f64(b"1 "), None);
        assert_eq!(parse_f64(b""), None);
        assert_eq!(parse_f64(b"abc"), None);
        assert_eq!(parse_f64(b"1e400"), None);
        assert_eq!(parse_f64(b"12"), Some(12.0));
    }

    #[test]
    fn long_double_sums_like_redis() {
        assert_eq!(long_double_add(b"10.5", b"0.1").unwrap(), "10.6");
        assert_eq!(long_double_add(b"1.1", b"2.2").unwrap(), "3.3");
        assert_eq!(long_double_add(b"0", b"5.0e3").unwrap(), "5000");
        assert_eq!(long_double_add(b"3", b"-3").unwrap(), "0");
        assert_eq!(long_double_add(b"abc", b"1"), Err(AddError::CurrentNotFloat));
        assert_eq!(long_double_add(b"1", b"x"), Err(AddError::IncrementNotFloat));
        assert_eq!(long_double_add(b"1", b"inf"), Err(AddError::NanOrInfinity));
        assert_eq!(classify_long_double(b"inf"), LongDouble::Infinite);
        assert_eq!(classify_long_double(b"1.5"), LongDouble::Finite);
        assert_eq!(classify_long_double(b"nan"), LongDouble::Invalid);
    }

    #[test]
    fn an_embedded_nul_is_not_a_number() {
        // redis-server 7.0.15: INCRBYFLOAT on "1\x002" is "value is not a
        // valid float" and leaves the value alone.
        assert_eq!(long_double_add(b"1\x002", b"1"), Err(AddError::CurrentNotFloat));
        assert_eq!(long_double_add(b"1", b"1\x00"), Err(AddError::IncrementNotFloat));
        assert_eq!(classify_long_double(b"1\x00"), LongDouble::Invalid);
        assert_eq!(parse_f64(b"1\x00"), None);
    }
}

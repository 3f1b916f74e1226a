//! Parsing command arguments with Redis's exact rules.
//!
//! Redis is strict about integers (`string2ll`: no `+`, no leading zeros, no
//! spaces, at most 20 characters) and replies with fixed error texts when an
//! argument does not parse. These helpers return those texts as `Err(Reply)`, so a
//! handler can write `let n = int(&argv[2])?;`.

use bytes::Bytes;

use crate::float;
use crate::reply::{errors, Reply};

/// The result of a handler step: `Err` carries the reply to send (an error).
pub type Res<T> = Result<T, Reply>;

/// The most elements SRANDMEMBER/HRANDFIELD build for a negative count
/// (repeats allowed). Redis has no limit and can run out of memory building
/// such a reply; a replica must never do that on input, so larger counts are
/// refused with [`COUNT_TOO_LARGE`] (listed in tests/differential/DIFFERENCES.md).
pub const MAX_RANDOM_REPLY: u64 = 10_000_000;
/// The error for a count above [`MAX_RANDOM_REPLY`].
pub const COUNT_TOO_LARGE: &str = "ERR count is too large for a single reply";

/// Parses a signed 64-bit integer like Redis's `string2ll`.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !(b'1'..=b'9').contains(&digits[0]) {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    if negative {
        if v > (i64::MAX as u64) + 1 {
            return None;
        }
        Some((v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

/// An integer argument, or `ERR value is not an integer or out of range`.
pub fn int(s: &[u8]) -> Res<i64> {
    parse_i64(s).ok_or(Reply::err(errors::NOT_INTEGER))
}

/// A 32-bit integer argument, like Redis's `getIntFromObjectOrReply`: not an
/// integer is `ERR value is not an integer or out of range`, an integer out of
/// the `int` range says so with the bounds.
pub fn int32(s: &[u8]) -> Res<i64> {
    let n = int(s)?;
    if i32::try_from(n).is_err() {
        return Err(Reply::err(
            "ERR value is out of range, value must between -2147483648 and 2147483647",
        ));
    }
    Ok(n)
}

/// A double argument, or `ERR value is not a valid float`.
pub fn float(s: &[u8]) -> Res<f64> {
    float::parse_f64(s).ok_or(Reply::err(errors::NOT_FLOAT))
}

/// A strictly positive integer, or `ERR value is out of range, must be positive`.
pub fn positive(s: &[u8]) -> Res<i64> {
    match int(s)? {
        n if n > 0 => Ok(n),
        _ => Err(Reply::err(errors::OUT_OF_RANGE_POSITIVE)),
    }
}

/// A non-negative integer with Redis's "must be positive" error for negatives.
pub fn non_negative(s: &[u8]) -> Res<i64> {
    match int(s)? {
        n if n >= 0 => Ok(n),
        _ => Err(Reply::err(errors::OUT_OF_RANGE_POSITIVE)),
    }
}

/// True if the argument equals `word`, ignoring ASCII case.
#[inline]
pub fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// Formats an integer as a bulk-string value, like Redis stores counters.
pub fn int_bytes(n: i64) -> Bytes {
    Bytes::copy_from_slice(itoa::Buffer::new().format(n).as_bytes())
}

/// The text of an argument for error messages (lossy, like Redis's `%s`).
pub fn text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

/// Parses a SCAN-family cursor the way Redis does (`strtoul` on the C
/// string, so the text ends at the first NUL byte): an empty string is cursor
/// 0, a sign is accepted and `-n` wraps; anything else is `ERR invalid cursor`.
pub fn cursor(s: &[u8]) -> Res<u64> {
    let invalid = || Reply::err(errors::INVALID_CURSOR);
    let s = &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())];
    if s.is_empty() {
        return Ok(0);
    }
    let (negative, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    let mut v: u64 = 0;
    for &c in digits {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(c - b'0')))
            .ok_or_else(invalid)?;
    }
    Ok(if negative { v.wrapping_neg() } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"-9223372036854775809"), None);
        for bad in [&b""[..], b"-", b"+1", b"01", b"-0", b" 1", b"1 ", b"1.0", b"abc", b"00"] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}

//! The server side of RESP: turning a client's byte stream into commands.
//!
//! Clients send either multibulk requests (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) or
//! inline commands (`GET k\r\n`, as typed into telnet). [`RequestDecoder`]
//! follows Redis's `processMultibulkBuffer` and `processInlineBuffer` closely,
//! including their limits and the exact text of every protocol error, because
//! clients and tests see those texts.
//!
//! Decoding is incremental and resumable: a request that arrives in pieces is
//! never re-parsed from its start (a 1M-argument MSET costs linear time), and
//! when a large bulk's length is known the buffer is grown once to fit it.
//! "Need more bytes" is `Ok(None)`; malformed input is a [`ProtocolError`], after
//! which the connection must be closed (the decoder's position is undefined).

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

use crate::inline::split_args;

/// Limits on what a client may send. The defaults are Redis's.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `proto-max-bulk-len`: the largest bulk string accepted.
    pub max_bulk_len: i64,
    /// `PROTO_INLINE_MAX_SIZE`: the longest inline command, and the longest
    /// multibulk or bulk header line.
    pub max_inline_len: usize,
    /// Multibulk count above which an unauthenticated client is refused.
    pub unauthenticated_max_args: i64,
    /// Bulk length above which an unauthenticated client is refused.
    pub unauthenticated_max_bulk: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_inline_len: 64 * 1024,
            unauthenticated_max_args: 10,
            unauthenticated_max_bulk: 16384,
        }
    }
}

/// Malformed or oversized input. Display gives Redis's text (without `ERR `).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedDollar(u8),
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
}

/// Largest number of argument slots allocated up front from a client's count.
const PREALLOC_ARGS: usize = 1024;

/// A multibulk request seen in part.
#[derive(Debug)]
struct Partial {
    /// Arguments still to read.
    remaining: usize,
    /// `(start, end)` of each argument read so far, relative to the buffer.
    args: Vec<(usize, usize)>,
    /// Where parsing continues.
    pos: usize,
    /// Length of the bulk whose header was read but whose data is incomplete.
    bulk_len: Option<usize>,
}

/// Incremental decoder of client requests. See the module docs.
#[derive(Debug, Default)]
pub struct RequestDecoder {
    limits: Limits,
    partial: Option<Partial>,
}

impl RequestDecoder {
    pub fn new(limits: Limits) -> RequestDecoder {
        RequestDecoder { limits, partial: None }
    }

    /// Replaces the limits (CONFIG SET proto-max-bulk-len).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// True if part of a request has been read but not all of it.
    pub fn in_progress(&self) -> bool {
        self.partial.is_some()
    }

    /// Decodes the next complete request from `buf`, consuming its bytes.
    /// Empty requests (`*0`, blank inline lines) are skipped as Redis does.
    /// Arguments share `buf`'s memory; copy what you keep.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        authenticated: bool,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            if self.partial.is_none() {
                if buf.is_empty() {
                    return Ok(None);
                }
                if buf[0] != b'*' {
                    match self.decode_inline(buf)? {
                        Some(argv) if argv.is_empty() => continue,
                        other => return Ok(other),
                    }
                }
                match self.start_multibulk(buf, authenticated)? {
                    Start::Incomplete => return Ok(None),
                    Start::Empty => continue,
                    Start::Started => {}
                }
            }
            return self.continue_multibulk(buf, authenticated);
        }
    }

    fn decode_inline(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let Some(newline) = find_line_end(b'\n', buf) else {
            if buf.len() > self.limits.max_inline_len {
                return Err(ProtocolError::TooBigInline);
            }
            return Ok(None);
        };
        let end = if newline > 0 && buf[newline - 1] == b'\r' { newline - 1 } else { newline };
        let argv = split_args(&buf[..end]).ok_or(ProtocolError::UnbalancedQuotes)?;
        buf.advance(newline + 1);
        Ok(Some(argv))
    }

    fn start_multibulk(
        &mut self,
        buf: &mut BytesMut,
        authenticated: bool,
    ) -> Result<Start, ProtocolError> {
        let Some(cr) = find_line_end(b'\r', buf) else {
            if buf.len() > self.limits.max_inline_len {
                return Err(ProtocolError::TooBigMultibulkCount);
            }
            return Ok(Start::Incomplete);
        };
        // The line must be followed by one more byte (the '\n', unchecked, as
        // in Redis).
        if cr + 1 >= buf.len() {
            return Ok(Start::Incomplete);
        }
        let count = match parse_i64(&buf[1..cr]) {
            Some(n) if n <= i64::from(i32::MAX) => n,
            _ => return Err(ProtocolError::InvalidMultibulkLength),
        };
        if count > self.limits.unauthenticated_max_args && !authenticated {
            return Err(ProtocolError::UnauthenticatedMultibulkLength);
        }
        if count <= 0 {
            buf.advance(cr + 2);
            return Ok(Start::Empty);
        }
        let count = count as usize;
        self.partial = Some(Partial {
            remaining: count,
            args: Vec::with_capacity(count.min(PREALLOC_ARGS)),
            pos: cr + 2,
            bulk_len: None,
        });
        Ok(Start::Started)
    }

    fn continue_multibulk(
        &mut self,
        buf: &mut BytesMut,
        authenticated: bool,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let limits = self.limits;
        let p = self.partial.as_mut().expect("a multibulk in progress");
        while p.remaining > 0 {
            let len = match p.bulk_len {
                Some(len) => len,
                None => {
                    let Some(cr) = find_line_end(b'\r', &buf[p.pos..]).map(|i| p.pos + i) else {
                        if buf.len() - p.pos > limits.max_inline_len {
                            return Err(ProtocolError::TooBigBulkCount);
                        }
                        return Ok(None);
                    };
                    if cr + 1 >= buf.len() {
                        return Ok(None);
                    }
                    if buf[p.pos] != b'$' {
                        return Err(ProtocolError::ExpectedDollar(buf[p.pos]));
                    }
                    let len = match parse_i64(&buf[p.pos + 1..cr]) {
                        Some(n) if (0..=limits.max_bulk_len).contains(&n) => n,
                        _ => return Err(ProtocolError::InvalidBulkLength),
                    };
                    if len > limits.unauthenticated_max_bulk && !authenticated {
                        return Err(ProtocolError::UnauthenticatedBulkLength);
                    }
                    let len = len as usize;
                    p.pos = cr + 2;
                    p.bulk_len = Some(len);
                    // Grow once for a large bulk instead of doubling repeatedly.
                    let needed = p.pos + len + 2;
                    if needed > buf.len() {
                        buf.reserve(needed - buf.len());
                    }
                    len
                }
            };
            if buf.len() - p.pos < len + 2 {
                return Ok(None);
            }
            // Like Redis, the two bytes after the data are skipped unchecked.
            p.args.push((p.pos, p.pos + len));
            p.pos += len + 2;
            p.bulk_len = None;
            p.remaining -= 1;
        }
        let p = self.partial.take().expect("a multibulk in progress");
        let frame = buf.split_to(p.pos).freeze();
        Ok(Some(p.args.into_iter().map(|(s, e)| frame.slice(s..e)).collect()))
    }
}

enum Start {
    Incomplete,
    Empty,
    Started,
}

/// Finds `end` the way Redis's `strchr` over its query buffer does: a NUL byte
/// ends the search, so a header line with a NUL in it never completes (and
/// eventually trips the too-big limits), exactly as in Redis.
fn find_line_end(end: u8, buf: &[u8]) -> Option<usize> {
    memchr::memchr2(end, 0, buf).filter(|&i| buf[i] == end)
}

/// Redis's `string2ll`: strict decimal, no `+`, no leading zeros.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = if s[0] == b'-' { (true, &s[1..]) } else { (false, s) };
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
        (v <= (i64::MAX as u64) + 1).then(|| (v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
        let mut dec = RequestDecoder::default();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match dec.decode(&mut buf, true) {
                Ok(Some(argv)) => out.push(argv),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    fn strs(argv: &[Bytes]) -> Vec<&str> {
        argv.iter().map(|a| std::str::from_utf8(a).unwrap()).collect()
    }

    #[test]
    fn multibulk_and_pipeline() {
        let (cmds, err) = decode_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n");
        assert_eq!(err, None);
        assert_eq!(cmds.len(), 2);
        assert_eq!(strs(&cmds[0]), ["GET", "k"]);
        assert_eq!(strs(&cmds[1]), ["PING"]);
    }

    #[test]
    fn inline_commands() {
        let (cmds, err) = decode_all(b"SET a \"b c\"\r\n\r\nPING\n");
        assert_eq!(err, None);
        assert_eq!(
            cmds.iter().map(|c| strs(c)).collect::<Vec<_>>(),
            [vec!["SET", "a", "b c"], vec!["PING"]]
        );
        assert_eq!(decode_all(b"SET a \"b\r\n").1, Some(ProtocolError::UnbalancedQuotes));
    }

    #[test]
    fn byte_at_a_time_gives_the_same_commands() {
        let input = b"*3\r\n$3\r\nSET\r\n$5\r\nhello\r\n$0\r\n\r\n*0\r\nPING\r\n";
        let mut dec = RequestDecoder::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &b in input.iter() {
            buf.extend_from_slice(&[b]);
            while let Some(argv) = dec.decode(&mut buf, true).unwrap() {
                out.push(argv);
            }
        }
        assert_eq!(out.len(), 2);
        assert_eq!(strs(&out[0]), ["SET", "hello", ""]);
        assert_eq!(strs(&out[1]), ["PING"]);
        assert!(buf.is_empty());
    }

    #[test]
    fn protocol_errors_have_redis_texts() {
        let cases: &[(&[u8], &str)] = &[
            (b"*abc\r\n", "Protocol error: invalid multibulk length"),
            (b"*3000000000\r\n", "Protocol error: invalid multibulk length"),
            (b"*1\r\n$x\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$600000000\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\nPING\r\n", "Protocol error: expected '$', got 'P'"),
        ];
        for (input, text) in cases {
            let (_, err) = decode_all(input);
            assert_eq!(err.map(|e| e.to_string()).as_deref(), Some(*text), "{input:?}");
        }
        let big = vec![b'a'; 70 * 1024];
        assert_eq!(decode_all(&big).1, Some(ProtocolError::TooBigInline));
        let mut mbulk = b"*1".to_vec();
        mbulk.extend(std::iter::repeat_n(b'1', 70 * 1024));
        assert_eq!(decode_all(&mbulk).1, Some(ProtocolError::TooBigMultibulkCount));
    }

    #[test]
    fn unauthenticated_limits() {
        let mut dec = RequestDecoder::default();
        let mut buf = BytesMut::from(&b"*11\r\n"[..]);
        assert_eq!(dec.decode(&mut buf, false), Err(ProtocolError::UnauthenticatedMultibulkLength));
        let mut dec = RequestDecoder::default();
        let mut buf = BytesMut::from(&b"*1\r\n$20000\r\n"[..]);
        assert_eq!(dec.decode(&mut buf, false), Err(ProtocolError::UnauthenticatedBulkLength));
    }
}

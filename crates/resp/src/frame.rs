//! A general RESP2/RESP3 value ([`Frame`]) with a parser and an encoder: what a
//! client reads from a server. The server itself decodes requests with
//! [`RequestDecoder`](crate::RequestDecoder) and writes replies with
//! [`write`](crate::write); this type serves clients, tests, tools and the fuzz
//! targets.
//!
//! Parsing is two-phase in spirit: [`Frame::parse`] reports
//! [`FrameError::Incomplete`] (need more bytes, nothing consumed) apart from
//! [`FrameError::Invalid`] (bad bytes). Lengths and nesting are bounded so that
//! hostile input cannot make the parser allocate or recurse without limit.

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use crate::request::parse_i64;
use crate::write;

/// One RESP value.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// `+text`
    Simple(Bytes),
    /// `-text`
    Error(Bytes),
    /// `:n`
    Integer(i64),
    /// `$n` with data
    Bulk(Bytes),
    /// `$-1` (RESP2 null bulk)
    NullBulk,
    /// `*-1` (RESP2 null array)
    NullArray,
    /// `*n`
    Array(Vec<Frame>),
    /// `_` (RESP3 null)
    Null,
    /// `%n` (RESP3 map)
    Map(Vec<(Frame, Frame)>),
    /// `~n` (RESP3 set)
    Set(Vec<Frame>),
    /// `>n` (RESP3 push)
    Push(Vec<Frame>),
    /// `|n` (RESP3 attributes; the value they describe follows as its own frame)
    Attribute(Vec<(Frame, Frame)>),
    /// `,text` (RESP3 double, kept as text so encoding round-trips exactly)
    Double(Bytes),
    /// `#t` / `#f`
    Boolean(bool),
    /// `(digits`
    BigNumber(Bytes),
    /// `=n` with a 3-byte format, `:`, then text
    Verbatim { format: Bytes, text: Bytes },
    /// `!n` (RESP3 blob error)
    BlobError(Bytes),
}

/// Why [`Frame::parse`] did not return a frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The buffer holds only part of a frame.
    #[error("incomplete frame")]
    Incomplete,
    /// The bytes are not valid RESP.
    #[error("invalid frame: {0}")]
    Invalid(&'static str),
}

/// Bounds for parsing untrusted replies.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimits {
    pub max_bulk_len: usize,
    pub max_depth: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits { max_bulk_len: 512 * 1024 * 1024, max_depth: 64 }
    }
}

impl Frame {
    /// Parses one frame from the start of `buf`; returns it and the number of
    /// bytes it used.
    pub fn parse(buf: &[u8]) -> Result<(Frame, usize), FrameError> {
        Frame::parse_with(buf, FrameLimits::default())
    }

    /// [`Frame::parse`] with explicit limits.
    pub fn parse_with(buf: &[u8], limits: FrameLimits) -> Result<(Frame, usize), FrameError> {
        let mut parser = Parser { buf, pos: 0, limits };
        let frame = parser.frame(0)?;
        Ok((frame, parser.pos))
    }

    /// Appends the RESP encoding of this frame to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Simple(s) => write::line(out, b'+', s),
            Frame::Error(s) => write::line(out, b'-', s),
            Frame::Integer(n) => write::integer(out, *n),
            Frame::Bulk(b) => write::bulk(out, b),
            Frame::NullBulk => out.extend_from_slice(b"$-1\r\n"),
            Frame::NullArray => out.extend_from_slice(b"*-1\r\n"),
            Frame::Null => out.extend_from_slice(b"_\r\n"),
            Frame::Array(items) => encode_seq(out, b'*', items),
            Frame::Set(items) => encode_seq(out, b'~', items),
            Frame::Push(items) => encode_seq(out, b'>', items),
            Frame::Map(pairs) => encode_pairs(out, b'%', pairs),
            Frame::Attribute(pairs) => encode_pairs(out, b'|', pairs),
            Frame::Double(text) => write::line(out, b',', text),
            Frame::Boolean(b) => out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Frame::BigNumber(text) => write::line(out, b'(', text),
            Frame::Verbatim { format, text } => {
                write::header(out, b'=', (format.len() + 1 + text.len()) as i64);
                out.extend_from_slice(format);
                out.extend_from_slice(b":");
                out.extend_from_slice(text);
                out.extend_from_slice(b"\r\n");
            }
            Frame::BlobError(b) => {
                write::header(out, b'!', b.len() as i64);
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// The encoding as a new buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }

    /// A request frame: an array of bulk strings.
    pub fn command<I, A>(args: I) -> Frame
    where
        I: IntoIterator<Item = A>,
        A: AsRef<[u8]>,
    {
        Frame::Array(
            args.into_iter().map(|a| Frame::Bulk(Bytes::copy_from_slice(a.as_ref()))).collect(),
        )
    }
}

fn encode_seq(out: &mut BytesMut, prefix: u8, items: &[Frame]) {
    write::header(out, prefix, items.len() as i64);
    for item in items {
        item.encode(out);
    }
}

fn encode_pairs(out: &mut BytesMut, prefix: u8, pairs: &[(Frame, Frame)]) {
    write::header(out, prefix, pairs.len() as i64);
    for (k, v) in pairs {
        k.encode(out);
        v.encode(out);
    }
}

struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: FrameLimits,
}

impl Parser<'_> {
    /// The line starting at `pos` (without its `\r\n`), advancing past it.
    fn line(&mut self) -> Result<&[u8], FrameError> {
        let rest = &self.buf[self.pos..];
        let cr = memchr::memchr(b'\r', rest).ok_or(FrameError::Incomplete)?;
        if cr + 1 >= rest.len() {
            return Err(FrameError::Incomplete);
        }
        if rest[cr + 1] != b'\n' {
            return Err(FrameError::Invalid("line not terminated by CRLF"));
        }
        self.pos += cr + 2;
        Ok(&rest[..cr])
    }

    fn int_line(&mut self) -> Result<i64, FrameError> {
        let line = self.line()?;
        parse_i64(line).ok_or(FrameError::Invalid("bad integer"))
    }

    /// A length header: -1 means null, otherwise 0..=max.
    fn len_line(&mut self, max: usize) -> Result<Option<usize>, FrameError> {
        match self.int_line()? {
            -1 => Ok(None),
            n if n >= 0 && (n as u64) <= max as u64 => Ok(Some(n as usize)),
            _ => Err(FrameError::Invalid("bad length")),
        }
    }

    fn blob(&mut self, len: usize) -> Result<Bytes, FrameError> {
        let rest = &self.buf[self.pos..];
        if rest.len() < len + 2 {
            return Err(FrameError::Incomplete);
        }
        if &rest[len..len + 2] != b"\r\n" {
            return Err(FrameError::Invalid("blob not terminated by CRLF"));
        }
        self.pos += len + 2;
        Ok(Bytes::copy_from_slice(&rest[..len]))
    }

    /// The most elements an aggregate can hold given the bytes left (each
    /// takes at least 3 bytes), so a huge count cannot force a huge allocation.
    fn capacity_for(&self, n: usize) -> usize {
        n.min((self.buf.len() - self.pos) / 3 + 1)
    }

    fn frames(&mut self, n: usize, depth: usize) -> Result<Vec<Frame>, FrameError> {
        let mut items = Vec::with_capacity(self.capacity_for(n));
        for _ in 0..n {
            items.push(self.frame(depth + 1)?);
        }
        Ok(items)
    }

    fn pairs(&mut self, n: usize, depth: usize) -> Result<Vec<(Frame, Frame)>, FrameError> {
        let mut pairs = Vec::with_capacity(self.capacity_for(n));
        for _ in 0..n {
            let k = self.frame(depth + 1)?;
            let v = self.frame(depth + 1)?;
            pairs.push((k, v));
        }
        Ok(pairs)
    }

    fn frame(&mut self, depth: usize) -> Result<Frame, FrameError> {
        if depth > self.limits.max_depth {
            return Err(FrameError::Invalid("nested too deeply"));
        }
        let Some(&prefix) = self.buf.get(self.pos) else { return Err(FrameError::Incomplete) };
        self.pos += 1;
        let max_len = self.limits.max_bulk_len;
        let max_count = i32::MAX as usize;
        Ok(match prefix {
            b'+' => Frame::Simple(Bytes::copy_from_slice(self.line()?)),
            b'-' => Frame::Error(Bytes::copy_from_slice(self.line()?)),
            b':' => Frame::Integer(self.int_line()?),
            b'$' => match self.len_line(max_len)? {
                None => Frame::NullBulk,
                Some(n) => Frame::Bulk(self.blob(n)?),
            },
            b'*' => match self.len_line(max_count)? {
                None => Frame::NullArray,
                Some(n) => Frame::Array(self.frames(n, depth)?),
            },
            b'_' => {
                if !self.line()?.is_empty() {
                    return Err(FrameError::Invalid("null with data"));
                }
                Frame::Null
            }
            b'%' | b'|' => {
                let n = self.len_line(max_count)?.ok_or(FrameError::Invalid("null map"))?;
                let pairs = self.pairs(n, depth)?;
                if prefix == b'%' {
                    Frame::Map(pairs)
                } else {
                    Frame::Attribute(pairs)
                }
            }
            b'~' | b'>' => {
                let n = self.len_line(max_count)?.ok_or(FrameError::Invalid("null set"))?;
                let items = self.frames(n, depth)?;
                if prefix == b'~' {
                    Frame::Set(items)
                } else {
                    Frame::Push(items)
                }
            }
            b',' => Frame::Double(Bytes::copy_from_slice(self.line()?)),
            b'#' => match self.line()? {
                b"t" => Frame::Boolean(true),
                b"f" => Frame::Boolean(false),
                _ => return Err(FrameError::Invalid("bad boolean")),
            },
            b'(' => Frame::BigNumber(Bytes::copy_from_slice(self.line()?)),
            b'=' => {
                let n = self.len_line(max_len)?.ok_or(FrameError::Invalid("null verbatim"))?;
                let blob = self.blob(n)?;
                if blob.len() < 4 || blob[3] != b':' {
                    return Err(FrameError::Invalid("bad verbatim format"));
                }
                Frame::Verbatim { format: blob.slice(0..3), text: blob.slice(4..) }
            }
            b'!' => {
                let n = self.len_line(max_len)?.ok_or(FrameError::Invalid("null blob error"))?;
                Frame::BlobError(self.blob(n)?)
            }
            _ => return Err(FrameError::Invalid("unknown type byte")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_type() {
        let input: &[u8] = b"*3\r\n+OK\r\n:-5\r\n%1\r\n$1\r\na\r\n~2\r\n,1.5\r\n#t\r\n";
        let (frame, used) = Frame::parse(input).unwrap();
        assert_eq!(used, input.len());
        assert_eq!(frame.to_bytes().as_ref(), input);
        assert_eq!(Frame::parse(b"$3\r\nab"), Err(FrameError::Incomplete));
        assert_eq!(Frame::parse(b"$-1\r\n").unwrap().0, Frame::NullBulk);
        assert_eq!(
            Frame::parse(b"=8\r\ntxt:abcd\r\n").unwrap().0.to_bytes().as_ref(),
            b"=8\r\ntxt:abcd\r\n"
        );
        assert!(matches!(Frame::parse(b"?\r\n"), Err(FrameError::Invalid(_))));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let input = "*1\r\n".repeat(1000);
        assert!(matches!(Frame::parse(input.as_bytes()), Err(FrameError::Invalid(_))));
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        assert_eq!(Frame::parse(b"*2000000000\r\n:1\r\n"), Err(FrameError::Incomplete));
    }
}

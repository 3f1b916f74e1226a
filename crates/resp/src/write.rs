//! Low-level RESP writers that append to a `BytesMut`: the server's reply
//! encoder and [`Frame::encode`](crate::Frame::encode) are both built on them.
//! Functions taking a [`Protocol`] pick the RESP2 or RESP3 shape.

use bytes::BytesMut;

/// The protocol version a connection speaks (HELLO 2 / HELLO 3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

impl Protocol {
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// `<prefix><text>\r\n`
#[inline]
pub fn line(out: &mut BytesMut, prefix: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.extend_from_slice(&[prefix]);
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

/// `<prefix><n>\r\n`: the header of a bulk or an aggregate.
#[inline]
pub fn header(out: &mut BytesMut, prefix: u8, n: i64) {
    let mut buf = itoa::Buffer::new();
    line(out, prefix, buf.format(n).as_bytes());
}

/// `:<n>\r\n`
#[inline]
pub fn integer(out: &mut BytesMut, n: i64) {
    header(out, b':', n);
}

/// `$<len>\r\n<data>\r\n`
#[inline]
pub fn bulk(out: &mut BytesMut, data: &[u8]) {
    out.reserve(data.len() + 16);
    header(out, b'$', data.len() as i64);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// `+<text>\r\n`
#[inline]
pub fn simple(out: &mut BytesMut, text: &[u8]) {
    line(out, b'+', text);
}

/// `-<text>\r\n`
#[inline]
pub fn error(out: &mut BytesMut, text: &[u8]) {
    line(out, b'-', text);
}

/// The null bulk string: `$-1` or `_`.
#[inline]
pub fn null_bulk(out: &mut BytesMut, proto: Protocol) {
    out.extend_from_slice(match proto {
        Protocol::Resp2 => b"$-1\r\n",
        Protocol::Resp3 => b"_\r\n",
    });
}

/// The null array: `*-1` or `_`.
#[inline]
pub fn null_array(out: &mut BytesMut, proto: Protocol) {
    out.extend_from_slice(match proto {
        Protocol::Resp2 => b"*-1\r\n",
        Protocol::Resp3 => b"_\r\n",
    });
}

/// `*<n>`
#[inline]
pub fn array_header(out: &mut BytesMut, n: usize) {
    header(out, b'*', n as i64);
}

/// A map of `n` pairs: `%<n>` or, in RESP2, `*<2n>`.
#[inline]
pub fn map_header(out: &mut BytesMut, n: usize, proto: Protocol) {
    match proto {
        Protocol::Resp2 => header(out, b'*', 2 * n as i64),
        Protocol::Resp3 => header(out, b'%', n as i64),
    }
}

/// A set of `n` members: `~<n>` or, in RESP2, `*<n>`.
#[inline]
pub fn set_header(out: &mut BytesMut, n: usize, proto: Protocol) {
    match proto {
        Protocol::Resp2 => header(out, b'*', n as i64),
        Protocol::Resp3 => header(out, b'~', n as i64),
    }
}

/// A double already formatted as text: `,<text>` or a bulk string in RESP2.
#[inline]
pub fn double_text(out: &mut BytesMut, text: &[u8], proto: Protocol) {
    match proto {
        Protocol::Resp2 => bulk(out, text),
        Protocol::Resp3 => line(out, b',', text),
    }
}

/// A boolean: `#t`/`#f`, or `:1`/`:0` in RESP2.
#[inline]
pub fn boolean(out: &mut BytesMut, b: bool, proto: Protocol) {
    match proto {
        Protocol::Resp2 => integer(out, i64::from(b)),
        Protocol::Resp3 => out.extend_from_slice(if b { b"#t\r\n" } else { b"#f\r\n" }),
    }
}

/// Verbatim text: `=<len>\r\ntxt:<text>` or a bulk string in RESP2.
#[inline]
pub fn verbatim(out: &mut BytesMut, text: &[u8], proto: Protocol) {
    match proto {
        Protocol::Resp2 => bulk(out, text),
        Protocol::Resp3 => {
            header(out, b'=', text.len() as i64 + 4);
            out.extend_from_slice(b"txt:");
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
    }
}

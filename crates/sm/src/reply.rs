//! Replies produced by the engine, independent of the wire protocol.
//!
//! A [`Reply`] says *what* Redis would answer, with enough shape for both RESP2 and
//! RESP3: a [`Reply::Map`] is a RESP3 map and a flat array in RESP2, a
//! [`Reply::Double`] is a RESP3 double and a bulk string in RESP2, and so on. The
//! node encodes it for the client's protocol version. Replies are serializable so
//! a follower can relay the exact reply the leader's engine produced.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One reply of a command, as Redis 7.0 shapes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// `+OK`
    Ok,
    /// A simple string (`+PONG`, `+string`, …).
    Status(Cow<'static, str>),
    /// An error, with its code prefix and without the leading `-`
    /// (`"ERR syntax error"`, `"WRONGTYPE …"`).
    Error(Cow<'static, str>),
    /// A signed integer (`:n`).
    Int(i64),
    /// A bulk string.
    Bulk(Bytes),
    /// The null bulk string: `$-1` in RESP2, `_` in RESP3.
    Nil,
    /// The null array: `*-1` in RESP2, `_` in RESP3.
    NilArray,
    /// An array.
    Array(Vec<Reply>),
    /// A map: `%` in RESP3, a flat array of key, value, … in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// A set: `~` in RESP3, an array in RESP2.
    Set(Vec<Reply>),
    /// A list of pairs that RESP3 nests (`[[a, 1], [b, 2]]`) and RESP2 flattens
    /// (`[a, 1, b, 2]`), as ZRANGE WITHSCORES and HRANDFIELD WITHVALUES do.
    Pairs(Vec<(Reply, Reply)>),
    /// A double: `,` in RESP3, a bulk string formatted like `%.17g` in RESP2.
    Double(f64),
    /// A boolean: `#t`/`#f` in RESP3, `:1`/`:0` in RESP2.
    Bool(bool),
    /// Verbatim text (`=txt:` in RESP3, a bulk string in RESP2), as INFO replies.
    Verbatim(Bytes),
    /// A big number: `(` in RESP3, a bulk string of its digits in RESP2 (a
    /// script's `{big_number = …}`).
    BigNumber(Bytes),
    /// Nothing at all is sent (CLIENT REPLY OFF/SKIP).
    NoReply,
    /// Not a reply for a client: `Op::Block` queued the client (its node
    /// waits for the engine to serve it).
    Blocked,
}

impl Reply {
    /// An error reply from a static text.
    pub const fn err(text: &'static str) -> Reply {
        Reply::Error(Cow::Borrowed(text))
    }

    /// An error reply from a formatted text.
    pub fn error(text: String) -> Reply {
        Reply::Error(Cow::Owned(text))
    }

    /// A simple-string reply from a static text.
    pub const fn status(text: &'static str) -> Reply {
        Reply::Status(Cow::Borrowed(text))
    }

    /// A simple-string reply from any text.
    pub fn status_owned(text: &str) -> Reply {
        Reply::Status(Cow::Owned(text.to_string()))
    }

    /// A bulk reply copied from a byte slice.
    pub fn bulk(data: &[u8]) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(data))
    }

    /// A bulk reply holding the decimal text of an integer.
    pub fn bulk_int(n: i64) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(itoa::Buffer::new().format(n).as_bytes()))
    }

    /// An array of bulk strings.
    pub fn bulks<I: IntoIterator<Item = Bytes>>(items: I) -> Reply {
        Reply::Array(items.into_iter().map(Reply::Bulk).collect())
    }

    /// True if this reply is an error.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
}

impl From<i64> for Reply {
    fn from(n: i64) -> Reply {
        Reply::Int(n)
    }
}

impl From<usize> for Reply {
    fn from(n: usize) -> Reply {
        Reply::Int(n as i64)
    }
}

impl From<bool> for Reply {
    fn from(b: bool) -> Reply {
        Reply::Int(b as i64)
    }
}

impl From<Bytes> for Reply {
    fn from(b: Bytes) -> Reply {
        Reply::Bulk(b)
    }
}

impl From<Option<Bytes>> for Reply {
    fn from(b: Option<Bytes>) -> Reply {
        b.map_or(Reply::Nil, Reply::Bulk)
    }
}

/// The error texts Redis uses, shared so every command spells them the same way.
pub mod errors {
    pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    pub const SYNTAX: &str = "ERR syntax error";
    pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
    pub const NOT_FLOAT: &str = "ERR value is not a valid float";
    pub const OVERFLOW: &str = "ERR increment or decrement would overflow";
    pub const NO_SUCH_KEY: &str = "ERR no such key";
    pub const INDEX_OUT_OF_RANGE: &str = "ERR index out of range";
    pub const OUT_OF_RANGE_POSITIVE: &str = "ERR value is out of range, must be positive";
    pub const DB_INDEX: &str = "ERR DB index is out of range";
    pub const INVALID_CURSOR: &str = "ERR invalid cursor";
    pub const NAN_OR_INF: &str = "ERR increment would produce NaN or Infinity";
    pub const MIN_MAX_NOT_FLOAT: &str = "ERR min or max is not a float";
    pub const MIN_MAX_NOT_STRING: &str = "ERR min or max not valid string range item";
    pub const STRING_TOO_LONG: &str =
        "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
}

//! raftcache-resp: the Redis serialization protocol (RESP2 and RESP3).
//!
//! - [`RequestDecoder`] turns a client's byte stream into commands (multibulk
//!   and inline), with Redis's limits and its exact protocol-error texts.
//! - [`write`] appends replies to a buffer in either protocol version.
//! - [`Frame`] is a general RESP value with a bounded parser and an encoder, for
//!   clients, tools, tests and fuzzing.
//!
//! It does no I/O and knows nothing about commands.
//!
//! ```
//! use bytes::BytesMut;
//! use raftcache_resp::{Frame, RequestDecoder};
//!
//! let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n"[..]);
//! let mut decoder = RequestDecoder::default();
//! let get = decoder.decode(&mut buf, true).unwrap().unwrap();
//! assert_eq!(get, vec!["GET", "k"]);
//! let ping = decoder.decode(&mut buf, true).unwrap().unwrap();
//! assert_eq!(ping, vec!["PING"]);
//! assert_eq!(decoder.decode(&mut buf, true).unwrap(), None);
//!
//! let (frame, used) = Frame::parse(b"%1\r\n+a\r\n:1\r\n").unwrap();
//! assert_eq!(used, 12);
//! assert!(matches!(frame, Frame::Map(_)));
//! ```
//!
//! # Layout
//! - [`request`]: the server-side request decoder and its limits.
//! - [`inline`]: `sdssplitargs`, for inline commands.
//! - [`frame`]: the general RESP value.
//! - [`write`]: reply writers.

pub mod frame;
pub mod inline;
pub mod request;
pub mod write;

pub use frame::{Frame, FrameError, FrameLimits};
pub use request::{Limits, ProtocolError, RequestDecoder};
pub use write::Protocol;

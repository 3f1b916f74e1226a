//! A minimal RESP2 client: one connection, one request at a time.
//!
//! The harness needs to know exactly how far a request got, which a full
//! client library hides behind retries and pools: whether the connection was
//! refused before anything was sent (the operation surely did not happen),
//! or lost, or timed out after the request was written (it may have). So it
//! speaks the protocol itself: requests are arrays of bulk strings, replies
//! are parsed with [`parse`], and [`Conn::call`] says which of those cases
//! happened ([`CallError`]).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    /// `None`: the nil bulk string.
    Bulk(Option<Vec<u8>>),
    /// `None`: the nil array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// A bulk or simple string as UTF-8 (lossy).
    pub fn as_text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// True for the nil bulk string and the nil array.
    pub fn is_nil(&self) -> bool {
        matches!(self, Reply::Bulk(None) | Reply::Array(None))
    }
}

/// How a call went wrong, by what it means for the request.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing was sent (no connection could be made): the request surely
    /// did not take effect.
    #[error("not sent: {0}")]
    NotSent(String),
    /// The request was (maybe partly) written, then the connection failed or
    /// closed before a whole reply arrived: it may have taken effect.
    #[error("connection lost after sending: {0}")]
    Lost(String),
    /// No whole reply within the timeout, after sending.
    #[error("timed out after sending")]
    Timeout,
    /// The server sent something that is not RESP2.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Encodes a request as a RESP array of bulk strings.
pub fn encode(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Most nesting and elements a reply may have (the harness's replies are
/// small; anything bigger is a protocol error rather than a memory hazard).
const MAX_DEPTH: usize = 8;
const MAX_LEN: i64 = 64 * 1024 * 1024;

/// Parses one reply from the front of `buf`: `Ok(None)` if more bytes are
/// needed, else the reply and how many bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    parse_at(buf, 0, 0)
}

fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..end], at + end + 2))
}

fn int(bytes: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad integer {:?}", String::from_utf8_lossy(bytes)))
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Reply, usize)>, String> {
    if depth > MAX_DEPTH {
        return Err("reply nested too deeply".into());
    }
    let Some(&kind) = buf.get(at) else { return Ok(None) };
    let Some((body, next)) = line(buf, at + 1) else { return Ok(None) };
    let text = || String::from_utf8_lossy(body).into_owned();
    match kind {
        b'+' => Ok(Some((Reply::Simple(text()), next))),
        b'-' => Ok(Some((Reply::Error(text()), next))),
        b':' => Ok(Some((Reply::Int(int(body)?), next))),
        b'$' => {
            let len = int(body)?;
            if len < 0 {
                return Ok(Some((Reply::Bulk(None), next)));
            }
            if len > MAX_LEN {
                return Err(format!("bulk of {len} bytes"));
            }
            let len = len as usize;
            if buf.len() < next + len + 2 {
                return Ok(None);
            }
            if &buf[next + len..next + len + 2] != b"\r\n" {
                return Err("bulk string not followed by CRLF".into());
            }
            Ok(Some((Reply::Bulk(Some(buf[next..next + len].to_vec())), next + len + 2)))
        }
        b'*' => {
            let len = int(body)?;
            if len < 0 {
                return Ok(Some((Reply::Array(None), next)));
            }
            if len > MAX_LEN {
                return Err(format!("array of {len} elements"));
            }
            let mut items = Vec::with_capacity((len as usize).min(1024));
            let mut pos = next;
            for _ in 0..len {
                match parse_at(buf, pos, depth + 1)? {
                    Some((item, after)) => {
                        items.push(item);
                        pos = after;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), pos)))
        }
        other => Err(format!("unexpected reply type byte {:?}", other as char)),
    }
}

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects within `timeout`; an error means nothing was sent.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, CallError> {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(Conn { stream, buf: Vec::with_capacity(4096) })
            }
            Ok(Err(e)) => Err(CallError::NotSent(format!("connect {addr}: {e}"))),
            Err(_) => Err(CallError::NotSent(format!("connect {addr}: timed out"))),
        }
    }

    /// Sends one request and reads its reply, all within `timeout`. After any
    /// error the connection must be dropped (its stream position is lost).
    pub async fn call(&mut self, args: &[Vec<u8>], timeout: Duration) -> Result<Reply, CallError> {
        let request = encode(args);
        match tokio::time::timeout(timeout, self.exchange(&request)).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout),
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<Reply, CallError> {
        self.stream.write_all(request).await.map_err(|e| CallError::Lost(format!("write: {e}")))?;
        loop {
            if let Some((reply, used)) = parse(&self.buf).map_err(CallError::Protocol)? {
                self.buf.drain(..used);
                return Ok(reply);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| CallError::Lost(format!("read: {e}")))?;
            if n == 0 {
                return Err(CallError::Lost("connection closed by the server".into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Builds a request from arguments that implement `Display`.
macro_rules! req {
    ($($arg:expr),* $(,)?) => {
        ::std::vec::Vec::<::std::vec::Vec<u8>>::from([
            $(::std::string::ToString::to_string(&$arg).into_bytes()),*
        ])
    };
}
pub(crate) use req;

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(bytes: &[u8]) -> Reply {
        let (reply, used) = parse(bytes).expect("valid").expect("complete");
        assert_eq!(used, bytes.len(), "consumes the whole reply");
        reply
    }

    #[test]
    fn encodes_bulk_arrays() {
        assert_eq!(encode(&req!["SET", "k", 12]), b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n");
    }

    #[test]
    fn parses_every_reply_type() {
        assert_eq!(whole(b"+OK\r\n"), Reply::Simple("OK".into()));
        assert_eq!(
            whole(b"-CLUSTERDOWN no leader\r\n"),
            Reply::Error("CLUSTERDOWN no leader".into())
        );
        assert_eq!(whole(b":-3\r\n"), Reply::Int(-3));
        assert_eq!(whole(b"$-1\r\n"), Reply::Bulk(None));
        assert_eq!(whole(b"$0\r\n\r\n"), Reply::Bulk(Some(vec![])));
        assert_eq!(whole(b"$4\r\na\r\nb\r\n"), Reply::Bulk(Some(b"a\r\nb".to_vec())));
        assert_eq!(whole(b"*-1\r\n"), Reply::Array(None));
        assert_eq!(
            whole(b"*3\r\n$1\r\na\r\n:1\r\n*0\r\n"),
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"a".to_vec())),
                Reply::Int(1),
                Reply::Array(Some(vec![]))
            ]))
        );
    }

    #[test]
    fn asks_for_more_until_a_reply_is_whole() {
        let full = b"*2\r\n$3\r\nabc\r\n$2\r\nde\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]), Ok(None), "cut at {cut}");
        }
        // A second reply behind the first is left in the buffer.
        let two = b":1\r\n:2\r\n";
        assert_eq!(parse(two), Ok(Some((Reply::Int(1), 4))));
    }

    #[test]
    fn rejects_what_is_not_resp2() {
        assert!(parse(b"?x\r\n").is_err());
        assert!(parse(b":x\r\n").is_err());
        assert!(parse(b"$2\r\nabcd\r\n").is_err());
    }
}

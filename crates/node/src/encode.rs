//! Encoding engine replies for the client's protocol version.

use bytes::BytesMut;
use raftcache_resp::{write, Protocol};
use raftcache_sm::float::format_g17;
use raftcache_sm::Reply;

/// Appends `reply` to `out` in RESP2 or RESP3.
pub fn encode(reply: &Reply, proto: Protocol, out: &mut BytesMut) {
    match reply {
        Reply::Ok => out.extend_from_slice(b"+OK\r\n"),
        Reply::Status(s) => write::simple(out, s.as_bytes()),
        Reply::Error(e) => error(out, e),
        Reply::Int(n) => write::integer(out, *n),
        Reply::Bulk(b) => write::bulk(out, b),
        Reply::Nil => write::null_bulk(out, proto),
        Reply::NilArray => write::null_array(out, proto),
        Reply::Array(items) => {
            write::array_header(out, items.len());
            items.iter().for_each(|i| encode(i, proto, out));
        }
        Reply::Set(items) => {
            write::set_header(out, items.len(), proto);
            items.iter().for_each(|i| encode(i, proto, out));
        }
        Reply::Map(pairs) => {
            write::map_header(out, pairs.len(), proto);
            for (k, v) in pairs {
                encode(k, proto, out);
                encode(v, proto, out);
            }
        }
        Reply::Pairs(pairs) => {
            match proto {
                Protocol::Resp2 => write::array_header(out, pairs.len() * 2),
                Protocol::Resp3 => write::array_header(out, pairs.len()),
            }
            for (k, v) in pairs {
                if proto == Protocol::Resp3 {
                    write::array_header(out, 2);
                }
                encode(k, proto, out);
                encode(v, proto, out);
            }
        }
        Reply::Double(d) => write::double_text(out, format_g17(*d).as_bytes(), proto),
        Reply::Bool(b) => write::boolean(out, *b, proto),
        Reply::Verbatim(text) => write::verbatim(out, text, proto),
        Reply::BigNumber(digits) => match proto {
            Protocol::Resp2 => write::bulk(out, digits),
            Protocol::Resp3 => {
                out.extend_from_slice(b"(");
                out.extend_from_slice(digits);
                out.extend_from_slice(b"\r\n");
            }
        },
        Reply::NoReply | Reply::Blocked => {}
    }
}

/// An error line; newlines inside it would break the protocol, so they become
/// spaces, as Redis does.
fn error(out: &mut BytesMut, text: &str) {
    if text.contains(['\r', '\n']) {
        write::error(out, text.replace(['\r', '\n'], " ").as_bytes());
    } else {
        write::error(out, text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn enc(reply: Reply, proto: Protocol) -> String {
        let mut out = BytesMut::new();
        encode(&reply, proto, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn shapes_per_protocol() {
        let map = Reply::Map(vec![(Reply::Bulk(Bytes::from("f")), Reply::Bulk(Bytes::from("v")))]);
        assert_eq!(enc(map.clone(), Protocol::Resp2), "*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
        assert_eq!(enc(map, Protocol::Resp3), "%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
        assert_eq!(enc(Reply::Double(1.1), Protocol::Resp2), "$18\r\n1.1000000000000001\r\n");
        assert_eq!(enc(Reply::Double(f64::INFINITY), Protocol::Resp3), ",inf\r\n");
        assert_eq!(enc(Reply::Nil, Protocol::Resp2), "$-1\r\n");
        assert_eq!(enc(Reply::NilArray, Protocol::Resp2), "*-1\r\n");
        assert_eq!(enc(Reply::NilArray, Protocol::Resp3), "_\r\n");
        let pairs = Reply::Pairs(vec![(Reply::Bulk(Bytes::from("a")), Reply::Double(1.0))]);
        assert_eq!(enc(pairs.clone(), Protocol::Resp2), "*2\r\n$1\r\na\r\n$1\r\n1\r\n");
        assert_eq!(enc(pairs, Protocol::Resp3), "*1\r\n*2\r\n$1\r\na\r\n,1\r\n");
        assert_eq!(enc(Reply::error("ERR a\r\nb".into()), Protocol::Resp2), "-ERR a  b\r\n");
    }
}

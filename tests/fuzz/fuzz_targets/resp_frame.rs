//! The RESP2/RESP3 frame parser (used by the clients and tests that read the
//! server's replies) on arbitrary bytes.
//!
//! Checks: no panic; a parsed frame consumed at most the input; encoding it
//! and parsing the encoding gives the same frame back.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use raftcache_resp::Frame;

fuzz_target!(|data: &[u8]| {
    if let Ok((frame, used)) = Frame::parse(data) {
        assert!(used <= data.len());
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        let (again, used_again) = Frame::parse(&out).expect("an encoded frame parses");
        assert_eq!(used_again, out.len());
        assert_eq!(again, frame);
    }
});

//! The client request decoder on arbitrary bytes, arriving in arbitrary pieces.
//!
//! Checks: no panic; a decoded request consumed bytes; the requests decoded
//! (and the error, if any) do not depend on how the bytes were split into
//! reads, because a client's TCP segments can split anywhere, with one
//! exception that is Redis's own: a line (inline command or header) is
//! refused as too long only while its newline has not arrived, so a long line
//! that arrives whole is accepted and the same line in pieces may be refused.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use raftcache_resp::{Limits, ProtocolError, RequestDecoder};

/// Decodes `data` fed in pieces whose sizes cycle through `cuts`.
fn decode_all(
    data: &[u8],
    cuts: &[u8],
    authenticated: bool,
) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
    // Small limits so the fuzzer reaches them with short inputs.
    let limits = Limits {
        max_bulk_len: 64,
        max_inline_len: 64,
        unauthenticated_max_args: 4,
        unauthenticated_max_bulk: 16,
    };
    let mut decoder = RequestDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    let mut i = 0;
    while fed < data.len() {
        let n = if cuts.is_empty() { data.len() } else { usize::from(cuts[i % cuts.len()]).max(1) };
        i += 1;
        let end = (fed + n).min(data.len());
        buf.extend_from_slice(&data[fed..end]);
        fed = end;
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf, authenticated) {
                Ok(Some(argv)) => {
                    assert!(buf.len() < before, "a request was decoded from no bytes");
                    out.push(argv);
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 2 {
        return;
    }
    let authenticated = input[0] & 1 == 1;
    let ncuts = usize::from(input[1] % 8);
    if input.len() < 2 + ncuts {
        return;
    }
    let (cuts, data) = input[2..].split_at(ncuts);
    let whole = decode_all(data, &[], authenticated);
    let pieces = decode_all(data, cuts, authenticated);
    if whole != pieces {
        let line_too_long = matches!(
            pieces.1,
            Some(
                ProtocolError::TooBigInline
                    | ProtocolError::TooBigMultibulkCount
                    | ProtocolError::TooBigBulkCount
            )
        );
        assert!(
            line_too_long && whole.0.starts_with(&pieces.0),
            "decoding depends on how the input was split: {whole:?} vs {pieces:?}"
        );
    }
});

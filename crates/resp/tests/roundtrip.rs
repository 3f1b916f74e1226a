//! Property tests: the decoders never panic on arbitrary bytes, and encoding
//! then decoding gives back what was encoded.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use raftcache_resp::{Frame, RequestDecoder};

fn arb_frame() -> impl Strategy<Value = Frame> {
    let text = "[a-zA-Z0-9 .:_-]{0,16}".prop_map(Bytes::from);
    let leaf = prop_oneof![
        text.clone().prop_map(Frame::Simple),
        text.clone().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|v| Frame::Bulk(Bytes::from(v))),
        Just(Frame::NullBulk),
        Just(Frame::NullArray),
        Just(Frame::Null),
        any::<bool>().prop_map(Frame::Boolean),
        (-1e6f64..1e6).prop_map(|d| Frame::Double(Bytes::from(d.to_string()))),
        "[0-9]{1,40}".prop_map(|s| Frame::BigNumber(Bytes::from(s))),
        text.clone().prop_map(|t| Frame::Verbatim { format: Bytes::from_static(b"txt"), text: t }),
        proptest::collection::vec(any::<u8>(), 0..32)
            .prop_map(|v| Frame::BlobError(Bytes::from(v))),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Frame::Array),
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Frame::Set),
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Frame::Push),
            proptest::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(Frame::Map),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Frame::Attribute),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn frame_roundtrip(frame in arb_frame()) {
        let bytes = frame.to_bytes();
        let (parsed, used) = Frame::parse(&bytes).unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(parsed, frame);
        // Every strict prefix is incomplete, never an error or a wrong frame.
        for cut in [0, bytes.len() / 2, bytes.len().saturating_sub(1)] {
            if cut < bytes.len() {
                prop_assert!(Frame::parse(&bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn request_roundtrip(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..10),
                         split in 0usize..200) {
        let encoded = Frame::command(&args).to_bytes();
        let mut decoder = RequestDecoder::default();
        let split = split.min(encoded.len());
        let mut buf = BytesMut::from(&encoded[..split]);
        let mut got = decoder.decode(&mut buf, true).unwrap();
        if got.is_none() {
            buf.extend_from_slice(&encoded[split..]);
            got = decoder.decode(&mut buf, true).unwrap();
        }
        let got = got.expect("a whole request decodes");
        prop_assert_eq!(got.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), args);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Frame::parse(&data);
        let mut decoder = RequestDecoder::default();
        let mut buf = BytesMut::from(&data[..]);
        for _ in 0..64 {
            match decoder.decode(&mut buf, false) {
                Ok(Some(_)) => continue,
                _ => break,
            }
        }
    }
}

//! The codec: PROTOCOL.md's test vectors byte for byte, round trips of every op and flag,
//! and hostile input that must give an error, never a panic.

use bytes::Bytes;
use grid::codec::{
    decode_frame, encode_frame, handshake, subroute_hash, Flags, FrameError, FrameLimits,
    HandlerId, Message, Op,
};
use proptest::prelude::*;

const LIMITS: FrameLimits = FrameLimits::new(1 << 20);

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn parse_message(line: &str) -> Message {
    let mut m = Message::new(Op::Ping);
    for field in line.split_whitespace() {
        let (k, v) = field.split_once('=').expect("field=value");
        match k {
            "mux" => m.mux_id = v.parse().expect("mux"),
            "seq" => m.seq = v.parse().expect("seq"),
            "deadline" => m.deadline_ms = v.parse().expect("deadline"),
            "handler" => m.handler = HandlerId(v.parse().expect("handler")),
            "op" => m.op = Op::from_u8(v.parse().expect("op")).expect("known op"),
            "flags" => m.flags = Flags(v.parse().expect("flags")),
            "subroute" => m.subroute = Some(subroute_hash(v)),
            "payload" => {
                m.payload = match v {
                    "-" => None,
                    hex => Some(Bytes::from(unhex(hex))),
                }
            }
            other => panic!("unknown vector field {other}"),
        }
    }
    m
}

fn protocol_md() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../PROTOCOL.md");
    std::fs::read_to_string(path).expect("read PROTOCOL.md")
}

fn blocks<'a>(doc: &'a str, kind: &str) -> Vec<&'a str> {
    let fence = format!("```{kind}\n");
    doc.split(fence.as_str())
        .skip(1)
        .map(|rest| rest.split("```").next().expect("closing fence"))
        .collect()
}

#[test]
fn protocol_md_vectors_match_byte_for_byte() {
    let doc = protocol_md();
    let vectors = blocks(&doc, "vector");
    assert!(
        vectors.len() >= 10,
        "expected the documented vectors, found {}",
        vectors.len()
    );
    for block in vectors {
        let mut name = "";
        let mut messages = Vec::new();
        let mut checksum = None;
        let mut bytes = None;
        for line in block.lines() {
            match line.split_once(": ") {
                Some(("name", v)) => name = v,
                Some(("message", v)) => messages.push(parse_message(v)),
                Some(("checksum", v)) => checksum = Some(v == "on"),
                Some(("bytes", v)) => bytes = Some(unhex(v)),
                _ => {}
            }
        }
        let checksum = checksum.expect("checksum line");
        let bytes = bytes.expect("bytes line");
        let encoded = encode_frame(&messages, checksum);
        assert_eq!(
            &encoded[..],
            &bytes[..],
            "vector {name:?}: encoding differs"
        );
        let decoded = decode_frame(&Bytes::from(bytes), LIMITS).expect(name);
        assert_eq!(decoded, messages, "vector {name:?}: decoding differs");
    }
}

#[test]
fn protocol_md_handshake_vector_matches() {
    let doc = protocol_md();
    let block = blocks(&doc, "handshake")[0];
    let bytes = unhex(block.trim().strip_prefix("bytes: ").expect("bytes line"));
    let req = handshake::ConnectRequest {
        host: "a".into(),
        instance: "00000000-0000-0000-0000-000000000001".into(),
        clock_ms: 1_700_000_000_000,
        token: "t".into(),
        ..handshake::ConnectRequest::default()
    };
    assert_eq!(handshake::encode(&req), bytes);
    assert_eq!(
        handshake::decode::<handshake::ConnectRequest>(&bytes),
        Ok(req)
    );
}

fn any_op() -> impl Strategy<Value = Op> {
    prop::sample::select(
        Op::ALL
            .iter()
            .copied()
            .filter(|op| *op != Op::Merged)
            .collect::<Vec<_>>(),
    )
}

fn any_message() -> impl Strategy<Value = Message> {
    (
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any_op(),
        // Every combination of the flags a sender sets (the others are derived).
        (0u8..8).prop_map(|bits| {
            let mut f = Flags::NONE;
            for (bit, flag) in [
                (1, Flags::EOF),
                (2, Flags::PAYLOAD_IS_ERROR),
                (4, Flags::MORE),
            ] {
                if bits & bit != 0 {
                    f = f | flag;
                }
            }
            f
        }),
        prop::option::of(any::<u64>()),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..300)),
    )
        .prop_map(
            |(mux_id, seq, deadline_ms, handler, op, flags, subroute, payload)| Message {
                mux_id,
                seq,
                deadline_ms,
                handler: HandlerId(handler),
                op,
                flags,
                subroute,
                payload: payload.map(Bytes::from),
            },
        )
}

proptest! {
    #[test]
    fn every_op_and_flag_round_trips(m in any_message(), checksum in any::<bool>()) {
        let frame = encode_frame(std::slice::from_ref(&m), checksum);
        let decoded = decode_frame(&frame, LIMITS).expect("decode");
        prop_assert_eq!(decoded, vec![m]);
    }

    #[test]
    fn merged_frames_round_trip(ms in prop::collection::vec(any_message(), 2..20), checksum in any::<bool>()) {
        let frame = encode_frame(&ms, checksum);
        prop_assert_eq!(decode_frame(&frame, LIMITS).expect("decode"), ms);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_frame(&Bytes::from(bytes), LIMITS);
    }

    #[test]
    fn corrupted_frames_never_panic(
        ms in prop::collection::vec(any_message(), 1..5),
        checksum in any::<bool>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let frame = encode_frame(&ms, checksum).to_vec();
        let mut bad = frame.clone();
        for (at, byte) in &flips {
            let i = at.index(bad.len());
            bad[i] ^= byte | 1;
        }
        let changed = bad != frame;
        let result = decode_frame(&Bytes::from(bad), LIMITS.requiring_checksums(checksum));
        if checksum && changed {
            // With checksums no corrupted content is ever delivered: either the corruption is
            // caught, or it only touched the merged wrapper's unused header fields.
            prop_assert!(result.is_err() || result.as_ref() == Ok(&ms), "corruption delivered: {result:?}");
        }
        let truncated = frame[..cut.index(frame.len())].to_vec();
        prop_assert!(decode_frame(&Bytes::from(truncated), LIMITS).is_err());
    }
}

fn request(payload: &[u8]) -> Message {
    let mut m = Message::new(Op::Request);
    m.mux_id = 9;
    m.handler = HandlerId(3);
    m.payload = Some(Bytes::copy_from_slice(payload));
    m
}

#[test]
fn truncated_frame_is_an_error() {
    let frame = request(b"hello").encode(false);
    for len in 0..frame.len() {
        let err = decode_frame(&Bytes::copy_from_slice(&frame[..len]), LIMITS);
        assert!(err.is_err(), "prefix of {len} bytes decoded");
    }
}

#[test]
fn oversize_payload_is_refused_before_copying() {
    let frame = Bytes::from(request(&[1u8; 2000]).encode(false));
    let err = decode_frame(&frame, FrameLimits::new(1000));
    assert_eq!(
        err,
        Err(FrameError::TooLarge {
            size: 2000,
            limit: 1000
        })
    );
    // A header that announces a 4 GiB payload in a tiny frame is truncated, not allocated.
    let lie = Bytes::from_static(&[0x97, 1, 0, 0, 3, 5, 0, 0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2]);
    assert_eq!(
        decode_frame(&lie, FrameLimits::new(usize::MAX)),
        Err(FrameError::Truncated)
    );
}

#[test]
fn bad_checksum_is_an_error() {
    let mut frame = request(b"hello").encode(true);
    let n = frame.len();
    frame[n - 1] ^= 0xff;
    assert_eq!(
        decode_frame(&Bytes::from(frame), LIMITS),
        Err(FrameError::BadChecksum)
    );
    let mut frame = request(b"hello").encode(true);
    frame[11] ^= 0x01; // inside the payload
    assert_eq!(
        decode_frame(&Bytes::from(frame), LIMITS),
        Err(FrameError::BadChecksum)
    );
}

#[test]
fn a_missing_checksum_is_refused_where_required() {
    let frame = Bytes::from(request(b"hello").encode(false));
    assert!(decode_frame(&frame, LIMITS).is_ok());
    assert_eq!(
        decode_frame(&frame, LIMITS.requiring_checksums(true)),
        Err(FrameError::MissingChecksum)
    );
    let frame = encode_frame(&[request(b"a"), request(b"b")], true);
    assert!(decode_frame(&frame, LIMITS.requiring_checksums(true)).is_ok());
    let frame = encode_frame(&[request(b"a"), request(b"b")], false);
    assert_eq!(
        decode_frame(&frame, LIMITS.requiring_checksums(true)),
        Err(FrameError::MissingChecksum)
    );
    // A merged wrapper without a checksum is fine when every message inside has its own.
    let inner: Vec<u8> = [request(b"a").encode(true), request(b"b").encode(true)].concat();
    let mut wrapper = Message::new(Op::Merged);
    wrapper.payload = Some(Bytes::from(inner));
    let frame = Bytes::from(wrapper.encode(false));
    assert!(decode_frame(&frame, LIMITS.requiring_checksums(true)).is_ok());
}

#[test]
fn one_checksum_covers_a_merged_frame() {
    let frame = encode_frame(&[request(b"first"), request(b"second")], true);
    let messages = decode_frame(&frame, LIMITS.requiring_checksums(true)).expect("valid");
    assert_eq!(messages.len(), 2);
    // Any byte of any message inside is covered.
    for i in 9..frame.len() - 9 {
        let mut broken = frame.to_vec();
        broken[i] ^= 0x01;
        assert!(
            decode_frame(&Bytes::from(broken), LIMITS.requiring_checksums(true)).is_err(),
            "a change at byte {i} went unnoticed"
        );
    }
}

#[test]
fn unknown_op_and_flags_are_errors() {
    let frame = Bytes::from_static(&[0x97, 0, 0, 0, 0, 19, 0, 0xc0]);
    assert_eq!(decode_frame(&frame, LIMITS), Err(FrameError::UnknownOp(19)));
    let frame = Bytes::from_static(&[0x97, 0, 0, 0, 0, 0, 0, 0xc0]);
    assert_eq!(decode_frame(&frame, LIMITS), Err(FrameError::UnknownOp(0)));
    let frame = Bytes::from_static(&[0x97, 0, 0, 0, 0, 3, 0x40, 0xc0]);
    assert!(matches!(
        decode_frame(&frame, LIMITS),
        Err(FrameError::Malformed(_))
    ));
}

#[test]
fn inconsistent_or_nested_frames_are_errors() {
    // ZERO_LENGTH flag on an absent payload.
    let frame = Bytes::from_static(&[0x97, 0, 0, 0, 0, 3, 4, 0xc0]);
    assert!(matches!(
        decode_frame(&frame, LIMITS),
        Err(FrameError::Malformed(_))
    ));
    // Empty bin without ZERO_LENGTH.
    let frame = Bytes::from_static(&[0x97, 0, 0, 0, 0, 3, 0, 0xc4, 0]);
    assert!(matches!(
        decode_frame(&frame, LIMITS),
        Err(FrameError::Malformed(_))
    ));
    // Array length that does not match the flags.
    let frame = Bytes::from_static(&[0x98, 0, 0, 0, 0, 3, 0, 0xc0]);
    assert!(decode_frame(&frame, LIMITS).is_err());
    // Trailing bytes.
    let frame = Bytes::from_static(&[0x97, 0, 0, 0, 0, 3, 0, 0xc0, 0]);
    assert!(decode_frame(&frame, LIMITS).is_err());
    // A merged frame inside a merged frame.
    let inner = encode_frame(&[request(b"a"), request(b"b")], false);
    let mut outer = Message::new(Op::Merged);
    outer.payload = Some(inner);
    let frame = Bytes::from(outer.encode(false));
    assert_eq!(
        decode_frame(&frame, LIMITS),
        Err(FrameError::Malformed("merged messages cannot nest"))
    );
    // An empty merged frame.
    let mut empty = Message::new(Op::Merged);
    empty.payload = Some(Bytes::new());
    assert!(decode_frame(&Bytes::from(empty.encode(false)), LIMITS).is_err());
}

#[test]
fn decoded_payloads_borrow_the_frame() {
    let frame = Bytes::from(request(b"zero-copy payload").encode(false));
    let decoded = decode_frame(&frame, LIMITS).expect("decode");
    let payload = decoded[0].payload.as_ref().expect("payload");
    let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
    assert!(frame_range.contains(&(payload.as_ptr() as usize)));
}

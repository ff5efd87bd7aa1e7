//! The frame decoder on arbitrary bytes: one received WebSocket message, decoded as the
//! reader decodes it, and the payload decoders (credit, stream ack, error, close) on what
//! it carried.
//!
//! Input: one byte of settings, then the frame. Settings: bit 0 requires checksums (as a
//! connection that agreed on them does), bit 1 recomputes the frame's final checksum so
//! mutations get past it, bits 2-3 pick the maximum payload (0, 16, 1 KiB, 1 MiB).
//!
//! Checks: no panic; the two ways of walking a frame (`FrameMessages` as an iterator, and
//! `next_decoded` with its fast path) yield the same messages and the same error; every
//! message keeps the limits; every message, and the whole frame, re-encode to bytes that
//! decode to the same messages; every payload decoder accepts the encoding of what it
//! decoded and reads it back the same; the typed decoder's fast path reads every payload as
//! `rmp_serde` does, or leaves it to `rmp_serde`.

#![no_main]

use grid::codec::{
    decode_credit, decode_frame, encode_credit, encode_frame, Ack, Close, Decoded, ErrorPayload,
    Flags, FrameError, FrameLimits, FrameMessages, Message, Op,
};
use grid::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&settings, frame)) = data.split_first() else {
        return;
    };
    let require_checksum = settings & 1 != 0;
    let max_payload = [0, 16, 1024, 1 << 20][usize::from(settings >> 2) & 3];
    let limits = FrameLimits::new(max_payload).requiring_checksums(require_checksum);
    let mut frame = frame.to_vec();
    if settings & 2 != 0 {
        grid::__fuzz::fix_checksum(&mut frame);
    }
    let frame = Bytes::from(frame);

    let walked = walk(&frame, limits, false);
    let fast = walk(&frame, limits, true);
    assert_eq!(walked, fast, "the fast path and the full decoder disagree");
    let (messages, error) = walked;
    let collected = decode_frame(&frame, limits);
    match (&collected, &error) {
        (Ok(all), None) => assert_eq!(all, &messages),
        (Err(e), Some(f)) => assert_eq!(e, f),
        _ => panic!("decode_frame and FrameMessages disagree"),
    }

    for m in &messages {
        check_message(m, limits);
        payloads(m.payload.as_deref().unwrap_or_default());
    }
    if error.is_none() && !messages.is_empty() {
        // The whole frame again, as a writer would build it.
        let again = encode_frame(&messages, require_checksum);
        assert_eq!(decode_frame(&again, limits).as_ref(), Ok(&messages));
    }
    payloads(&frame);
});

/// The messages of a frame, and the error that ended them, if any.
fn walk(frame: &Bytes, limits: FrameLimits, fast: bool) -> (Vec<Message>, Option<FrameError>) {
    let mut it = match FrameMessages::new(frame, limits) {
        Ok(it) => it,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut out = Vec::new();
    loop {
        let next = if fast {
            it.next_decoded().map(|r| {
                r.map(|d| match d {
                    Decoded::Plain(head, payload) => head.to_message(payload),
                    Decoded::Whole(m) => m,
                })
            })
        } else {
            it.next()
        };
        match next {
            None => return (out, None),
            Some(Ok(m)) => out.push(m),
            Some(Err(e)) => {
                // After an error the messages end.
                assert!(it.next().is_none(), "a message after an error");
                return (out, Some(e));
            }
        }
    }
}

fn check_message(m: &Message, limits: FrameLimits) {
    assert_ne!(
        m.op,
        Op::Merged,
        "a merged message inside a frame's messages"
    );
    assert!(Flags::KNOWN.contains(m.flags), "unknown flags kept");
    assert_eq!(
        m.flags.without(Flags::DERIVED),
        m.flags,
        "derived flags kept"
    );
    let len = m.payload.as_ref().map_or(0, Bytes::len);
    assert!(len <= limits.max_payload, "a payload over the limit");
    for checksum in [false, true] {
        let bytes = Bytes::from(m.encode(checksum));
        let again = decode_frame(&bytes, FrameLimits::new(limits.max_payload));
        assert_eq!(again, Ok(vec![m.clone()]), "a message does not round-trip");
    }
}

/// Every payload decoder on `p`; what one accepts, it reads back the same once encoded.
/// And the typed decoder's fast path reads it as `rmp_serde` does, or not at all.
fn payloads(p: &[u8]) {
    grid::__fuzz::typed_decoder(p);
    if let Ok(n) = decode_credit(Some(p)) {
        assert_eq!(decode_credit(Some(&encode_credit(n))), Ok(n));
    }
    if let Ok(ack) = Ack::decode(Some(p)) {
        assert_eq!(Ack::decode(Some(&ack.encode())), Ok(ack));
    }
    if let Ok(e) = ErrorPayload::decode(p) {
        assert_eq!(ErrorPayload::decode(&e.encode()), Ok(e));
    }
    if let Some(c) = Close::decode(p) {
        assert!(
            c.reason.len() <= 123,
            "a close reason that does not fit a close frame"
        );
        assert_eq!(Close::decode(&c.encode()), Some(c));
    }
}

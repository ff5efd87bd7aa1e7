//! The handshake on arbitrary bytes: a Connect or ConnectResponse as the other side's first
//! WebSocket message (or its payload alone), read as the dialer and the acceptor read it,
//! and, when its terms are acceptable, a short session on the terms it announced.
//!
//! Input: one byte of settings, then the bytes. Settings: bit 0 reads the message as a
//! ConnectResponse (else a Connect); bit 1 takes the bytes as a whole frame (which must
//! carry a checksum, as every handshake message does) rather than as the payload alone;
//! bit 2 recomputes the frame's final checksum; bit 3 is whether this side asked for
//! checksums; bit 4 runs the session.
//!
//! Checks: no panic or unbounded allocation; what decodes re-encodes to what decodes the
//! same; the acceptor's and the dialer's decisions (`judge_connect`, `judge_response`, the
//! ones the node makes) and the checksum agreement never panic, and accept only a version
//! this side speaks and a readable instance id; and in the
//! session, an engine whose peer announced these terms keeps them (its frames are ones
//! such a peer reads, the engines' invariants hold, and a grid peer with those limits
//! never sees it break them).

#![no_main]

use grid::__fuzz::{Limits, Pair, Peer};
use grid::codec::handshake::{
    agree_terms, decode, encode, judge_connect, judge_response, ConnectRequest, ConnectResponse,
    Terms,
};
use grid::codec::{decode_frame, FrameLimits, Op};
use grid::{Bytes, Uuid};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let Some((&settings, bytes)) = data.split_first() else {
        return;
    };
    let response = settings & 1 != 0;
    let ours = settings & 8 != 0;
    let payload = if settings & 2 != 0 {
        let mut frame = bytes.to_vec();
        if settings & 4 != 0 {
            grid::__fuzz::fix_checksum(&mut frame);
        }
        // As the handshake reads: checksums required, a single message, the expected op.
        let limits = FrameLimits::new(16 << 20).requiring_checksums(true);
        let Ok(mut messages) = decode_frame(&Bytes::from(frame), limits) else {
            return;
        };
        let (Some(m), true) = (messages.pop(), messages.is_empty()) else {
            return;
        };
        let expected = if response {
            Op::ConnectResponse
        } else {
            Op::Connect
        };
        if m.op != expected {
            return;
        }
        m.payload.unwrap_or_default().to_vec()
    } else {
        bytes.to_vec()
    };

    let terms = if response {
        let Ok(r) = decode::<ConnectResponse>(&payload) else {
            return;
        };
        assert_eq!(decode::<ConnectResponse>(&encode(&r)).as_ref(), Ok(&r));
        // The dialer's decision, as a dialer that expected this host (and another) makes it.
        if let Ok((instance, terms)) = judge_response(&r, &r.host, "ws://fuzz") {
            assert!(r.accepted && agree_terms(&terms).is_ok());
            assert_eq!(Uuid::parse_str(&r.instance).ok(), Some(instance));
        }
        let other = format!("{}-other", r.host);
        assert!(judge_response(&r, &other, "ws://fuzz").is_err());
        r.terms
    } else {
        let Ok(r) = decode::<ConnectRequest>(&payload) else {
            return;
        };
        assert_eq!(decode::<ConnectRequest>(&encode(&r)).as_ref(), Ok(&r));
        // The acceptor's decision, at the dialer's own clock and far from it.
        let skew = Duration::from_secs(5);
        if let Ok(instance) = judge_connect(&r, r.clock_ms, skew) {
            assert!(agree_terms(&r.terms).is_ok());
            assert_eq!(Uuid::parse_str(&r.instance).ok(), Some(instance));
        }
        let _ = judge_connect(&r, r.clock_ms.wrapping_add(i64::MAX), skew);
        r.terms
    };
    let Ok(version) = agree_terms(&terms) else {
        return;
    };
    assert!(version >= 1);
    let _ = terms.agree_checksums(ours);
    // A session with B as a correct grid peer that announced these terms: none announces a
    // stream window of 0 bytes (its builder refuses it).
    if settings & 16 != 0 && terms.max_stream_window != Some(0) {
        session(&terms, ours);
    }
});

/// A's engine after a handshake in which B announced `terms`: a few calls and streams both
/// ways, small and large payloads, then both wind down.
fn session(terms: &Terms, ours: bool) {
    let a = Limits {
        max_message_size: 256 << 10,
        max_concurrent: 4,
        max_request_bytes: 1 << 20,
        reassembly_window: 1 << 20,
        max_send_buffer: 1 << 20,
        max_early_cancels: 100,
        ping_interval: Duration::from_secs(10),
        stream_ping_interval: Duration::from_secs(15),
    };
    let mut pair = Pair::with_terms(a, terms, ours);
    // One payload each way over a chunk (64 KiB), the others small.
    for (p, len) in [
        (Peer::A, 10),
        (Peer::A, 70_000),
        (Peer::B, 10),
        (Peer::B, 1_000),
    ] {
        pair.call(p, 7, len, 5_000, None);
        pair.open(p, 9, len / 10, 5_000, 160);
    }
    pair.pump();
    for p in [Peer::A, Peer::B] {
        for i in 0..4 {
            pair.accept(p, 0, 80);
            pair.answer(p, 0, if i == 0 { 70_000 } else { 100 }, false);
        }
    }
    pair.pump();
    for p in [Peer::A, Peer::B] {
        for i in 0..4 {
            pair.poll_opened(p, 0);
            pair.send(p, i, if i == 0 { 70_000 } else { 10 });
            pair.send(p, i, 10);
        }
    }
    pair.pump();
    pair.wind_down();
}

//! Stream windows, stepped: credit counted in bytes (a message costs its payload and 32
//! bytes), a message larger than the window, and the grants a peer may not make.

use std::task::Poll;

use bytes::Bytes;

use super::fixture::{At, Fixture};
use super::{Watch, WINDOW};
use crate::codec::{Ack, ErrorKind, ErrorPayload, Flags, Message, Op};
use crate::engine::Side;
use crate::error::Error;

#[test]
fn a_message_larger_than_the_window_goes_alone_and_the_next_waits_for_credit() {
    static BIG: [u8; 1_000] = [9; 1_000];
    let mut f = Fixture::new(At::Open);
    let b = f.b_key();
    f.b_send(&BIG)
        .expect("any credit lets one message go, whatever its size");
    assert_eq!(f.net.b.e.credit(Side::Handler, b), 0, "overrun: no credit");
    assert!(f.b_send(b"x").is_err(), "the next one waits");
    f.net.pump();
    assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(&BIG))));
    // A reports the read on its next poll: the whole cost goes back.
    assert!(matches!(f.a_recv(), Some(Err(Error::Protocol(p))) if p == "pending"));
    f.net.pump();
    assert_eq!(f.net.b.e.credit(Side::Handler, b), WINDOW);
    assert!(f.net.a.violation.is_none() && f.net.b.violation.is_none());
    f.wind_down();
    f.check_invariants("a message larger than the window");
}

#[test]
fn empty_messages_cost_their_charge_so_a_flood_of_them_is_bounded() {
    let mut f = Fixture::new(At::Open);
    // 128 bytes take four empty messages (32 bytes each); a fifth has no credit.
    for seq in 1..=5 {
        f.inject_b(Op::MuxClientMsg, seq, Flags::NONE, Some(Bytes::new()));
    }
    f.net.pump();
    for _ in 0..4 {
        assert_eq!(f.b_recv(), Some(Ok(Bytes::new())));
    }
    assert!(
        matches!(f.b_recv(), Some(Err(Error::Protocol(p))) if p.contains("without credit")),
        "the fifth fails the stream"
    );
    assert!(f.net.b.violation.is_none(), "the connection carries on");
    f.wind_down();
    f.check_invariants("empty messages");
}

#[test]
fn an_open_granting_more_than_the_callers_largest_window_is_refused_and_starts_nothing() {
    let mut net = super::Net::new();
    let mut open = Message::new(Op::ConnectMux);
    open.mux_id = 77;
    open.handler = crate::codec::HandlerId::new(7);
    open.deadline_ms = 60_000;
    open.seq = u32::try_from(super::config().peer_max_stream_window + 1).expect("fits");
    let now = net.now;
    net.b.receive(now, vec![super::merged_frame(&open)]);
    net.b.e.take_starts(&mut net.b.started);
    assert!(net.b.started.is_empty(), "no handler for an invalid open");
    assert!(net.b.violation.is_none(), "the connection carries on");
    net.b_to_a();
    let refusal = net
        .a
        .received
        .iter()
        .find(|m| m.mux_id == 77)
        .expect("an answer");
    assert_eq!(refusal.op, Op::MuxConnectError);
    let why = ErrorPayload::decode(refusal.payload.as_deref().unwrap_or_default()).expect("error");
    assert_eq!(why.kind, ErrorKind::Protocol);
    assert!(why.message.contains("over-granted"), "{}", why.message);
}

#[test]
fn an_ack_granting_more_than_the_largest_window_fails_the_stream_only() {
    let mut f = Fixture::new(At::Opening);
    let most = super::config().peer_max_stream_window;
    let ack = Ack {
        in_window: most + 1,
    };
    f.inject_a(Op::AckMux, 0, Flags::NONE, Some(ack.encode()));
    let w = Watch::new();
    assert!(matches!(
        f.net.a.e.poll_opened(f.a, &mut w.cx()),
        Poll::Ready(Err(Error::Protocol(p))) if p.contains("over-granted")
    ));
    f.a_opening = false;
    assert!(f.net.a.violation.is_none(), "the connection carries on");
    f.wind_down();
    f.check_invariants("an ack over the largest window");
}

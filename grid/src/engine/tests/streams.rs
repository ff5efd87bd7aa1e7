//! Streams, stepped: every state of a stream on each side crossed with every event that can
//! reach it, each checked for what the users see, and for the invariants that hold
//! whatever happens: the connection carries on, each side's receiver sees exactly one end,
//! the handler's input ends cleanly only after the caller's `finish`, and both engines end
//! up empty. The fixture is in fixture.rs.

use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;

use super::fixture::{err, in_every_state, text, At, Fixture};
use super::{Watch, WINDOW};
use crate::codec::{encode_credit, Ack, ErrorKind, ErrorPayload, Flags, Message, Op};
use crate::engine::Side;
use crate::error::Error;

#[test]
fn ack() {
    in_every_state("ack", |f| {
        let ack = Ack { in_window: 80 };
        f.inject_a(Op::AckMux, 0, Flags::NONE, Some(ack.encode()));
        let w = Watch::new();
        let opened = f
            .a_opening
            .then(|| f.net.a.e.stream(Side::Caller, f.a).poll_opened(&mut w.cx()));
        match f.at {
            At::OpeningUnsent | At::Opening => {
                assert!(matches!(opened, Some(Poll::Ready(Ok(a))) if a == ack));
                f.a_opening = false;
                f.a_sender = true;
                f.a_receiver = true;
            }
            // A second ack fails the stream, not the connection.
            At::Open | At::InputDone => {
                assert!(matches!(f.a_recv(), Some(Err(Error::Protocol(_)))));
            }
            At::Returned => {}
        }
    });
}

#[test]
fn refusal() {
    in_every_state("refusal", |f| {
        f.inject_a(
            Op::MuxConnectError,
            0,
            Flags::PAYLOAD_IS_ERROR,
            err(ErrorKind::UnknownHandler, "none"),
        );
        match f.at {
            At::OpeningUnsent | At::Opening => {
                assert!(matches!(f.a_open_failed(), Error::UnknownHandler { .. }));
            }
            At::Open | At::InputDone => {
                assert!(matches!(
                    f.a_recv(),
                    Some(Err(Error::UnknownHandler { .. }))
                ));
                if f.a_sender {
                    assert!(matches!(f.a_send(b"x"), Err(Error::UnknownHandler { .. })));
                }
            }
            At::Returned => {}
        }
    });
}

#[test]
fn message_from_the_handler() {
    in_every_state("handler message", |f| {
        let seq = if f.at == At::Returned { 3 } else { 1 };
        f.inject_a(Op::MuxServerMsg, seq, Flags::NONE, text(b"m"));
        match f.at {
            // Before the ack a message is the peer's mistake: the stream fails.
            At::OpeningUnsent | At::Opening => {
                assert!(matches!(f.a_open_failed(), Error::Protocol(_)));
            }
            At::Open | At::InputDone => {
                assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(b"m"))));
            }
            At::Returned => {
                assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(b"out"))));
                assert_eq!(f.a_recv(), None, "ignored after the end");
            }
        }
    });
}

#[test]
fn message_out_of_sequence() {
    in_every_state("sequence gap", |f| {
        f.inject_a(Op::MuxServerMsg, 5, Flags::NONE, text(b"m"));
        if matches!(f.at, At::Open | At::InputDone) {
            assert!(matches!(f.a_recv(), Some(Err(Error::Protocol(p))) if p.contains("expected")));
            f.net.pump();
            assert!(
                f.net.b.stopped.contains(&f.b_key()),
                "the handler side is told and stops its handler"
            );
        }
    });
}

#[test]
fn credit() {
    in_every_state("credit", |f| {
        if matches!(f.at, At::Open | At::InputDone) {
            // Spend some; a grant that takes the credit to the largest window the handler
            // side announced is fine, a second one beyond it fails the stream.
            if f.at == At::Open {
                f.a_send(b"x").expect("credit");
                f.net.pump();
            }
        }
        let most = super::config().peer_max_stream_window - WINDOW;
        for _ in 0..2 {
            f.inject_a(
                Op::UnblockClientMux,
                0,
                Flags::NONE,
                Some(encode_credit(most)),
            );
        }
        if f.at == At::Open {
            assert!(
                matches!(f.a_recv(), Some(Err(Error::Protocol(p))) if p.contains("over-granted"))
            );
            // The caller says why in its cancel: the handler's input ends with the reason.
            f.net.pump();
            assert!(
                matches!(f.b_recv(), Some(Err(Error::Protocol(p))) if p.contains("over-granted")),
                "the handler side learns why"
            );
        }
    });
}

#[test]
fn a_caller_message_without_credit_fails_the_stream_and_says_why() {
    let mut f = Fixture::new(At::Open);
    // The window takes four one-byte messages: the fifth unread is one too many.
    for seq in 1..=5 {
        f.inject_b(Op::MuxClientMsg, seq, Flags::NONE, text(b"m"));
    }
    f.net.pump();
    assert!(
        matches!(f.a_recv(), Some(Err(Error::Protocol(p))) if p.contains("without credit")),
        "the caller learns why"
    );
    f.wind_down_and_check("a message without credit");
}

#[test]
fn handler_end() {
    in_every_state("handler EOF", |f| {
        let seq = if f.at == At::Returned { 3 } else { 1 };
        f.inject_a(Op::MuxServerMsg, seq, Flags::EOF, None);
        match f.at {
            At::Open | At::InputDone => {
                assert_eq!(f.a_recv(), None, "a clean end");
                if f.at == At::Open {
                    assert_eq!(f.a_send(b"x"), Err(Error::StreamEnded));
                }
            }
            At::Returned => {
                assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(b"out"))));
                assert_eq!(f.a_recv(), None);
            }
            _ => {}
        }
    });
}

#[test]
fn handler_error() {
    in_every_state("handler error", |f| {
        let seq = if f.at == At::Returned { 3 } else { 1 };
        f.inject_a(
            Op::MuxServerMsg,
            seq,
            Flags::EOF | Flags::PAYLOAD_IS_ERROR,
            err(ErrorKind::Remote, "failed"),
        );
        if matches!(f.at, At::Open | At::InputDone) {
            assert!(matches!(f.a_recv(), Some(Err(Error::Remote(e))) if e.message == "failed"));
        }
    });
}

#[test]
fn handler_side_disconnect() {
    in_every_state("DisconnectClientMux", |f| {
        f.inject_a(Op::DisconnectClientMux, 0, Flags::NONE, None);
        if matches!(f.at, At::Open | At::InputDone) {
            assert_eq!(f.a_recv(), Some(Err(Error::Cancelled)));
            if f.at == At::Open {
                assert_eq!(f.a_send(b"x"), Err(Error::Cancelled));
            }
        }
    });
}

#[test]
fn caller_drops_its_receiver() {
    in_every_state("receiver dropped", |f| {
        if f.a_opening {
            f.net.a.e.stream(Side::Caller, f.a).abandon_open();
            f.a_opening = false;
        } else {
            f.a_drop_receiver();
        }
        f.net.pump();
        match f.at {
            At::OpeningUnsent => assert!(f.net.b.received.is_empty(), "nothing was ever sent"),
            At::Opening => assert!(f.net.b.started.iter().all(|s| f
                .net
                .b
                .e
                .handlers
                .get(s.key)
                .is_none())),
            At::Open => {
                assert_eq!(f.b_recv(), Some(Err(Error::Cancelled)), "never a clean end");
                assert!(f.net.b.stopped.contains(&f.b_key()));
                assert_eq!(f.a_send(b"x"), Err(Error::Cancelled));
            }
            At::InputDone => assert!(f.net.b.stopped.contains(&f.b_key())),
            At::Returned => {}
        }
    });
}

#[test]
fn caller_drops_its_sender_unfinished() {
    in_every_state("sender dropped", |f| {
        if !f.a_sender {
            return;
        }
        f.a_stream(f.a).drop_sender();
        f.a_sender = false;
        f.net.pump();
        if f.at == At::Open {
            assert_eq!(
                f.b_recv(),
                Some(Err(Error::Cancelled)),
                "an abandoned upload"
            );
            assert!(f.net.b.stopped.contains(&f.b_key()));
            assert_eq!(f.a_recv(), Some(Err(Error::Cancelled)));
        }
    });
}

#[test]
fn caller_finishes() {
    in_every_state("finish", |f| {
        if !f.a_sender {
            return;
        }
        if f.at == At::Open {
            f.a_send(b"last").expect("credit");
        }
        f.a_finish();
        f.net.pump();
        if f.at == At::Open {
            assert_eq!(f.b_recv(), Some(Ok(Bytes::from_static(b"last"))));
            assert_eq!(f.b_recv(), None, "a clean end after finish");
        }
    });
}

#[test]
fn stream_pings() {
    in_every_state("stream ping tick", |f| {
        f.net.advance(Duration::from_secs(16));
        let pings = f.net.a.transmit(f.net.now);
        let sent = !pings.is_empty();
        f.net.b.receive(f.net.now, pings);
        f.net.b_to_a();
        match f.at {
            // Not acknowledged yet (the open may still be on its way), or over: no ping.
            At::OpeningUnsent | At::Opening | At::Returned => {
                assert!(!f
                    .net
                    .b
                    .received
                    .iter()
                    .any(|m| m.op == Op::Ping && m.mux_id == f.a.mux_id()));
            }
            At::Open | At::InputDone => {
                assert!(sent, "the caller pings a stream the peer acknowledged");
                assert!(f
                    .net
                    .b
                    .received
                    .iter()
                    .any(|m| m.op == Op::Ping && m.mux_id == f.a.mux_id()));
                assert!(f
                    .net
                    .a
                    .received
                    .iter()
                    .any(|m| m.op == Op::Pong && m.mux_id == f.a.mux_id()));
            }
        }
    });
}

#[test]
fn a_silent_caller_is_cancelled() {
    in_every_state("silent caller", |f| {
        // The caller's stream pings are lost, but the connection is alive: A answers B's
        // connection pings at once (B hears pongs for pings sent after the stream went
        // silent) while B hears nothing of the stream.
        for _ in 0..5 {
            f.net.advance(Duration::from_secs(15));
            let _lost_stream_pings = f.net.a.transmit(f.net.now);
            let now = f.net.now;
            let mut pong = Message::new(Op::Pong);
            pong.payload = Some(f.net.b.e.ping_payload(now));
            f.net.b.e.handle(now, pong).expect("a connection pong");
            f.net.b.wake();
            let now = f.net.now;
            f.net.b.e.handle_timeout(now).expect("timeout");
            f.net.b.wake();
        }
        if matches!(f.at, At::Open | At::InputDone) {
            assert!(f.net.b.stopped.contains(&f.b_key()));
            f.net.b_to_a();
            assert_eq!(f.a_recv(), Some(Err(Error::Cancelled)));
        }
    });
}

#[test]
fn a_reader_that_is_behind_makes_no_stream_look_abandoned() {
    in_every_state("reader behind", |f| {
        // Nothing at all is read for four intervals (the pings wait in the socket): the
        // streams stay; the connection's own silence check is what acts then.
        for _ in 0..4 {
            f.net.advance(Duration::from_secs(15));
        }
        if let Some(key) = f.b {
            assert!(!f.net.b.stopped.contains(&key), "{:?}", f.at);
        }
        f.net.pump();
        if matches!(f.at, At::Open | At::InputDone) {
            assert!(f.net.b.e.handler_running(f.b_key()), "still served");
        }
    });
}

#[test]
fn deadline() {
    in_every_state("deadline", |f| {
        f.net.advance(Duration::from_secs(601));
        match f.at {
            At::OpeningUnsent | At::Opening => {
                assert!(matches!(f.a_open_failed(), Error::DeadlineExceeded));
            }
            At::Open | At::InputDone => {
                assert_eq!(f.a_recv(), Some(Err(Error::DeadlineExceeded)));
                assert!(f.net.b.stopped.contains(&f.b_key()));
            }
            At::Returned => {}
        }
    });
}

#[test]
fn lost_session() {
    in_every_state("disconnect", |f| {
        f.net.a.e.close(Error::LOST);
        f.net.b.e.close(Error::LOST);
        f.net.a.wake();
        f.net.b.wake();
        match f.at {
            // An open never written was not executed; one on its way may have been.
            At::OpeningUnsent => assert_eq!(f.a_open_failed(), Error::NOT_SENT),
            At::Opening => assert_eq!(f.a_open_failed(), Error::LOST),
            At::Open => {
                assert_eq!(f.a_recv(), Some(Err(Error::LOST)));
                assert_eq!(f.b_recv(), Some(Err(Error::LOST)));
                assert!(f.net.b.stopped.contains(&f.b_key()));
            }
            At::InputDone => assert!(f.net.b.stopped.contains(&f.b_key())),
            // What was delivered before the loss is still read, then the end.
            At::Returned => {
                assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(b"out"))));
                assert_eq!(f.a_recv(), None);
            }
        }
    });
}

#[test]
fn handler_returns() {
    in_every_state("handler returns", |f| {
        if !f.b_sender {
            return;
        }
        f.b_return(Some(ErrorPayload::new(ErrorKind::Remote, "gave up")));
        f.net.pump();
        assert!(matches!(f.a_recv(), Some(Err(Error::Remote(e))) if e.message == "gave up"));
        if f.a_sender {
            assert!(matches!(f.a_send(b"x"), Err(Error::Remote(_))));
        }
        assert!(
            f.net.b.stopped.is_empty(),
            "a handler that returned is not stopped"
        );
    });
}

#[test]
fn caller_messages_to_the_handler() {
    in_every_state("caller message", |f| {
        let seq = if f.at == At::InputDone { 2 } else { 1 };
        f.inject_b(Op::MuxClientMsg, seq, Flags::NONE, text(b"c"));
        match f.at {
            At::Open => assert_eq!(f.b_recv(), Some(Ok(Bytes::from_static(b"c")))),
            // After the caller's EOF, or before the ack, a message fails the stream.
            At::InputDone | At::Opening => {
                f.net.b_to_a();
                if f.at == At::InputDone {
                    assert!(matches!(f.a_recv(), Some(Err(Error::Protocol(_)))));
                }
            }
            _ => {}
        }
    });
}

#[test]
fn caller_cancels_on_the_wire() {
    in_every_state("DisconnectServerMux", |f| {
        f.inject_b(Op::DisconnectServerMux, 0, Flags::NONE, None);
        match f.at {
            At::Open => {
                assert_eq!(f.b_recv(), Some(Err(Error::Cancelled)));
                assert!(f.net.b.stopped.contains(&f.b_key()));
                assert_eq!(f.b_send(b"x"), Err(Error::Cancelled));
            }
            At::Opening => {
                // Cancelled before it started: the start is refused.
                assert!(!f.net.b.e.accept_stream(f.b_key(), true, None));
            }
            _ => {}
        }
    });
}

#[test]
fn pong() {
    in_every_state("stream pong", |f| {
        f.inject_a(Op::Pong, 0, Flags::NONE, None);
        if matches!(f.at, At::Open | At::InputDone) {
            // Nothing changes for the caller's users.
            assert_eq!(f.a_send(b"x").is_ok(), f.at == At::Open);
        }
    });
}

#[test]
fn a_second_open_under_a_live_mux_id() {
    for at in [At::Opening, At::Open, At::InputDone] {
        let mut f = Fixture::new(at);
        f.inject_b(Op::ConnectMux, 0, Flags::NONE, text(b"again"));
        f.net.b.assert_violation("reused", &format!("{at:?}"));
    }
    // Once the stream ended on the handler side, its id may be used again.
    let mut f = Fixture::new(At::Returned);
    f.inject_b(Op::ConnectMux, 0, Flags::NONE, None);
    f.net.b.e.take_starts(&mut f.net.b.started);
    assert!(f.net.b.violation.is_none());
    assert_eq!(f.net.b.started.len(), 2, "admitted as a new stream");
}

#[test]
fn a_deadline_before_the_ack_left_refuses_the_open() {
    let mut net = super::Net::new();
    let o = net.outgoing(7, b"open", 2);
    let a = net.a.e.open_stream(net.now, o, None).expect("open");
    net.a_to_b();
    let b = net.b.last_start().key;
    // B accepts, but its deadline passes before its writer sent the ack.
    assert!(net.b.e.served(b).accept_stream(true, None));
    net.now += Duration::from_secs(3);
    let now = net.now;
    net.b.e.handle_timeout(now).expect("timeout");
    net.b.wake();
    net.b_to_a();
    assert!(net
        .a
        .received
        .iter()
        .all(|m| m.op != Op::AckMux && m.op != Op::MuxServerMsg));
    let w = Watch::new();
    assert!(matches!(
        net.a.e.stream(Side::Caller, a).poll_opened(&mut w.cx()),
        Poll::Ready(Err(Error::DeadlineExceeded))
    ));
    assert!(net.a.violation.is_none());
}

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
use crate::engine::window::cost;
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
        let mut f = super::fixture::Fixture::new(at);
        f.inject_b(Op::ConnectMux, 0, Flags::NONE, text(b"again"));
        f.net.b.assert_violation("reused", &format!("{at:?}"));
    }
    // Once the stream ended on the handler side, its id may be used again.
    let mut f = super::fixture::Fixture::new(At::Returned);
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

#[test]
fn a_sender_waits_once_its_window_is_spent_and_is_woken_when_credit_returns() {
    let mut f = super::fixture::Fixture::new(At::Open);
    let a = f.a;
    let w = Watch::new();
    let e = &mut f.net.a.e;
    assert!(matches!(
        e.stream(Side::Caller, a).poll_credit(&mut w.cx()),
        Poll::Ready(Ok(WINDOW))
    ));
    // Four one-byte messages spend the window (the last overruns it by 4 bytes).
    for p in [b"0", b"1", b"2", b"3"] {
        e.stream(Side::Caller, a)
            .send(Bytes::from_static(p))
            .expect("on credit");
    }
    assert_eq!(e.stream(Side::Caller, a).credit(), 0);
    assert!(e
        .stream(Side::Caller, a)
        .poll_credit(&mut w.cx())
        .is_pending());
    assert!(
        e.stream(Side::Caller, a)
            .send(Bytes::from_static(b"4"))
            .is_err(),
        "nothing is sent without credit"
    );
    let before = w.woken();
    f.net.pump();
    for p in [b"0", b"1", b"2", b"3"] {
        assert_eq!(f.b_recv(), Some(Ok(Bytes::from_static(p))), "in order");
    }
    // B reports what it read on its next poll: the credit goes back to A, whose waiting
    // sender is woken.
    assert_eq!(
        f.b_recv(),
        Some(Err(Error::Protocol("pending".into()))),
        "nothing more yet"
    );
    f.net.pump();
    f.net.a.wake();
    assert!(w.woken() > before, "the waiting sender is woken");
    assert_eq!(f.a_stream(a).credit(), WINDOW, "all of it back");
    f.wind_down_and_check("window spent");
}

#[test]
fn small_large_and_chunked_messages_of_a_stream_keep_their_order() {
    // Small ones are encoded as they are queued, larger ones kept whole, the largest sent
    // in chunks: whatever lane each takes, they arrive in the order sent.
    static MID: [u8; 3_000] = [3; 3_000];
    static BIG: [u8; 70_000] = [7; 70_000];
    let mut f = super::fixture::Fixture::with_window(At::Open, 1 << 20);
    let sent: [&'static [u8]; 4] = [b"a", &MID, b"b", &BIG];
    for p in sent {
        f.b_send(p).expect("credit");
    }
    f.net.pump();
    for p in sent {
        assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(p))));
    }
    // Credit comes back as A reads; then a small one again goes early.
    assert!(matches!(f.a_recv(), Some(Err(Error::Protocol(p))) if p == "pending"));
    f.net.pump();
    f.b_send(b"c").expect("credit returned");
    f.net.pump();
    assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(b"c"))));
    f.wind_down_and_check("mixed sizes");
}

#[test]
fn credit_goes_back_while_the_receiver_works_through_a_batch() {
    let mut f = super::fixture::Fixture::new(At::Open);
    for p in [b"0", b"1", b"2", b"3"] {
        f.b_send(p).expect("credit");
    }
    let b = f.b_key();
    assert_eq!(f.b_stream(b).credit(), 0, "the window is spent");
    f.net.pump();
    // A takes all four in one step and reads one: with three still in hand, it reports
    // (one message is over an eighth of the window) and the credit goes back at once.
    assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(b"0"))));
    f.net.pump();
    assert_eq!(f.b_stream(b).credit(), WINDOW + cost(1) - 4 * cost(1));
    f.wind_down_and_check("credit mid-batch");
}

/// A frame's worth of stream data in one message.
static FRAME: [u8; crate::engine::transmit::MERGE_LIMIT] =
    [5; crate::engine::transmit::MERGE_LIMIT];

/// A stream open on a window large enough for several frames, B's sender having queued a
/// frame's worth, and the writer's visit it was queued after.
fn frame_queued() -> (super::fixture::Fixture, crate::engine::WriterVisit) {
    let mut f = super::fixture::Fixture::with_window(At::Open, 1 << 20);
    f.b_send(&FRAME).expect("credit");
    let since = f.net.b.e.take_frame_waiting();
    (f, since.expect("a frame's worth of bytes waits"))
}

#[test]
fn a_sender_learns_once_per_frame_when_a_full_frame_waits_for_the_writer() {
    let mut f = super::fixture::Fixture::with_window(At::Open, 1 << 20);
    f.b_send(b"small").expect("credit");
    assert!(
        f.net.b.e.take_frame_waiting().is_none(),
        "one small message is no frame"
    );
    assert!(!f.net.b.e.frame_full());
    f.b_send(&FRAME).expect("credit");
    assert!(
        f.net.b.e.take_frame_waiting().is_some(),
        "a frame's worth of bytes waits"
    );
    assert!(f.net.b.e.take_frame_waiting().is_none(), "reported once");
    assert!(f.net.b.e.frame_full(), "the writer need not wait for more");
    f.b_send(b"small").expect("credit");
    assert!(
        f.net.b.e.take_frame_waiting().is_none(),
        "not a second frame's worth yet"
    );
    f.net.pump();
    assert!(!f.net.b.e.frame_full(), "the writer took it");
    for p in [&b"small"[..], &FRAME, b"small"] {
        assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(p))));
    }
    f.wind_down_and_check("frame waiting");
}

#[test]
fn a_sender_that_queued_a_frame_waits_for_the_writer_to_come_for_it() {
    let (mut f, since) = frame_queued();
    let sender = super::Watch::new();
    let back =
        |f: &mut super::fixture::Fixture| f.net.b.e.poll_writer_back(since, &mut sender.cx());
    // Polled twice (say, by a select loop): one waker kept, woken once.
    assert!(back(&mut f).is_pending() && back(&mut f).is_pending());
    f.net.b.wake();
    assert_eq!(
        sender.woken(),
        0,
        "nothing wakes it before the writer comes"
    );
    f.net.pump();
    assert_eq!(sender.woken(), 1, "the writer's visit wakes it, once");
    assert!(back(&mut f).is_ready());
    assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(&FRAME))));
    f.wind_down_and_check("writer back");
}

#[test]
fn a_sender_waiting_for_the_writer_is_woken_when_the_connection_closes() {
    let (mut f, since) = frame_queued();
    let sender = super::Watch::new();
    assert!(f
        .net
        .b
        .e
        .poll_writer_back(since, &mut sender.cx())
        .is_pending());
    f.net.b.e.close(Error::LOST);
    f.net.b.wake();
    assert_eq!(sender.woken(), 1, "closing wakes a waiting sender");
    assert!(f
        .net
        .b
        .e
        .poll_writer_back(since, &mut sender.cx())
        .is_ready());
    assert!(
        f.net.b.e.outbox.visit_waiters.is_empty(),
        "a closed engine keeps no waker"
    );
}

#[test]
fn the_writer_taking_a_frame_starts_the_count_of_unsent_bytes_again() {
    static HALF: [u8; crate::engine::transmit::MERGE_LIMIT / 2] =
        [6; crate::engine::transmit::MERGE_LIMIT / 2];
    let mut f = super::fixture::Fixture::with_window(At::Open, 1 << 20);
    f.b_send(&HALF).expect("credit");
    assert!(f.net.b.e.take_frame_waiting().is_none(), "half a frame");
    f.net.pump();
    f.b_send(&HALF).expect("credit");
    assert!(
        f.net.b.e.take_frame_waiting().is_none(),
        "the writer took the first half: the count started again"
    );
    f.b_send(&HALF).expect("credit");
    assert!(f.net.b.e.take_frame_waiting().is_some(), "two halves wait");
    f.net.pump();
    for _ in 0..3 {
        assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(&HALF))));
    }
    f.wind_down_and_check("frame count reset");
}

#[test]
fn a_handler_that_drops_its_input_mid_batch_gives_back_the_credit_it_held() {
    let mut f = super::fixture::Fixture::new(At::Open);
    let a = f.a;
    for p in [b"0", b"1", b"2", b"3"] {
        f.a_send(p).expect("credit");
    }
    assert_eq!(f.a_stream(a).credit(), 0, "the window is spent");
    f.net.pump();
    // B takes all four in one step and reads one: three are in its hand, unread.
    assert_eq!(f.b_recv(), Some(Ok(Bytes::from_static(b"0"))));
    f.b_drop_receiver();
    f.net.pump();
    assert_eq!(
        f.a_stream(a).credit(),
        WINDOW,
        "the one read and the three never read are all credited back"
    );
    // What A sends now is dropped on arrival, its credit returned at once.
    for p in [b"4", b"5", b"6", b"7"] {
        f.a_send(p).expect("credit");
    }
    f.net.pump();
    f.net.pump();
    assert_eq!(f.a_stream(a).credit(), WINDOW);
    f.wind_down_and_check("handler input dropped mid-batch");
}

/// Found by the engine fuzz target: a stream that had ended with its last message still
/// queued (the handler's EOF, or the refusal of a stream whose deadline passed before its
/// handler started) kept that message, and its place in a schedule the close had emptied,
/// when the session closed: the schedule no longer matched the queues, and the stream
/// could never be released.
#[test]
fn a_closed_session_drops_what_ended_streams_still_had_to_send() {
    // The handler returned; its EOF is queued, not yet written.
    let mut f = Fixture::new(At::Open);
    f.b_return(None);
    f.net.b.wake();
    f.net.b.e.close(Error::LOST);
    f.net.b.wake();
    assert_eq!(f.net.b.e.in_flight(), (0, 0), "a stream left behind");

    // The deadline passed before the handler started: the refusal is queued.
    let mut f = Fixture::new(At::Opening);
    f.net.advance(Duration::from_secs(601));
    f.net.b.e.close(Error::LOST);
    f.net.b.wake();
    assert_eq!(f.net.b.e.in_flight(), (0, 0), "a stream left behind");
}

#[test]
fn a_handler_deadline_with_messages_still_queued_ends_the_stream_without_a_gap() {
    let mut f = super::fixture::Fixture::new(At::Open);
    // One message is written; two more are queued and never are.
    f.b_send(b"1").expect("credit");
    f.net.b_to_a();
    f.b_send(b"2").expect("credit");
    f.b_send(b"3").expect("credit");
    // Only the handler side's deadline passes (the caller's timer has not fired yet).
    f.net.now += Duration::from_secs(601);
    let now = f.net.now;
    f.net.b.e.handle_timeout(now).expect("timeout");
    f.net.b.wake();
    f.net.b_to_a();
    let end = f
        .net
        .a
        .received
        .iter()
        .rev()
        .find(|m| m.op == Op::MuxServerMsg)
        .expect("the stream's end");
    assert!(end.flags.contains(Flags::EOF) && end.flags.contains(Flags::PAYLOAD_IS_ERROR));
    assert_eq!(
        end.seq, 2,
        "one past the last message written, not the last queued"
    );
    assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(b"1"))));
    assert_eq!(f.a_recv(), Some(Err(Error::DeadlineExceeded)));
    assert!(f.net.a.violation.is_none());
}

#[test]
fn a_reader_that_stalls_for_many_ping_intervals_keeps_its_stream_and_its_connection() {
    // Pings of both kinds every second; the caller's reader stops for eight of them at a
    // time, four times over, while the handler waits on credit (a window of four
    // messages). Pings and pongs keep flowing: nothing is cancelled, nobody looks dead.
    let ping = Duration::from_secs(1);
    let mut f = Fixture::with_pings(At::Open, 4 * cost(4), ping);
    let (mut sent, mut read, mut stalls) = (0, 0, 0);
    for _ in 0..10_000 {
        if read == 200 {
            break;
        }
        while sent < 200 && f.b_send(b"item").is_ok() {
            sent += 1;
        }
        f.net.pump();
        if read == 50 * stalls {
            for _ in 0..8 {
                f.net.advance(ping);
                f.net.pump();
            }
            stalls += 1;
        }
        loop {
            match f.a_recv() {
                Some(Ok(item)) => {
                    assert_eq!(&item[..], b"item");
                    read += 1;
                    if read % 50 == 0 {
                        break;
                    }
                }
                Some(Err(Error::Protocol(p))) if p == "pending" => break,
                other => panic!("after {read} items: {other:?}"),
            }
        }
        f.net.pump();
    }
    assert_eq!((sent, read, stalls), (200, 200, 4));
    assert_eq!(f.net.a.violation, None);
    assert_eq!(f.net.b.violation, None);
    assert!(f.net.b.e.handler_running(f.b_key()), "still served");
}

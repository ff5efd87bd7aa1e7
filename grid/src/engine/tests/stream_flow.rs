//! A stream's messages on their way, stepped: a sender waiting for credit and for the
//! writer, small, large and chunked messages keeping their order, credit going back while a
//! batch is read, and messages still queued when a stream or its session ends. The states
//! and events of a stream are in streams.rs; the fixture is in fixture.rs.

use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;

use super::fixture::{At, Fixture};
use super::{Watch, WINDOW};
use crate::codec::{Flags, Op};
use crate::engine::window::cost;
use crate::engine::Side;
use crate::error::Error;

#[test]
fn a_sender_waits_once_its_window_is_spent_and_is_woken_when_credit_returns() {
    let mut f = Fixture::new(At::Open);
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
    let mut f = Fixture::with_window(At::Open, 1 << 20);
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
    let mut f = Fixture::new(At::Open);
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
fn frame_queued() -> (Fixture, crate::engine::WriterVisit) {
    let mut f = Fixture::with_window(At::Open, 1 << 20);
    f.b_send(&FRAME).expect("credit");
    let since = f.net.b.e.take_frame_waiting();
    (f, since.expect("a frame's worth of bytes waits"))
}

#[test]
fn a_sender_learns_once_per_frame_when_a_full_frame_waits_for_the_writer() {
    let mut f = Fixture::with_window(At::Open, 1 << 20);
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
    let back = |f: &mut Fixture| f.net.b.e.poll_writer_back(since, &mut sender.cx());
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
    let mut f = Fixture::with_window(At::Open, 1 << 20);
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
    let mut f = Fixture::new(At::Open);
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
    let mut f = Fixture::new(At::Open);
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

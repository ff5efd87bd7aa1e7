//! Draining, stepped: a side that leaves refuses what crosses its Drain as not executed,
//! lets what is in flight finish both ways, and its peer starts nothing new on it; it
//! closes only once the peer read the Drain; and the Drain's own rules. (Random orders of
//! calls, drains and cuts: `verdicts.rs`.)

use std::task::Poll;

use bytes::Bytes;

use super::calls::answer_of;
use super::fixture::{At, Fixture};
use super::{assert_idle, merged_frame, Net, Watch};
use crate::codec::{Message, Op};
use crate::engine::Side;
use crate::error::{Error, Execution};

const WHY: &str = "b is shutting down";

fn draining() -> Error {
    Error::Draining(WHY.to_owned())
}

/// A Drain from B, as a message A receives.
fn drain_message(mux_id: u64, reason: &[u8]) -> Bytes {
    let mut m = Message::new(Op::Drain);
    m.mux_id = mux_id;
    m.payload = Some(Bytes::copy_from_slice(reason));
    merged_frame(&m)
}

#[test]
fn calls_that_cross_the_drain_are_refused_unexecuted_and_calls_in_flight_are_answered() {
    let mut net = Net::new();
    let (first, start) = net.started_call(b"first", 60);
    net.b.e.drain(net.now, WHY);
    // A's second call and a stream open cross the Drain on the way.
    let crossing = net.call(b"second", 60);
    let stream = net.stream(7, b"open", 60);
    net.a_to_b();
    assert_eq!(net.b.started.len(), 1, "nothing new started on B");
    net.b_to_a();
    assert_eq!(answer_of(&mut net, crossing), Poll::Ready(Err(draining())));
    let w = Watch::new();
    let opened = net
        .a
        .e
        .stream(Side::Caller, stream)
        .poll_opened(&mut w.cx());
    assert!(
        matches!(&opened, Poll::Ready(Err(e)) if *e == draining()),
        "{opened:?}"
    );
    assert_eq!(draining().execution(), Execution::NotExecuted);
    // The call in flight is answered as usual.
    net.b
        .e
        .answer(start.key, Ok(Some(Bytes::from_static(b"FIRST"))));
    net.pump();
    assert_eq!(
        answer_of(&mut net, first),
        Poll::Ready(Ok(Some(Bytes::from_static(b"FIRST"))))
    );
    net.pump();
    net.assert_no_violation("drain");
    assert_idle(&net);
}

#[test]
fn a_side_told_its_peer_drains_starts_nothing_new_there_but_the_leaving_side_still_calls() {
    let mut net = Net::new();
    net.b.e.drain(net.now, WHY);
    net.pump();
    let o = net.outgoing(7, b"late", 60);
    assert_eq!(net.a.e.open_call(net.now, o.clone()), Err(draining()));
    assert!(matches!(net.a.e.open_stream(net.now, o, None), Err(e) if e == draining()));
    net.pump();
    assert!(
        !net.b
            .received
            .iter()
            .any(|m| m.op == Op::Request || m.op == Op::ConnectMux),
        "nothing was sent"
    );
    // B, which is leaving, may still call A (a handler finishing its work may need to).
    let o = net.outgoing(9, b"from b", 60);
    let key = net.b.e.open_call(net.now, o).expect("B calls A");
    net.pump();
    let start = net.a.last_start();
    net.a.e.answer(start.key, Ok(None));
    net.pump();
    let w = Watch::new();
    assert!(matches!(
        net.b.e.call(key).poll_answer(&mut w.cx()),
        Poll::Ready(Ok(_))
    ));
    net.assert_no_violation("drain");
    assert_idle(&net);
}

#[test]
fn calls_waiting_for_room_on_a_peer_that_drains_fail_unsent() {
    // B serves one call at once: A's second waits here for room.
    let mut net = Net::with_concurrency(1, 1);
    let (first, start) = net.started_call(b"first", 60);
    let waiting = net.call(b"second", 60);
    net.b.e.drain(net.now, WHY);
    net.b_to_a();
    assert_eq!(answer_of(&mut net, waiting), Poll::Ready(Err(draining())));
    net.b.e.answer(start.key, Ok(None));
    net.pump();
    assert_eq!(answer_of(&mut net, first), Poll::Ready(Ok(None)));
    assert_eq!(
        net.b
            .received
            .iter()
            .filter(|m| m.op == Op::Request)
            .count(),
        1,
        "the waiting call never left"
    );
    assert_idle(&net);
}

#[test]
fn a_stream_open_when_its_handler_side_drains_carries_on_to_its_end() {
    let mut f = Fixture::new(At::Open);
    f.net.b.e.drain(f.net.now, WHY);
    f.net.pump();
    f.a_send(b"one").expect("A still sends");
    f.b_send(b"two").expect("B still sends");
    f.net.pump();
    assert_eq!(f.b_recv(), Some(Ok(Bytes::from_static(b"one"))));
    assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(b"two"))));
    f.net.assert_no_violation("a stream through a drain");
    f.wind_down_and_check("a stream through a drain");
}

#[test]
fn the_drain_goes_once_beside_a_streams_data_and_the_driver_hears_of_it() {
    let mut f = Fixture::new(At::Open);
    let w = Watch::new();
    assert_eq!(f.net.a.e.poll_peer_drain(&w.waker), None);
    f.b_send(b"queued").expect("send");
    f.net.b.e.drain(f.net.now, WHY);
    f.net.b.e.drain(f.net.now, "said twice");
    let before = f.net.a.received.len();
    f.net.pump();
    let drains: Vec<_> = f.net.a.received[before..]
        .iter()
        .filter(|m| m.op == Op::Drain)
        .collect();
    assert_eq!(drains.len(), 1, "one Drain");
    assert_eq!(drains[0].payload.as_deref(), Some(WHY.as_bytes()));
    assert_eq!(w.woken(), 1, "the driver was woken");
    assert_eq!(f.net.a.e.poll_peer_drain(&w.waker).as_deref(), Some(WHY));
    f.wind_down_and_check("drain beside data");
}

#[test]
fn a_leaving_side_closes_only_once_the_peer_read_its_drain_and_every_refusal_is_out() {
    let mut net = Net::new();
    net.b.e.drain(net.now, WHY);
    let w = Watch::new();
    assert!(
        !net.b.e.poll_drained(&w.waker),
        "idle, but the peer has not read the Drain"
    );
    // Sent before A read the Drain: reaches B, refused.
    let crossing = net.call(b"crossing", 60);
    net.a_to_b();
    // Made before A read the Drain but not written yet: never written.
    let unwritten = net.call(b"unwritten", 60);
    net.b_to_a();
    assert_eq!(answer_of(&mut net, unwritten), Poll::Ready(Err(draining())));
    assert!(!net.b.e.poll_drained(&w.waker), "no pong yet");
    net.a_to_b();
    assert!(w.woken() >= 1, "the pong woke the driver");
    assert!(
        net.b.e.poll_drained(&w.waker),
        "the pong proves A read the Drain"
    );
    net.b_to_a();
    assert_eq!(answer_of(&mut net, crossing), Poll::Ready(Err(draining())));
    assert_eq!(
        net.b
            .received
            .iter()
            .filter(|m| m.op == Op::Request)
            .count(),
        1,
        "the unwritten call never left A"
    );
    net.assert_no_violation("drain");
    assert_idle(&net);
}

#[test]
fn a_refusal_waiting_for_the_socket_holds_the_drain_open() {
    let mut net = Net::new();
    net.b.e.drain(net.now, WHY);
    net.pump();
    let w = Watch::new();
    assert!(net.b.e.poll_drained(&w.waker));
    // A Request that crossed the Drain arrives: its refusal must go out before the close.
    let mut m = Message::new(Op::Request);
    m.mux_id = 77;
    m.handler = crate::codec::HandlerId::new(7);
    let now = net.now;
    net.b.receive(now, vec![merged_frame(&m)]);
    assert!(
        !net.b.e.poll_drained(&w.waker),
        "the refusal is not out yet"
    );
    net.b_to_a();
    assert!(w.woken() >= 1, "the writer taking it woke the driver");
    assert!(net.b.e.poll_drained(&w.waker));
    let refusal = net
        .a
        .received
        .iter()
        .find(|m| m.mux_id == 77)
        .expect("sent");
    assert_eq!(refusal.op, Op::Response);
}

#[test]
fn a_caller_opening_and_dropping_calls_fast_on_a_draining_side_is_not_taken_for_a_flooder() {
    // B serves 4 calls at once, and refuses at most that many before it thinks A floods.
    let mut net = Net::with_concurrency(4, 4);
    net.b.e.drain(net.now, WHY);
    for _ in 0..40 {
        // Each call reaches B (refused, B writes nothing), then A gives up on it.
        let key = net.call(b"x", 60);
        net.a_to_b();
        net.a.e.call(key).abandon();
        net.a.wake();
        net.a_to_b();
    }
    net.assert_no_violation("calls dropped while refused");
    net.pump();
    assert_idle(&net);
}

#[test]
fn a_drain_off_mux_zero_too_long_or_not_utf8_breaks_the_protocol_and_a_repeat_is_ignored() {
    let cases: [(u64, &[u8], Option<&str>); 4] = [
        (5, b"bye", Some("mux id 5")),
        (0, &[b'x'; 124], Some("124 bytes")),
        (0, &[0xff, 0xfe], Some("not UTF-8")),
        (0, &[b'x'; 123], None),
    ];
    for (mux, reason, violation) in cases {
        let mut net = Net::new();
        let now = net.now;
        net.a.receive(now, vec![drain_message(mux, reason)]);
        net.a.receive(now, vec![drain_message(0, b"again")]);
        match violation {
            Some(what) => net.a.assert_violation(what, "a bad Drain"),
            None => {
                net.assert_no_violation("a Drain of the longest reason, then another");
                let w = Watch::new();
                let heard = net.a.e.poll_peer_drain(&w.waker);
                assert_eq!(
                    heard.as_deref().map(str::len),
                    Some(123),
                    "the first one counts"
                );
            }
        }
    }
}

#[test]
fn both_sides_draining_at_once_finish_what_is_in_flight_both_ways() {
    let mut net = Net::new();
    let (a_call, a_start) = net.started_call(b"from a", 60);
    let o = net.outgoing(9, b"from b", 60);
    let b_call = net.b.e.open_call(net.now, o).expect("B calls A");
    net.pump();
    let b_start = net.a.last_start();
    net.a.e.drain(net.now, "a is shutting down");
    net.b.e.drain(net.now, WHY);
    net.pump();
    net.b.e.answer(a_start.key, Ok(None));
    net.a.e.answer(b_start.key, Ok(None));
    net.pump();
    assert_eq!(answer_of(&mut net, a_call), Poll::Ready(Ok(None)));
    let w = Watch::new();
    assert_eq!(
        net.b
            .e
            .call(b_call)
            .poll_answer(&mut w.cx())
            .map(|r| r.map(|p| p.into_bytes())),
        Poll::Ready(Ok(None))
    );
    for node in [&mut net.a, &mut net.b] {
        assert!(
            node.e.poll_drained(&w.waker),
            "drained: the socket may close"
        );
    }
    net.assert_no_violation("both drain");
    assert_idle(&net);
}

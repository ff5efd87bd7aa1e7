//! What a peer can make this side hold, stepped: coalesced pongs, deferred handlers behind
//! a full send buffer, a peer that reads nothing, silence, windows and reused ids.

use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;

use super::{config, Net, Watch};
use crate::codec::{Flags, HandlerId, Message, Op};
use crate::engine::violation::{DeadPeer, Violation};
use crate::engine::{Side, Transmit};

/// B handles `op` for `mux_id` as if its peer had sent it.
fn b_handles(net: &mut Net, op: Op, mux_id: u64, what: &str) {
    let mut m = Message::new(op);
    m.mux_id = mux_id;
    net.b.e.handle(net.now, m).expect(what);
}

/// B ends a batch of what it read, its handlers' starts taken.
fn b_end_batch(net: &mut Net) {
    net.b.e.take_starts(&mut net.b.started);
    net.b.e.end_batch();
}

/// A net where B's send buffer holds `bytes`.
fn send_buffer(bytes: usize) -> Net {
    let mut b = config();
    b.max_send_buffer = bytes;
    Net::with(config(), b)
}

fn ping(payload: u8) -> Message {
    let mut m = Message::new(Op::Ping);
    m.payload = Some(Bytes::from(vec![payload; 8]));
    m
}

#[test]
fn a_ping_flood_is_answered_with_one_pong_the_latest() {
    let mut net = Net::new();
    for i in 0..10_000u32 {
        net.b.e.handle(net.now, ping(i as u8)).expect("a ping");
    }
    net.b_to_a();
    let pongs: Vec<_> = net.a.received.iter().filter(|m| m.op == Op::Pong).collect();
    assert_eq!(pongs.len(), 1, "one pending pong at most");
    assert_eq!(
        pongs[0].payload.as_deref(),
        Some(&[(9999 % 256) as u8; 8][..])
    );
}

#[test]
fn a_connection_ping_carries_at_most_125_bytes() {
    let mut net = Net::new();
    let mut long = Message::new(Op::Ping);
    long.payload = Some(Bytes::from(vec![1u8; 125]));
    net.b.e.handle(net.now, long.clone()).expect("125 bytes");
    long.payload = Some(Bytes::from(vec![1u8; 126]));
    let why = net.b.e.handle(net.now, long).expect_err("126 bytes");
    assert!(
        matches!(&why, Violation::Broken(w) if w.contains("126") && w.contains("125")),
        "{why:?}"
    );
}

#[test]
fn the_silence_check_fires_at_two_intervals_not_on_a_tick() {
    let mut net = Net::new();
    let interval = config().ping_interval;
    // The peer is heard just after a ping tick: the old check (on the tick) would have let
    // it stay silent for almost three intervals.
    net.now += interval + Duration::from_millis(1);
    net.b.e.handle(net.now, ping(1)).expect("a ping");
    let heard = net.now;
    loop {
        let due = net.b.e.poll_timeout();
        net.now = due;
        if let Err(why) = net.b.e.handle_timeout(net.now) {
            assert!(matches!(why, DeadPeer::Silent { .. }), "{why}");
            break;
        }
    }
    assert_eq!(
        net.now - heard,
        interval * 2,
        "declared dead two intervals after the last word"
    );
}

#[test]
fn a_writer_that_makes_no_progress_declares_the_peer_dead() {
    let mut net = Net::new();
    let w = Watch::new();
    let mut tx = Transmit::new(0);
    let _call = net.call(b"x", 600);
    // The writer takes a frame and never comes back: the socket takes nothing.
    assert!(net
        .a
        .e
        .poll_transmit(net.now, &mut tx, &mut w.cx())
        .is_ready());
    let taken = net.now;
    // The peer keeps talking (so it is not silent), but nothing is written.
    let mut result = Ok(());
    for _ in 0..100 {
        net.now += Duration::from_secs(1);
        net.a.e.handle(net.now, ping(0)).expect("a ping");
        result = net.a.e.handle_timeout(net.now);
        if result.is_err() {
            break;
        }
    }
    assert!(
        matches!(result, Err(DeadPeer::NotReading { .. })),
        "{result:?}"
    );
    assert_eq!(net.now - taken, config().ping_interval * 2);
}

#[test]
fn no_handler_starts_while_the_answers_waiting_exceed_the_send_buffer() {
    let mut net = send_buffer(100 << 10);
    let keys: Vec<_> = (0..6).map(|_| net.call(b"x", 600)).collect();
    net.a_to_b();
    assert_eq!(net.b.started.len(), 6);
    // Each answer is 60 KiB; the peer reads none of them.
    let big = Bytes::from(vec![1u8; 60 << 10]);
    for s in net.b.started.clone() {
        net.b.e.served(s.key).answer(Ok(Some(big.clone())));
    }
    let more: Vec<_> = (0..4).map(|_| net.call(b"y", 600)).collect();
    net.a_to_b();
    assert_eq!(
        net.b.started.len(),
        6,
        "admitted, not started: 360 KiB wait for the socket"
    );
    assert_eq!(net.b.e.in_flight().1, 10, "nothing refused");
    // The writer catches up: the waiting handlers start.
    let w = Watch::new();
    let mut tx = Transmit::new(0);
    while net
        .b
        .e
        .poll_transmit(net.now, &mut tx, &mut w.cx())
        .is_ready()
    {}
    assert!(net.b.e.has_deferred_starts());
    net.b.e.take_starts(&mut net.b.started);
    assert_eq!(net.b.started.len(), 10);
    drop((keys, more));
}

#[test]
fn pings_for_streams_that_do_not_exist_are_answered_and_a_flood_of_them_is_refused() {
    let mut net = Net::new();
    let mut m = Message::new(Op::Ping);
    m.mux_id = 99;
    net.b.e.handle(net.now, m.clone()).expect("one is answered");
    net.b_to_a();
    assert!(net
        .a
        .received
        .iter()
        .any(|r| r.op == Op::DisconnectClientMux && r.mux_id == 99));
    let mut result = Ok(());
    for _ in 0..1000 {
        result = net.b.e.handle(net.now, m.clone());
        if result.is_err() {
            break;
        }
    }
    assert!(result.is_err(), "the refusals waiting are capped");
}

#[test]
fn a_peer_exceeding_the_reassembly_window_is_refused() {
    let mut b = config();
    b.reassembly_window = 200 << 10;
    let mut net = Net::with(config(), b);
    let mut result = Ok(());
    for mux in 1..10u64 {
        let mut part = Message::new(Op::Request);
        part.mux_id = mux;
        part.handler = HandlerId::new(7);
        part.flags = Flags::MORE;
        part.payload = Some(Bytes::from(vec![0u8; 64 << 10]));
        result = net.b.e.handle(net.now, part);
        if result.is_err() {
            break;
        }
    }
    assert!(
        matches!(&result, Err(Violation::OverLimit(w)) if w.contains("reassembly window")),
        "{result:?}"
    );
    assert!(net.b.e.assembling() <= 200 << 10);
}

#[test]
fn a_mux_id_reused_while_in_flight_closes_the_connection() {
    let mut net = Net::new();
    let mut req = Message::new(Op::Request);
    req.mux_id = 5;
    req.handler = HandlerId::new(7);
    net.b.e.handle(net.now, req.clone()).expect("the first");
    assert!(net
        .b
        .e
        .handle(net.now, req)
        .is_err_and(|w| matches!(&w, Violation::Broken(w) if w.contains("reused"))));
}

#[test]
fn calls_cancelled_after_their_handler_started_are_not_early_cancels() {
    let mut net = Net::new();
    for _ in 0..500 {
        let key = net.call(b"x", 600);
        net.a_to_b();
        let start = net.b.last_start();
        net.a.e.call(key).abandon();
        net.a_to_b();
        assert!(net.b.violation.is_none(), "{:?}", net.b.violation);
        net.b.e.served(start.key).answer(Ok(None));
        net.pump();
    }
    assert_eq!(net.b.e.in_flight(), (0, 0));
    let w = Watch::new();
    assert!(matches!(
        net.b
            .e
            .poll_transmit(net.now, &mut Transmit::new(0), &mut w.cx()),
        Poll::Pending
    ));
}

/// Found when the engine's invariants began to bound what it schedules (the property test
/// of props.rs hit it at once): a peer that opened a stream, pinged it and cancelled it,
/// over and over while this side's writer was blocked, left one scheduled pong per stream
/// behind, each for a stream that no longer existed: memory that grew with what the peer
/// sent, bounded by no limit.
#[test]
fn streams_cancelled_before_their_pong_left_leave_nothing_scheduled() {
    let mut net = Net::new();
    for _ in 0..1000 {
        let mut open = Message::new(Op::ConnectMux);
        open.mux_id = 9;
        open.handler = HandlerId::new(7);
        net.b.e.handle(net.now, open).expect("an open");
        b_end_batch(&mut net);
        b_handles(&mut net, Op::Ping, 9, "a stream ping");
        b_handles(&mut net, Op::DisconnectServerMux, 9, "a cancel");
        b_end_batch(&mut net);
        // No writer turn: the peer reads nothing. (`wake` checks that only the pongs of
        // live streams are scheduled.)
        net.b.wake();
    }
    assert_eq!(net.b.e.in_flight(), (0, 0));
}

/// Found when the engine's invariants began to bound what waits to start: while the
/// answers waiting for the socket exceeded the send buffer (the peer does not read), a
/// call or stream the peer opened and then cancelled, in a later batch, left its admission
/// waiting to start, with its request payload, although the call was gone: the peer could
/// make this side hold any number of payloads of any size, none of them counted against
/// its limits.
#[test]
fn calls_cancelled_while_their_start_waits_for_the_send_buffer_leave_nothing_behind() {
    let mut net = send_buffer(10 << 10);
    // An answer of 60 KiB the peer does not read fills the send buffer.
    let _call = net.call(b"x", 600);
    net.a_to_b();
    let first = net.b.last_start();
    net.b
        .e
        .answer(first.key, Ok(Some(Bytes::from(vec![1u8; 60 << 10]))));
    net.b.wake();
    for stream in [false, true].into_iter().cycle().take(1000) {
        let mut open = Message::new(if stream { Op::ConnectMux } else { Op::Request });
        open.mux_id = 9;
        open.handler = HandlerId::new(7);
        open.payload = Some(Bytes::from(vec![2u8; 100 << 10]));
        net.b.e.handle(net.now, open).expect("an open");
        b_end_batch(&mut net);
        b_handles(&mut net, Op::DisconnectServerMux, 9, "a cancel");
        b_end_batch(&mut net);
        // (`wake` checks that every admission waiting to start is for a live call.)
        net.b.wake();
    }
    assert_eq!(net.b.e.in_flight().1, 1, "only the answered call");
    assert!(!net.b.e.has_deferred_starts());
}

/// Found by the engine fuzz target: a stream's deadline passed on both sides at once, the
/// caller's cancel made room for its next stream, and both reached the handler side while
/// its own refusal of the expired stream still waited for the socket. The expired stream
/// still counted there (until its refusal was written), so the next one was refused with
/// Busy, although PROTOCOL.md §7 counts a stream only until the caller's cancel arrives.
#[test]
fn a_cancel_frees_the_slot_of_a_stream_whose_last_message_waits_for_the_socket() {
    let mut net = Net::with_concurrency(1, 1);
    let first = net.stream(7, b"first", 1);
    net.a_to_b();
    assert_eq!(net.b.started.len(), 1);
    // Both deadlines pass: A cancels, B refuses; neither has written anything yet.
    net.advance(Duration::from_secs(2));
    let second = net.stream(7, b"second", 60);
    net.a.wake();
    net.a_to_b();
    assert_eq!(net.b.started.len(), 2, "the second stream was admitted");
    net.pump();
    let w = Watch::new();
    assert!(net
        .a
        .e
        .stream(Side::Caller, second)
        .poll_opened(&mut w.cx())
        .is_pending());
    for key in [first, second] {
        net.a.e.stream(Side::Caller, key).abandon_open();
    }
    net.pump();
    super::assert_idle(&net);
}

/// A stream that had ended here, its EOF still waiting for the socket, pinged by its
/// caller (its pong queued) and then cancelled, goes at once: its pong must go with it.
#[test]
fn a_stream_released_by_a_cancel_takes_its_queued_pong_along() {
    let mut net = Net::new();
    let stream = net.stream(7, b"open", 60);
    net.a_to_b();
    let start = net.b.last_start();
    assert!(net.b.e.served(start.key).accept_stream(true, Some(1)));
    net.pump();
    net.b
        .e
        .stream(crate::engine::Side::Handler, start.key)
        .drop_sender();
    let mut input = super::Reader::default();
    input.drop(&mut net.b, crate::engine::Side::Handler, start.key);
    net.b.e.served(start.key).returned(None);
    net.b.wake();
    // The caller pings the stream, then cancels it, before the handler side writes.
    b_handles(&mut net, Op::Ping, stream.mux_id(), "a stream ping");
    net.b.wake();
    b_handles(
        &mut net,
        Op::DisconnectServerMux,
        stream.mux_id(),
        "a cancel",
    );
    net.b.wake();
    assert_eq!(net.b.e.in_flight(), (0, 0));
}

/// Found by the `beside_stream` benchmark: a stream's messages queued for the socket counted
/// as answers waiting, so a stream with a wide window on a slow link kept every call from
/// starting for as long as it ran (a 512 B call waited 58 s). A stream's messages are
/// bounded by its window; only single calls' answers hold back new handlers.
#[test]
fn a_streams_queued_messages_never_keep_calls_from_starting_and_stop_at_the_send_buffer() {
    let mut a = config();
    a.stream_window = 64 << 10;
    a.max_stream_window = 64 << 10;
    let mut b = config();
    b.peer_max_stream_window = 64 << 10;
    b.max_send_buffer = 10 << 10;
    let mut net = Net::with(a, b);
    let _opened = net.stream(7, b"open", 60);
    net.a_to_b();
    let stream = net.b.last_start().key;
    assert!(net.b.e.served(stream).accept_stream(false, None));
    // The handler queues messages, none written, until they fill the send buffer (10 KiB,
    // well within the 64 KiB window): then its sender waits, credit or not.
    let w = Watch::new();
    let mut queued = 0;
    loop {
        let mut payload = Some(Bytes::from(vec![3u8; 1000]));
        match net
            .b
            .e
            .stream(Side::Handler, stream)
            .poll_send(&mut payload, &mut w.cx())
        {
            Poll::Ready(Ok(())) => queued += 1,
            Poll::Pending => break,
            Poll::Ready(Err(e)) => panic!("{e}"),
        }
        assert!(queued <= 11, "the send buffer bounds what a stream queues");
    }
    assert_eq!(queued, 11, "the last one that found room overruns it");
    assert!(net.b.e.streams_send_buffer_full());
    assert!(
        net.b.e.stream(Side::Handler, stream).credit() > 30_000,
        "credit left"
    );
    let started = net.b.started.len();
    let _call = net.call(b"beside", 60);
    net.a_to_b();
    assert_eq!(
        net.b.started.len(),
        started + 1,
        "the call's handler started"
    );
    // The writer takes what waits: the sender is woken, and sends again.
    let woken = w.woken();
    net.b_to_a();
    assert!(w.woken() > woken, "the waiting sender is woken");
    let mut payload = Some(Bytes::from(vec![3u8; 1000]));
    assert!(net
        .b
        .e
        .stream(Side::Handler, stream)
        .poll_send(&mut payload, &mut w.cx())
        .is_ready());
    assert!(!net.b.e.has_deferred_starts());
}

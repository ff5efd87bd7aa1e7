//! Single calls, stepped: answers, drops at every point, deadlines on either side, refusals,
//! lost sessions, chunked payloads within the peer's window.

use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;

use super::{assert_idle, config, Net, Watch};
use crate::codec::{ErrorKind, Flags, Message, Op};
use crate::engine::violation::Violation;
use crate::engine::Side;
use crate::error::Error;

/// The call's answer as the caller's future sees it: its joined payload, or its error
/// (one the handler side sent, decoded by the engine).
pub(super) fn answer_of(
    net: &mut Net,
    key: crate::engine::Key,
) -> Poll<Result<Option<Bytes>, Error>> {
    let w = Watch::new();
    net.a
        .e
        .call(key)
        .poll_answer(&mut w.cx())
        .map(|r| r.map(|payload| payload.into_bytes()))
}

#[test]
fn a_call_is_answered_and_leaves_nothing_behind() {
    let mut net = Net::new();
    let key = net.call(b"hi", 60);
    let w = Watch::new();
    assert!(net.a.e.call(key).poll_answer(&mut w.cx()).is_pending());
    net.pump();
    let start = net.b.last_start();
    assert_eq!(start.payload.into_bytes().as_deref(), Some(&b"hi"[..]));
    assert!(start.deadline.is_some_and(|d| d > net.now));
    net.b
        .e
        .answer(start.key, Ok(Some(Bytes::from_static(b"HI"))));
    net.pump();
    assert_eq!(w.woken(), 1, "the caller is woken once");
    let answer = answer_of(&mut net, key);
    let Poll::Ready(Ok(payload)) = answer else {
        panic!("answered: {answer:?}")
    };
    assert_eq!(payload.as_deref(), Some(&b"HI"[..]));
    assert_idle(&net);
}

#[test]
fn a_call_dropped_before_it_was_written_is_never_sent() {
    let mut net = Net::new();
    let key = net.call(b"hi", 60);
    net.a.e.call(key).abandon();
    net.pump();
    assert!(
        net.b.received.is_empty(),
        "nothing reached the handler side"
    );
    assert_idle(&net);
}

#[test]
fn a_call_dropped_after_it_was_written_stops_the_handler_and_its_late_answer_is_dropped() {
    let mut net = Net::new();
    let (key, start) = net.started_call(b"hi", 60);
    net.a.e.call(key).abandon();
    net.pump();
    assert_eq!(net.b.stopped, vec![start.key], "the handler is stopped");
    net.b.e.served(start.key).answer(Ok(None));
    net.pump();
    assert!(
        !net.a.received.iter().any(|m| m.op == Op::Response),
        "no answer is sent for a cancelled call"
    );
    assert_idle(&net);
}

#[test]
fn the_caller_deadline_fails_the_call_and_cancels_the_handler() {
    let mut net = Net::new();
    let (key, start) = net.started_call(b"hi", 2);
    net.advance(Duration::from_millis(1500));
    assert!(answer_of(&mut net, key).is_pending());
    // Only the caller's clock moves past the deadline: the cancel must stop the handler.
    net.now += Duration::from_secs(1);
    net.a.e.handle_timeout(net.now).expect("timeout");
    assert!(matches!(
        answer_of(&mut net, key),
        Poll::Ready(Err(Error::DeadlineExceeded))
    ));
    net.pump();
    assert_eq!(net.b.stopped, vec![start.key]);
    assert_idle(&net);
}

#[test]
fn the_handler_side_enforces_the_deadline_alone_and_sends_nothing_late() {
    let mut net = Net::new();
    let _key = net.call(b"hi", 2);
    net.a_to_b();
    let start = net.b.last_start();
    net.now += Duration::from_secs(3);
    net.b.e.handle_timeout(net.now).expect("timeout");
    net.b.stopped.extend(net.b.e.take_stops());
    assert_eq!(net.b.stopped, vec![start.key], "stopped at its deadline");
    net.b.e.served(start.key).answer(Ok(None));
    net.b_to_a();
    assert!(net.a.received.iter().all(|m| m.op != Op::Response));
    assert_eq!(net.b.e.in_flight(), (0, 0));
}

#[test]
fn an_unknown_handler_is_refused_with_an_error_answer() {
    let mut net = Net::new();
    let key = net
        .a
        .e
        .open_call(net.now, net.outgoing(9, b"", 60))
        .expect("open");
    net.pump();
    let start = net.b.last_start();
    net.b
        .e
        .refuse(start.key, ErrorKind::UnknownHandler, "no such handler");
    net.pump();
    let answer = answer_of(&mut net, key);
    assert!(
        matches!(
            answer,
            Poll::Ready(Err(Error::UnknownHandler { handler, subroute: None }))
                if handler == crate::codec::HandlerId::new(9)
        ),
        "{answer:?}"
    );
    assert_idle(&net);
}

#[test]
fn a_lost_session_fails_every_call_and_stops_every_handler() {
    let mut net = Net::new();
    let keys: Vec<_> = (0..3).map(|_| net.call(b"x", 60)).collect();
    net.pump();
    assert_eq!(net.b.started.len(), 3);
    // One more call, queued but not yet written when the session is lost.
    let unsent = net.call(b"y", 60);
    net.a.e.close(Error::LOST);
    net.b.e.close(Error::LOST);
    net.b.stopped.extend(net.b.e.take_stops());
    assert_eq!(net.b.stopped.len(), 3);
    for key in keys {
        // They were sent: their handlers may have run.
        assert_eq!(answer_of(&mut net, key), Poll::Ready(Err(Error::LOST)));
    }
    assert_eq!(
        answer_of(&mut net, unsent),
        Poll::Ready(Err(Error::NOT_SENT))
    );
    assert_eq!(
        net.a.e.open_call(net.now, net.outgoing(7, b"x", 60)).err(),
        Some(Error::NOT_SENT),
        "a call made after the loss is not sent"
    );
    assert_idle(&net);
}

#[test]
fn beyond_the_peers_limit_calls_wait_for_a_slot_within_their_deadline() {
    let mut a = config();
    a.peer_max_concurrent = 2;
    let mut net = Net::with(a, config());
    let keys: Vec<_> = (0..4)
        .map(|i| {
            let secs = if i == 3 { 1 } else { 60 };
            net.a
                .e
                .open_call(net.now, net.outgoing(7, b"x", secs))
                .expect("open")
        })
        .collect();
    net.pump();
    assert_eq!(
        net.b.started.len(),
        2,
        "the peer never gets more than its limit"
    );
    // The fourth call's deadline passes while it waits: it fails, and is never sent.
    net.advance(Duration::from_secs(2));
    assert!(matches!(
        answer_of(&mut net, keys[3]),
        Poll::Ready(Err(Error::DeadlineExceeded))
    ));
    // An answer frees a slot: the third call goes.
    let first = net.b.started[0].key;
    net.b.e.served(first).answer(Ok(None));
    net.pump();
    assert_eq!(net.b.started.len(), 3);
    assert!(answer_of(&mut net, keys[0]).is_ready());
    let rest: Vec<_> = net.b.started[1..].iter().map(|s| s.key).collect();
    for key in rest {
        net.b.e.served(key).answer(Ok(None));
    }
    net.pump();
    for key in &keys[1..3] {
        assert!(matches!(answer_of(&mut net, *key), Poll::Ready(Ok(_))));
    }
    assert_eq!(net.b.started.len(), 3, "the expired call never left");
    assert_idle(&net);
}

#[test]
fn a_peer_calling_beyond_the_limit_gets_busy_refusals_and_then_is_disconnected() {
    // A peer that ignores the announced limit.
    let mut net = Net::with_concurrency(1000, 4);
    let keys: Vec<_> = (0..6).map(|_| net.call(b"x", 60)).collect();
    net.pump();
    assert_eq!(net.b.started.len(), 4, "four started");
    let busy = keys
        .iter()
        .filter(|k| matches!(answer_of(&mut net, **k), Poll::Ready(Err(Error::Busy(_)))))
        .count();
    assert_eq!(busy, 2, "two refused with Busy");
    // A flood that never reads its refusals: beyond the limit of waiting refusals, the
    // peer is disconnected.
    for _ in 0..20 {
        let _ = net.a.e.open_call(net.now, net.outgoing(7, b"x", 60));
    }
    net.a_to_b();
    net.b
        .assert_violation("without reading", "a flood of refusals");
}

#[test]
fn large_payloads_are_chunked_and_reassembled_within_the_peers_window() {
    let mut a = config();
    a.peer_reassembly_window = 600 * 1024;
    let mut b = config();
    b.reassembly_window = 600 * 1024;
    let mut net = Net::with(a, b);
    let big = Bytes::from(vec![5u8; 300 * 1024]);
    let keys: Vec<_> = (0..6)
        .map(|_| {
            let mut o = net.outgoing(7, b"", 60);
            o.payload = Some(big.clone());
            net.a.e.open_call(net.now, o).expect("open")
        })
        .collect();
    for _ in 0..200 {
        net.a_to_b();
        assert!(net.b.violation.is_none(), "{:?}", net.b.violation);
        for start in net.b.started.drain(..) {
            assert_eq!(start.payload.into_bytes(), Some(big.clone()));
            net.b.e.served(start.key).answer(Ok(None));
        }
        net.b_to_a();
    }
    let held = net.b.max_assembling;
    assert!(held > 0 && held <= 600 * 1024, "held {held}");
    for key in keys {
        assert!(matches!(answer_of(&mut net, key), Poll::Ready(Ok(_))));
    }
    assert_idle(&net);
}

#[test]
fn a_large_request_cancelled_half_way_is_dropped_by_the_peer() {
    let mut net = Net::new();
    let mut o = net.outgoing(7, b"", 60);
    o.payload = Some(Bytes::from(vec![1u8; 512 * 1024]));
    let key = net.a.e.open_call(net.now, o).expect("open");
    let w = Watch::new();
    let mut tx = crate::engine::Transmit::new(0);
    for _ in 0..2 {
        assert!(net
            .a
            .e
            .poll_transmit(net.now, &mut tx, &mut w.cx())
            .is_ready());
        let chunk = tx.chunk.take().expect("a chunk");
        assert!(chunk.flags.contains(Flags::MORE));
        net.b.e.handle(net.now, chunk).expect("a valid chunk");
    }
    assert!(net.b.e.assembling() > 0, "partly received");
    net.a.e.call(key).abandon();
    net.pump();
    assert!(net.b.started.is_empty());
    assert_idle(&net);
}

#[test]
fn calls_opened_and_cancelled_in_one_frame_never_start_and_a_flood_of_them_is_refused() {
    let mut net = Net::new();
    for _ in 0..50 {
        let k = net.call(b"x", 60);
        // Written, then cancelled before the next frame: the peer sees both in a row.
        let frames = net.a.transmit(net.now);
        net.a.e.call(k).abandon();
        let mut frames2 = net.a.transmit(net.now);
        let mut all = frames;
        all.append(&mut frames2);
        // Both frames in one batch, as a peer sending them merged would have it.
        let limits = crate::codec::FrameLimits::new(1 << 20).requiring_checksums(true);
        for f in all {
            for m in crate::codec::FrameMessages::new(&f, limits).expect("frame") {
                net.b
                    .e
                    .handle(net.now, m.expect("msg"))
                    .expect("within the limit");
            }
        }
        net.b.e.take_starts(&mut net.b.started);
        net.b.e.end_batch();
    }
    assert!(net.b.started.is_empty(), "no handler started");
    assert_eq!(net.b.e.in_flight(), (0, 0));
    // Past the limit (100 per ping interval here), the peer is a flooder.
    let mut result = Ok(());
    for _ in 0..60 {
        let mut open = Message::new(Op::Request);
        open.mux_id = 77;
        open.handler = crate::codec::HandlerId::new(7);
        let mut cancel = Message::new(Op::DisconnectServerMux);
        cancel.mux_id = 77;
        result = net
            .b
            .e
            .handle(net.now, open)
            .and_then(|()| net.b.e.handle(net.now, cancel));
        if result.is_err() {
            break;
        }
    }
    assert!(
        matches!(&result, Err(Violation::OverLimit(w)) if w.contains("rapid reset")),
        "{result:?}"
    );
}

#[test]
fn requests_beyond_the_peers_request_window_wait_and_a_peer_ignoring_it_is_refused() {
    let window = 300 * 1024;
    let big = Bytes::from(vec![3u8; 128 * 1024]);
    let open = |net: &mut Net| {
        let mut o = net.outgoing(7, b"", 60);
        o.payload = Some(big.clone());
        net.a.e.open_call(net.now, o).expect("open")
    };
    let mut a = config();
    a.peer_max_request_bytes = window;
    let mut b = config();
    b.max_request_bytes = window;
    let mut net = Net::with(a, b.clone());
    let keys: Vec<_> = (0..3).map(|_| open(&mut net)).collect();
    net.pump();
    assert_eq!(net.b.started.len(), 2, "two requests fit in the window");
    let first = net.b.started[0].key;
    net.b.e.served(first).answer(Ok(None));
    net.pump();
    assert_eq!(net.b.started.len(), 3, "an answer made room for the third");
    assert!(matches!(answer_of(&mut net, keys[0]), Poll::Ready(Ok(_))));

    // A peer that ignores the window is refused beyond it.
    let mut rude = config();
    rude.peer_max_request_bytes = usize::MAX;
    let mut net = Net::with(rude, b);
    let keys: Vec<_> = (0..3).map(|_| open(&mut net)).collect();
    net.pump();
    assert_eq!(net.b.started.len(), 2);
    assert!(matches!(
        answer_of(&mut net, keys[2]),
        Poll::Ready(Err(Error::Busy(_)))
    ));
}

/// Found by the engine fuzz target: with the peer serving as many calls as it takes, a
/// cancelled call made room for a stream waiting to open, and both left in one frame, but
/// the open ahead of the cancel (a stream's small messages are encoded as they are queued,
/// and went into the frame before the messages encoded by the writer): the peer, still
/// at its limit when the open arrived, refused it with Busy.
#[test]
fn an_open_waiting_for_a_slot_reaches_the_peer_after_the_cancel_that_made_room() {
    let mut net = Net::with_concurrency(1, 1);
    let call = net.call(b"x", 60);
    net.a_to_b();
    assert_eq!(net.b.started.len(), 1);
    net.a.e.call(call).abandon();
    let stream = net.stream(9, b"open", 60);
    net.a.wake();
    // One writer turn takes the cancel, which makes room, and the open.
    net.a_to_b_one();
    assert_eq!(net.b.started.len(), 2, "the stream was admitted");
    assert!(net.b.started[1].stream);
    net.b_to_a();
    let w = Watch::new();
    assert!(net
        .a
        .e
        .stream(Side::Caller, stream)
        .poll_opened(&mut w.cx())
        .is_pending());
    net.a.e.stream(Side::Caller, stream).abandon_open();
    net.pump();
    assert_idle(&net);
}

//! Payloads over the receiver's maximum message size from a peer that ignored the agreed
//! size: each fails its own call or stream with the size and the limit, whole or chunked,
//! and the connection carries on.

use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;

use super::{assert_idle, config, Net, Reader, Watch};
use crate::codec::{ErrorKind, ErrorPayload, HandlerId};
use crate::engine::{Key, Outgoing, Side};
use crate::error::Error;

/// The receiver's limit in these tests.
const LIMIT: usize = 1000;
/// A size sent as one message, and one sent in chunks (over 64 KiB).
const SIZES: [usize; 2] = [2000, 100_000];

/// A sends up to 1 MiB whatever B accepts; B accepts `LIMIT` bytes (or the reverse).
fn net(small_b: bool) -> Net {
    let (mut small, big) = (config(), config());
    small.max_message_size = LIMIT;
    if small_b {
        Net::with(big, small)
    } else {
        Net::with(small, big)
    }
}

fn outgoing(net: &Net, payload: Bytes) -> Outgoing {
    Outgoing {
        handler: HandlerId::new(7),
        subroute: None,
        payload: Some(payload),
        deadline: net.now + Duration::from_secs(60),
    }
}

/// A's call under `key`, answered: its error (sent by the handler side, or found here).
fn call_failure(net: &mut Net, key: Key) -> Error {
    let w = Watch::new();
    match net.a.e.call(key).poll_answer(&mut w.cx()) {
        Poll::Ready(Ok(payload)) => panic!("answered: {payload:?}"),
        Poll::Ready(Err(e)) => e,
        Poll::Pending => panic!("the call was not answered"),
    }
}

/// One more call each way still works.
fn still_connected(net: &mut Net) {
    let (key, start) = net.started_call(b"small", 60);
    net.b
        .e
        .answer(start.key, Ok(Some(Bytes::from_static(b"ok"))));
    net.pump();
    let w = Watch::new();
    assert!(matches!(
        net.a.e.call(key).poll_answer(&mut w.cx()),
        Poll::Ready(Ok(_))
    ));
    net.assert_no_violation("after the oversize payload");
}

/// For each of [`SIZES`], on a new [`net`]`(small_b)`: `over` sends a payload of that size
/// and checks how it failed; then one more call each way still works, and nothing is left
/// behind.
fn each_size(small_b: bool, over: impl Fn(&mut Net, usize)) {
    for size in SIZES {
        let mut net = net(small_b);
        over(&mut net, size);
        still_connected(&mut net);
        assert_idle(&net);
    }
}

#[test]
fn a_request_over_the_limit_is_refused_with_its_size() {
    each_size(true, |net, size| {
        let payload = Bytes::from(vec![5u8; size]);
        let key = net
            .a
            .e
            .open_call(net.now, outgoing(net, payload))
            .expect("open");
        net.pump();
        assert!(net.b.started.is_empty(), "{size}: no handler started");
        // Refused by the handler side, with the size and the limit.
        assert_eq!(
            call_failure(net, key),
            Error::MessageTooLarge { size, limit: LIMIT },
            "{size}"
        );
        assert!(
            net.b.max_assembling <= LIMIT,
            "{size}: held {}",
            net.b.max_assembling
        );
    });
}

#[test]
fn a_stream_open_over_the_limit_is_refused_with_its_size() {
    each_size(true, |net, size| {
        let payload = Bytes::from(vec![5u8; size]);
        let key = net
            .a
            .e
            .open_stream(net.now, outgoing(net, payload), None)
            .expect("open");
        net.pump();
        assert!(net.b.started.is_empty(), "{size}: no handler started");
        let w = Watch::new();
        match net.a.e.stream(Side::Caller, key).poll_opened(&mut w.cx()) {
            Poll::Ready(Err(Error::MessageTooLarge { size: s, limit })) => {
                assert_eq!((s, limit), (size, LIMIT));
            }
            other => panic!("{size}: expected MessageTooLarge, got {other:?}"),
        }
        net.a.e.stream(Side::Caller, key).abandon_open();
    });
}

#[test]
fn an_answer_over_the_callers_limit_fails_the_call_with_its_size() {
    each_size(false, |net, size| {
        let (key, start) = net.started_call(b"q", 60);
        net.b
            .e
            .answer(start.key, Ok(Some(Bytes::from(vec![1u8; size]))));
        net.pump();
        assert_eq!(
            call_failure(net, key),
            Error::MessageTooLarge { size, limit: LIMIT },
            "{size}"
        );
    });
}

/// An open stream from A to B, windows of 4 each way.
fn open_stream(net: &mut Net) -> (Key, Key) {
    let a = net
        .a
        .e
        .open_stream(net.now, outgoing(net, Bytes::from_static(b"open")), None)
        .expect("open");
    net.pump();
    let b = net.b.last_start().key;
    assert!(net.b.e.served(b).accept_stream(true, None));
    net.pump();
    let w = Watch::new();
    assert!(matches!(
        net.a.e.stream(Side::Caller, a).poll_opened(&mut w.cx()),
        Poll::Ready(Ok(_))
    ));
    (a, b)
}

fn send(net: &mut Net, side: Side, key: Key, payload: Bytes) {
    let node = match side {
        Side::Caller => &mut net.a,
        Side::Handler => &mut net.b,
    };
    let w = Watch::new();
    let mut payload = Some(payload);
    assert!(node
        .e
        .stream(side, key)
        .poll_send(&mut payload, &mut w.cx())
        .is_ready());
    node.wake();
}

#[test]
fn a_stream_message_over_the_limit_fails_that_stream_on_both_sides() {
    for (size, to_handler) in SIZES.into_iter().flat_map(|s| [(s, true), (s, false)]) {
        let mut net = net(to_handler);
        let (a, b) = open_stream(&mut net);
        let (from, key, to, other) = if to_handler {
            (Side::Caller, a, Side::Handler, b)
        } else {
            (Side::Handler, b, Side::Caller, a)
        };
        send(&mut net, from, key, Bytes::from_static(b"first"));
        send(&mut net, from, key, Bytes::from(vec![1u8; size]));
        net.pump();
        let ctx = format!("{size} bytes to the {to:?}");
        let (receiver, sender) = match to {
            Side::Handler => (&mut net.b, &mut net.a),
            Side::Caller => (&mut net.a, &mut net.b),
        };
        let mut reader = Reader::default();
        // What came before is delivered, then the stream's error.
        assert_eq!(
            reader.poll(receiver, to, other),
            Poll::Ready(Some(Ok(Bytes::from_static(b"first")))),
            "{ctx}"
        );
        assert_eq!(
            reader.poll(receiver, to, other),
            Poll::Ready(Some(Err(Error::MessageTooLarge { size, limit: LIMIT }))),
            "{ctx}"
        );
        // The sending side was told, with the numbers: its sends fail with them.
        let w = Watch::new();
        let mut more = Some(Bytes::from_static(b"more"));
        match sender.e.stream(from, key).poll_send(&mut more, &mut w.cx()) {
            Poll::Ready(Err(Error::MessageTooLarge { size: s, limit })) => {
                assert_eq!((s, limit), (size, LIMIT), "{ctx}");
            }
            other => panic!("{ctx}: the sender was not told: {other:?}"),
        }
        reader.drop(receiver, to, other);
        net.a.e.stream(Side::Caller, a).drop_sender();
        net.b.e.stream(Side::Handler, b).drop_sender();
        net.b.e.served(b).returned(None);
        let mut a_reader = Reader::default();
        if to_handler {
            while let Poll::Ready(Some(Ok(_))) = a_reader.poll(&mut net.a, Side::Caller, a) {}
            a_reader.drop(&mut net.a, Side::Caller, a);
        } else {
            let mut b_reader = Reader::default();
            b_reader.drop(&mut net.b, Side::Handler, b);
        }
        net.pump();
        still_connected(&mut net);
        net.advance(Duration::from_secs(120));
        net.pump();
        assert_idle(&net);
    }
}

#[test]
fn a_ping_over_the_limit_is_a_protocol_error() {
    let mut net = net(true);
    let mut ping = crate::codec::Message::new(crate::codec::Op::Ping);
    ping.payload = Some(Bytes::from(vec![0u8; 2000]));
    let now = net.now;
    net.b.receive(now, vec![super::merged_frame(&ping)]);
    let why = net.b.violation.clone().expect("a violation");
    assert!(why.contains("2000") && why.contains("1000"), "{why}");
}

/// Found by the engine fuzz target: the builder took a maximum message size of a single
/// byte, and a node configured so took its peer's stream ack (then its pings, credit and
/// errors) for a protocol error, and closed the connection: two correct nodes could not
/// talk. The builder now asks for at least `MIN_MESSAGE_SIZE`, in which every control
/// message grid sends fits: this is two such nodes running streams to their end.
#[test]
fn the_control_messages_fit_the_smallest_maximum_message_size() {
    let min = crate::engine::MIN_MESSAGE_SIZE;
    assert!(ErrorPayload::too_large(u64::MAX, u64::MAX).encode().len() <= min);
    let mut c = config();
    c.max_message_size = min;
    c.send_limit = min;
    let mut net = Net::with(c.clone(), c);
    let opens: Vec<Key> = [25, 600]
        .into_iter()
        .map(|secs| {
            let mut o = outgoing(&net, Bytes::from(vec![1u8; min]));
            o.deadline = net.now + Duration::from_secs(secs);
            net.a.e.open_stream(net.now, o, None).expect("open")
        })
        .collect();
    net.a_to_b();
    let served: Vec<Key> = net.b.started.iter().map(|s| s.key).collect();
    for &key in &served {
        assert!(net.b.e.served(key).accept_stream(true, None));
    }
    net.pump();
    let w = Watch::new();
    for &key in &opens {
        assert!(net
            .a
            .e
            .stream(Side::Caller, key)
            .poll_opened(&mut w.cx())
            .is_ready());
    }
    // Messages of the largest size both ways, read as they come (credit goes back).
    let (mut up, mut down) = (Reader::default(), Reader::default());
    for _ in 0..8 {
        let mut p = Some(Bytes::from(vec![2u8; min]));
        let _ = net
            .a
            .e
            .stream(Side::Caller, opens[1])
            .poll_send(&mut p, &mut w.cx());
        let mut p = Some(Bytes::from(vec![3u8; min]));
        let _ = net
            .b
            .e
            .stream(Side::Handler, served[1])
            .poll_send(&mut p, &mut w.cx());
        net.pump();
        let _ = up.poll(&mut net.b, Side::Handler, served[1]);
        let _ = down.poll(&mut net.a, Side::Caller, opens[1]);
        net.pump();
    }
    // Pings and pongs, of the connection and of the streams; the first stream's deadline
    // passes (its errors travel both ways); the second ends with the handler's error.
    for _ in 0..6 {
        net.advance(Duration::from_secs(5));
        net.pump();
    }
    net.b
        .e
        .stream_returned(served[1], Some(ErrorPayload::new(ErrorKind::Remote, "x")));
    net.pump();
    net.assert_no_violation("streams at the smallest maximum message size");
}

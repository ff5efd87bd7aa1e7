//! The chunk window: a large payload has at most a window of chunk bytes unconfirmed by the
//! peer's pongs; small messages pass while it is closed; on a long path it grows to what the
//! path carries, on a short one it stays at its start; a peer that never answers pings
//! gets one window and the call ends at its deadline; a call cancelled with the window full
//! leaves it to the next.

use std::time::Duration;

use bytes::Bytes;

use super::link::Link;
use super::{assert_idle, config, Net};
use crate::codec::Op;
use crate::engine::chunk_window::CHUNK_WINDOW_START;
use crate::engine::outbox::CHUNK;

/// The tests' engines, taking payloads of up to 64 MiB, as grid's defaults do.
fn large() -> crate::engine::Config {
    let mut c = config();
    c.max_message_size = 64 << 20;
    c.send_limit = 64 << 20;
    c.max_request_bytes = 64 << 20;
    c.peer_max_request_bytes = 64 << 20;
    c.reassembly_window = 64 << 20;
    c.peer_reassembly_window = 64 << 20;
    c
}

/// A call from A with `payload` and a deadline `secs` from now.
fn call(net: &mut Net, payload: Bytes, secs: u64) -> crate::engine::Key {
    let mut o = net.outgoing(7, b"", secs);
    o.payload = Some(payload);
    net.a.e.open_call(net.now, o).expect("open")
}

/// Payload bytes of the Requests `node` has received, and how many of them were small.
fn requests(node: &super::Node) -> (u64, usize) {
    let requests = node.received.iter().filter(|m| m.op == Op::Request);
    let bytes = requests
        .clone()
        .map(|m| m.payload.as_ref().map_or(0, |p| p.len() as u64));
    let small = requests.filter(|m| m.payload.as_ref().is_some_and(|p| p.len() < 100));
    (bytes.sum(), small.count())
}

#[test]
fn a_large_payload_stops_at_the_window_small_calls_pass_and_a_pong_reopens_it() {
    let mut net = Net::with(large(), large());
    let big = Bytes::from(vec![3u8; 4 << 20]);
    let key = call(&mut net, big.clone(), 60);
    // A writes until its window is full, and stops: nothing it sent is confirmed yet.
    net.a_to_b();
    assert_eq!(requests(&net.b).0, CHUNK_WINDOW_START);
    let last = net.b.received.last().map(|m| (m.op, m.mux_id));
    assert_eq!(
        last,
        Some((Op::Ping, 0)),
        "a ping follows the chunk that fills the window"
    );
    assert!(net.a.transmit(net.now).iter().all(|f| f.len() < CHUNK));
    // A small call is not held back by the closed window.
    let small = net.call(b"small", 60);
    net.a_to_b();
    assert_eq!(requests(&net.b).1, 1, "the small call went");
    assert_eq!(requests(&net.b).0, CHUNK_WINDOW_START + 5);
    // B's pong confirms what it read: A sends on, a window at a time, to the end.
    for _ in 0..200 {
        net.b_to_a();
        net.a_to_b();
        for start in net.b.started.drain(..) {
            net.b.e.served(start.key).answer(Ok(None));
        }
    }
    assert_eq!(requests(&net.b).0, big.len() as u64 + 5);
    net.pump();
    for k in [key, small] {
        assert!(matches!(
            super::calls::answer_of(&mut net, k),
            std::task::Poll::Ready(Ok(_))
        ));
    }
    assert_idle(&net);
}

/// Sends one `size`-byte request from A to B over `link`; returns the most chunk bytes
/// that were ever on the line or unread at B beyond A's window at the time (0 when the
/// window was kept) and A's window at the end.
fn send_over(link: &mut Link, size: usize) -> (u64, u64) {
    let key = call(&mut link.net, Bytes::from(vec![9u8; size]), 60);
    let t0 = link.net.now;
    let mut over = 0;
    let mut largest = 0;
    while link.net.b.started.is_empty() {
        link.tick();
        let window = link.net.a.e.chunk_window.size();
        largest = largest.max(window);
        let unread = link.net.a.e.chunk_window.sent() - requests(&link.net.b).0;
        over = over.max(unread.saturating_sub(window));
        assert!(link.net.now < t0 + Duration::from_secs(30), "stuck");
    }
    let start = link.net.b.last_start();
    link.net.b.started.clear();
    link.net.b.e.served(start.key).answer(Ok(None));
    while super::calls::answer_of(&mut link.net, key).is_pending() {
        link.tick();
    }
    (over, largest)
}

#[test]
fn on_a_long_path_the_window_grows_to_fill_it_and_never_has_more_unread() {
    // 10 ms, 100 MB/s: a megabyte in flight fills the path, three times the start.
    let mut link = Link::new(large(), Duration::from_millis(10), Some(100_000), 1);
    link.run(Duration::from_millis(50));
    let t0 = link.net.now;
    let (over, largest) = send_over(&mut link, 48 << 20);
    assert_eq!(over, 0, "never more unread than the window");
    assert!(
        largest >= 3 * CHUNK_WINDOW_START,
        "the window grew to {largest}"
    );
    // 48 MiB at 100 MB/s take half a second on the line; the ramp adds a little.
    let took = link.net.now - t0;
    assert!(
        took < Duration::from_millis(900),
        "took {took:?} of virtual time"
    );
    assert_idle(&link.net);
}

#[test]
fn on_a_short_path_the_window_stays_at_its_start() {
    // 0.2 ms, 100 MB/s: 20 kB in flight fill it (40-60 kB at the simulation's step),
    // far less than the start.
    let mut link = Link::new(large(), Duration::from_micros(200), Some(100_000), 1);
    link.run(Duration::from_millis(50));
    let (over, largest) = send_over(&mut link, 16 << 20);
    assert_eq!(over, 0);
    assert_eq!(largest, CHUNK_WINDOW_START);
    assert_idle(&link.net);
}

#[test]
fn a_peer_that_never_answers_pings_gets_one_window_and_the_call_ends_at_its_deadline() {
    let mut net = Net::with(large(), large());
    let key = call(&mut net, Bytes::from(vec![3u8; 4 << 20]), 2);
    for _ in 0..10 {
        net.a_to_b();
        // B's frames, its pongs among them, are lost.
        drop(net.b.transmit(net.now));
    }
    assert_eq!(
        requests(&net.b).0,
        CHUNK_WINDOW_START,
        "one window, no more"
    );
    assert!(net.b.e.assembling() > 0);
    net.advance(Duration::from_secs(3));
    assert!(matches!(
        super::calls::answer_of(&mut net, key),
        std::task::Poll::Ready(Err(crate::error::Error::DeadlineExceeded))
    ));
    // The cancel that follows makes B drop what it holds of the payload.
    net.a_to_b();
    assert_eq!(net.b.e.assembling(), 0);
    net.assert_no_violation("a peer that does not answer pings");
}

#[test]
fn a_large_call_cancelled_while_the_window_is_full_leaves_the_window_to_the_next() {
    let mut net = Net::with(large(), large());
    let first = call(&mut net, Bytes::from(vec![3u8; 4 << 20]), 60);
    net.a_to_b();
    assert_eq!(requests(&net.b).0, CHUNK_WINDOW_START, "the window is full");
    net.a.e.call(first).abandon();
    // The next large call gets the window back once B's pongs confirm the cancelled bytes.
    let next = Bytes::from(vec![4u8; 1 << 20]);
    let second = call(&mut net, next.clone(), 60);
    for _ in 0..100 {
        net.a_to_b();
        net.b_to_a();
        for start in net.b.started.drain(..) {
            assert_eq!(
                start.payload.into_bytes(),
                Some(next.clone()),
                "only the second ran"
            );
            net.b.e.served(start.key).answer(Ok(None));
        }
    }
    net.pump();
    assert!(matches!(
        super::calls::answer_of(&mut net, second),
        std::task::Poll::Ready(Ok(_))
    ));
    assert_idle(&net);
}

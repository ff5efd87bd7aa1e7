//! Stream windows, stepped: credit counted in bytes (a message costs its payload and 64
//! bytes), a message larger than the window, and the grants a peer may not make.

use std::time::Duration;

use bytes::Bytes;

use super::fixture::{At, Fixture};
use super::link::Link;
use super::WINDOW;
use crate::codec::{Ack, ErrorKind, ErrorPayload, Flags, Message, Op};
use crate::engine::window::cost;
use crate::engine::Side;
use crate::error::Error;

#[test]
fn a_message_larger_than_the_window_goes_alone_and_the_next_waits_for_credit() {
    static BIG: [u8; 1_000] = [9; 1_000];
    let mut f = Fixture::new(At::Open);
    let b = f.b_key();
    f.b_send(&BIG)
        .expect("any credit lets one message go, whatever its size");
    assert_eq!(f.b_stream(b).credit(), 0, "overrun: no credit");
    assert!(f.b_send(b"x").is_err(), "the next one waits");
    f.net.pump();
    assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(&BIG))));
    // A reports the read on its next poll: the whole cost goes back.
    assert!(matches!(f.a_recv(), Some(Err(Error::Protocol(p))) if p == "pending"));
    f.net.pump();
    assert_eq!(f.b_stream(b).credit(), WINDOW);
    assert!(f.net.a.violation.is_none() && f.net.b.violation.is_none());
    f.wind_down_and_check("a message larger than the window");
}

#[test]
fn empty_messages_cost_their_charge_so_a_flood_of_them_is_bounded() {
    let mut f = Fixture::new(At::Open);
    // 256 bytes take four empty messages (64 bytes each); a fifth has no credit.
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
    f.wind_down_and_check("empty messages");
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
    assert!(matches!(
        f.a_open_failed(),
        Error::Protocol(p) if p.contains("over-granted")
    ));
    assert!(f.net.a.violation.is_none(), "the connection carries on");
    f.wind_down_and_check("an ack over the largest window");
}

// ---- windows that fit the link, within the budget ------------------------------------------

const MS: Duration = Duration::from_millis(1);

/// A config whose windows start at 64 KiB, may grow to 16 MiB, within `budget` bytes a
/// connection.
fn tuned(budget: u64) -> crate::engine::Config {
    let mut c = super::config();
    c.max_message_size = 1 << 20;
    c.stream_window = 64 << 10;
    c.max_stream_window = 16 << 20;
    c.peer_max_stream_window = 16 << 20;
    c.stream_budget = budget;
    c
}

#[test]
fn a_window_grows_to_the_bandwidth_delay_product_fills_the_link_and_keeps_its_queue_short() {
    // 10 ms and 100 MB/s: a bandwidth-delay product of 1 MB, sixteen times the start.
    let mut link = Link::new(tuned(64 << 20), 10 * MS, Some(100_000), 16 << 10);
    let s = link.open(None);
    assert_eq!(link.window(s), 64 << 10, "it starts modest");
    link.run(1000 * MS);
    // Over the next half second the stream carries what the line does, and what waits in
    // the line's queue (a ping's round trip beyond 10 ms) stays a fraction of a round trip:
    // the window stays near the bandwidth-delay product instead of doubling past it.
    let before = link.flows[s].read;
    let mut worst = Duration::ZERO;
    let mut windows = Vec::new();
    for _ in 0..50 {
        link.run(10 * MS);
        worst = worst.max(link.net.a.e.last_rtt().unwrap_or_default());
        windows.push(link.window(s));
    }
    let moved = link.flows[s].read - before;
    assert!(
        moved >= 45_000_000,
        "{moved} bytes in 500 ms of a 100 MB/s line"
    );
    assert!(
        worst <= 15 * MS,
        "a round trip of {worst:?} beside the stream"
    );
    assert!(
        windows.iter().all(|w| (1_000_000..=2_000_000).contains(w)),
        "windows of {windows:?} bytes for a bandwidth-delay product of 1 MB (and credit \
         returned an eighth of the window at a time)"
    );
}

#[test]
fn a_window_grows_only_to_its_cap() {
    // An unlimited line at 10 ms: the sender alone is the limit, far beyond the cap.
    let mut link = Link::new(tuned(64 << 20), 10 * MS, None, 16 << 10);
    let s = link.open(Some(1 << 20));
    link.run(500 * MS);
    assert_eq!(link.window(s), 1 << 20);
}

#[test]
fn a_window_on_a_short_link_covers_the_hosts_delay_and_no_more() {
    // A short link (100 µs, a round trip of about 300 µs in 100 µs steps) at 200 MB/s: a
    // bandwidth-delay product of 60 KB, but a busy host can stall a stream's tasks for
    // longer than that (tuning.rs): the window grows past its start of 256 KiB to cover
    // the path plus the hosts' delay, and stops within four times what that carries
    // (it doubles while half its size or more moves per host round trip).
    let mut config = tuned(64 << 20);
    config.stream_window = 256 << 10;
    let mut link = Link::new(config, Duration::from_micros(100), Some(200_000), 1024);
    let s = link.open(None);
    link.run(300 * MS);
    assert!(link.flows[s].read > 50_000_000, "it filled the link");
    let window = link.window(s);
    let covered = 200 * (300 + 2_000) * 1024 / 1000;
    assert!(
        (covered..=4 * covered).contains(&window),
        "{window} bytes against {covered} carried per host round trip"
    );
}

#[test]
fn a_window_shrinks_back_when_its_stream_slows_down() {
    let mut link = Link::new(tuned(64 << 20), 10 * MS, None, 16 << 10);
    let s = link.open(None);
    // Six doublings from 64 KiB, each a span of four round trips and one more for the
    // growth to come back as data.
    link.run(400 * MS);
    let grown = link.window(s);
    assert!(grown >= 4 << 20, "grown to {grown}");
    // Now one message every 2 ms: 80 KB a round trip, far less than the window. What is
    // read is no longer returned in full (granted credit cannot be taken back: a window
    // shrinks by what its stream moves).
    link.flows[s].every = 20;
    link.run(5_000 * MS);
    let window = link.window(s);
    assert!(
        (64 << 10..=512 << 10).contains(&window),
        "{window} bytes after slowing down (was {grown})"
    );
}

#[test]
fn a_reader_that_stops_keeps_its_window_and_the_window_never_grows_for_it() {
    let mut link = Link::new(tuned(64 << 20), 10 * MS, None, 16 << 10);
    let s = link.open(None);
    link.flows[s].reading = false;
    link.run(500 * MS);
    assert_eq!(link.window(s), 64 << 10, "nothing read, nothing grown");
    let held = link
        .net
        .a
        .e
        .stream_mut(Side::Caller, link.flows[s].a)
        .map_or(0, |st| st.recv.window.held());
    assert!(
        held <= (64 << 10) + cost(16 << 10),
        "{held} bytes held: at most the window and one message"
    );
}

#[test]
fn the_budget_is_shared_fairly_never_exceeded_and_freed_when_streams_end() {
    // Two streams on a 10 ms line with a budget for 2 MiB of windows: the first grows
    // alone, then the second comes, and the first gives back until both have about half.
    let budget = 2 << 20;
    let mut link = Link::new(tuned(budget), 10 * MS, None, 16 << 10);
    let first = link.open(None);
    link.run(500 * MS);
    assert!(
        link.window(first) >= budget * 3 / 4,
        "{}",
        link.window(first)
    );
    let second = link.open(None);
    link.run(3000 * MS);
    let (w1, w2) = (link.window(first), link.window(second));
    assert!(
        w1 + w2 <= budget + 2 * crate::engine::MIN_WINDOW,
        "{w1} + {w2} over the budget"
    );
    assert!(
        w2 >= budget / 4 && w1 >= budget / 4,
        "not shared: {w1} and {w2} of {budget}"
    );
    // Both move.
    let before = (link.flows[first].read, link.flows[second].read);
    link.run(500 * MS);
    assert!(link.flows[first].read > before.0 && link.flows[second].read > before.1);
    // Ended and released, the windows go back to the budget.
    for mut f in std::mem::take(&mut link.flows) {
        f.reader.drop(&mut link.net.a, Side::Caller, f.a);
        link.net.b.e.stream(Side::Handler, f.b).drop_sender();
    }
    link.run(100 * MS);
    assert_eq!(link.net.a.e.stream_windows(), 0, "windows left behind");
}

#[test]
fn the_first_ping_goes_at_connect_and_measures_the_round_trip_windows_are_sized_by() {
    let mut net = super::Net::new();
    let start = net.now;
    assert_eq!(
        net.a.e.poll_timeout(),
        start,
        "due at once, not after a ping interval"
    );
    net.advance(Duration::ZERO);
    let frames = net.a.transmit(net.now);
    // 3 ms each way.
    net.now += Duration::from_millis(3);
    net.b.receive(net.now, frames);
    assert!(
        net.b
            .received
            .iter()
            .any(|m| m.op == Op::Ping && m.mux_id == 0 && m.payload.is_some()),
        "a connection ping carrying its time"
    );
    let back = net.b.transmit(net.now);
    net.now += Duration::from_millis(3);
    net.a.receive(net.now, back);
    assert_eq!(net.a.e.last_rtt(), Some(Duration::from_millis(6)));
    assert_eq!(net.a.e.rtt.get(), Some(Duration::from_millis(6)));
    // The next one waits a whole interval.
    net.advance(Duration::ZERO);
    net.a_to_b();
    let pings = |net: &super::Net| {
        let r = &net.b.received;
        r.iter()
            .filter(|m| m.op == Op::Ping && m.mux_id == 0)
            .count()
    };
    assert_eq!(pings(&net), 1, "one ping, not one per step");
    net.advance(super::config().ping_interval - Duration::from_millis(7));
    net.a_to_b();
    assert_eq!(pings(&net), 1, "none before the interval");
    net.advance(Duration::from_millis(1));
    net.a_to_b();
    assert_eq!(pings(&net), 2, "the next at the interval");
    net.assert_no_violation("pings at connect");
}

//! A handler's sender staging messages under a lease, stepped: what it queues is exactly
//! what sending one message at a time would have queued, the lease holds every other send
//! back until it ends, and a stream that ends meanwhile drops what was staged.

use std::task::Poll;

use bytes::Bytes;

use super::fixture::{At, Fixture};
use super::Watch;
use crate::engine::{InPlace, Side, Staged};

/// Payload sizes that cross every form of the length (empty, `bin 8`, `bin 16`) and the
/// largest staged size.
fn payload(i: usize) -> Bytes {
    let len = match i % 7 {
        0 => 0,
        1 => 1,
        2 => 64,
        3 => 255,
        4 => 256,
        5 => 2048,
        _ => 700,
    };
    Bytes::from(vec![i as u8; len])
}

/// Sends `payload(0..)` one at a time until the credit runs out; how many went.
fn send_one_by_one(f: &mut Fixture) -> usize {
    let key = f.b_key();
    let w = Watch::new();
    let mut sent = 0;
    loop {
        let mut p = Some(payload(sent));
        match f.b_stream(key).poll_send(&mut p, &mut w.cx()) {
            Poll::Ready(r) => r.expect("the stream is open"),
            Poll::Pending => return sent,
        }
        sent += 1;
    }
}

/// Stages `payload(0..)` under leases until no lease is given (the credit ran out),
/// queueing each stage as the sender does once it is full; how many went.
fn send_staged(f: &mut Fixture) -> usize {
    let key = f.b_key();
    let mut staged = Staged::default();
    let mut sent = 0;
    while let Some(mut lease) = f.b_stream(key).lease() {
        while staged.push(&mut lease, &payload(sent)) {
            sent += 1;
            if staged.full(&lease) {
                break;
            }
        }
        f.b_stream(key).send_staged(&mut staged);
        assert!(staged.is_empty(), "queueing empties the stage");
        f.net.b.wake();
    }
    sent
}

/// On streams of windows from one byte to a megabyte, sending `payload(0..)` as `first`
/// does and as `second` does, until the credit runs out, sends as many messages, leaves
/// the same credit and writes the same frames, byte for byte; and the caller reads every
/// message, in order.
fn assert_sent_alike(
    first: fn(&mut Fixture) -> usize,
    second: fn(&mut Fixture) -> usize,
    event: &str,
) {
    for window in [1, 300, 5_000, 64 * 1024, 1 << 20] {
        let mut one = Fixture::with_window(At::Open, window);
        let mut other = Fixture::with_window(At::Open, window);
        let n = first(&mut one);
        let m = second(&mut other);
        assert_eq!(n, m, "window {window}: as many messages on the same credit");
        assert!(n > 0, "window {window}: something was sent");
        let key = one.b_key();
        assert_eq!(
            one.net.b.e.stream(Side::Handler, key).credit(),
            other.net.b.e.stream(Side::Handler, key).credit(),
            "window {window}: the same credit left"
        );
        let now = one.net.now;
        let frames = other.net.b.transmit(now);
        assert_eq!(
            one.net.b.transmit(now),
            frames,
            "window {window}: the same frames, byte for byte"
        );
        // And the caller reads every message, in order.
        other.net.a.receive(now, frames);
        for i in 0..m {
            assert_eq!(other.a_recv(), Some(Ok(payload(i))), "message {i}");
        }
        for mut f in [one, other] {
            f.wind_down_and_check(event);
        }
    }
}

#[test]
fn messages_staged_under_a_lease_go_out_as_the_same_bytes_as_sent_one_at_a_time() {
    assert_sent_alike(send_one_by_one, send_staged, "staged");
}

/// As [`send_staged`], with each payload encoded straight into the stage
/// ([`Staged::push_with`]); one it hands back (empty) is sent on its own, after the stage
/// is queued, as `send_stage` does.
fn send_in_place(f: &mut Fixture) -> usize {
    let key = f.b_key();
    let mut staged = Staged::default();
    let mut sent = 0;
    let w = Watch::new();
    while let Some(mut lease) = f.b_stream(key).lease() {
        loop {
            let p = payload(sent);
            let encode = |buf: &mut Vec<u8>| -> Result<(), ()> {
                buf.extend_from_slice(&p);
                Ok(())
            };
            match staged.push_with(&mut lease, encode) {
                InPlace::Staged => sent += 1,
                InPlace::NoRoom(_) => break,
                InPlace::Whole(whole) => {
                    assert!(whole.is_empty(), "only the empty payload is handed back");
                    f.b_stream(key).send_staged(&mut staged);
                    let mut whole = Some(whole);
                    let sent_whole = f.b_stream(key).poll_send(&mut whole, &mut w.cx());
                    assert!(sent_whole.is_ready(), "the lease left credit for it");
                    sent += 1;
                    break;
                }
                InPlace::Failed(()) => unreachable!("the encoder does not fail"),
            }
            if staged.full(&lease) {
                break;
            }
        }
        f.b_stream(key).send_staged(&mut staged);
        f.net.b.wake();
    }
    sent
}

#[test]
fn payloads_encoded_in_place_go_out_as_the_same_bytes_as_payloads_copied_in() {
    assert_sent_alike(send_staged, send_in_place, "in place");
}

#[test]
fn an_encoding_that_fails_or_panics_or_grows_large_leaves_no_trace_in_the_stage() {
    let sends = |bad: bool| {
        let mut f = Fixture::with_window(At::Open, 64 * 1024);
        let key = f.b_key();
        let mut lease = f.b_stream(key).lease().expect("credit");
        let mut staged = Staged::default();
        assert!(staged.push(&mut lease, b"before"));
        if bad {
            let failed = staged.push_with(&mut lease, |buf| {
                buf.extend_from_slice(b"half");
                Err("cannot")
            });
            assert!(matches!(failed, InPlace::Failed("cannot")));
            let large = staged.push_with(&mut lease, |buf| -> Result<(), ()> {
                buf.resize(buf.len() + 3000, 7);
                Ok(())
            });
            assert!(
                matches!(&large, InPlace::Whole(p) if p.len() == 3000 && p.iter().all(|b| *b == 7)),
                "a payload too large to stage is handed back whole"
            );
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                staged.push_with(&mut lease, |buf| -> Result<(), ()> {
                    buf.extend_from_slice(b"partial");
                    panic!("a Serialize impl panics")
                })
            }));
            assert!(panicked.is_err());
        }
        assert!(staged.push(&mut lease, b"after"));
        f.b_stream(key).send_staged(&mut staged);
        f.net.b.wake();
        let now = f.net.now;
        let frames = f.net.b.transmit(now);
        f.net.a.receive(now, frames.clone());
        assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(b"before"))));
        assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(b"after"))));
        f.wind_down_and_check("in place");
        frames
    };
    assert_eq!(
        sends(true),
        sends(false),
        "the same bytes, numbered the same"
    );
}

#[test]
fn a_lease_holds_every_other_send_back_until_it_ends() {
    let mut f = Fixture::with_window(At::Open, 64 * 1024);
    let key = f.b_key();
    let mut lease = f.b_stream(key).lease().expect("credit");
    assert!(f.b_stream(key).lease().is_none(), "one lease at a time");
    let mut staged = Staged::default();
    assert!(staged.push(&mut lease, b"first"));
    // The sender, moved to another task, sends on its own: it waits for the lease.
    let w = Watch::new();
    let mut second = Some(Bytes::from_static(b"second"));
    let e = &mut f.net.b.e;
    assert!(e
        .stream(Side::Handler, key)
        .poll_send(&mut second, &mut w.cx())
        .is_pending());
    assert!(e
        .stream(Side::Handler, key)
        .poll_credit(&mut w.cx())
        .is_pending());
    assert!(e
        .stream(Side::Handler, key)
        .poll_unleased(&mut w.cx())
        .is_pending());
    e.stream(Side::Handler, key).send_staged(&mut staged);
    f.net.b.wake();
    assert!(
        w.woken() > 0,
        "the waiting sender is woken when the lease ends"
    );
    let e = &mut f.net.b.e;
    assert!(e
        .stream(Side::Handler, key)
        .poll_unleased(&mut w.cx())
        .is_ready());
    assert!(matches!(
        e.stream(Side::Handler, key)
            .poll_send(&mut second, &mut w.cx()),
        Poll::Ready(Ok(()))
    ));
    f.net.pump();
    assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(b"first"))));
    assert_eq!(f.a_recv(), Some(Ok(Bytes::from_static(b"second"))));
    f.wind_down_and_check("lease");
}

#[test]
fn no_lease_without_credit_or_behind_a_message_queued_whole() {
    let mut f = Fixture::with_window(At::Open, 1 << 20);
    let key = f.b_key();
    // A payload too large to stage is queued whole: staged ones may not pass it.
    let w = Watch::new();
    let mut large = Some(Bytes::from(vec![7u8; 100_000]));
    assert!(f
        .b_stream(key)
        .poll_send(&mut large, &mut w.cx())
        .is_ready());
    assert!(f.b_stream(key).lease().is_none());
    f.net.pump();
    while let Some(Ok(_)) = f.a_recv() {}
    // Now sent: a lease again, until the credit is spent.
    let mut lease = f.b_stream(key).lease().expect("credit");
    let mut staged = Staged::default();
    assert!(
        !staged.push(&mut lease, &[0u8; 4096]),
        "a payload beyond the staged size goes on its own"
    );
    while staged.push(&mut lease, &[1u8; 1000]) {}
    f.b_stream(key).send_staged(&mut staged);
    assert_eq!(f.b_stream(key).credit(), 0);
    assert!(f.b_stream(key).lease().is_none(), "no credit");
    f.wind_down_and_check("no lease");
}

#[test]
fn a_stream_that_ends_while_a_lease_is_out_drops_what_was_staged() {
    let mut f = Fixture::with_window(At::Open, 64 * 1024);
    let key = f.b_key();
    let mut lease = f.b_stream(key).lease().expect("credit");
    let mut staged = Staged::default();
    assert!(staged.push(&mut lease, b"late"));
    // The caller gives up: its cancel reaches the handler's side.
    f.a_drop_receiver();
    f.net.pump();
    f.b_stream(key).send_staged(&mut staged);
    f.net.b.wake();
    assert!(staged.is_empty());
    let now = f.net.now;
    let frames = f.net.b.transmit(now);
    assert!(
        frames.iter().all(|fr| !fr.windows(4).any(|w| w == b"late")),
        "nothing staged goes out on an ended stream"
    );
    f.wind_down_and_check("ended while leased");
}

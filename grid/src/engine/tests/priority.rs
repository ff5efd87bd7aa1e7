//! What goes ahead of queued stream data, stepped: credit and single calls are written in
//! the next frame however much stream data waits, so a saturating stream neither holds a
//! sender back on credit it is owed nor adds its backlog to a small call's latency.

use bytes::Bytes;

use super::fixture::{At, Fixture};
use crate::codec::Op;
use crate::engine::Side;

/// Encoded as queued, and 43 of them fill a frame.
static MSG: [u8; 1500] = [1; 1500];

/// Where `op` first appears in what `received` holds, if it does.
fn first(received: &[crate::codec::Message], op: Op) -> Option<usize> {
    received.iter().position(|m| m.op == op)
}

#[test]
fn a_single_call_goes_ahead_of_a_streams_backlog() {
    let mut f = Fixture::with_window(At::Open, 1 << 20);
    // A has frames' worth of stream data queued, then makes a call.
    for _ in 0..300 {
        f.a_send(&MSG).expect("credit");
    }
    let call = f.net.call(b"small", 60);
    let before = f.net.b.received.len();
    f.net.a_to_b_one();
    let frame = &f.net.b.received[before..];
    assert!(
        first(frame, Op::Request).is_some(),
        "the call waits behind stream data"
    );
    assert!(first(frame, Op::MuxClientMsg).is_some(), "a full frame");
    f.net.a.e.drop_call(call);
    f.net.pump();
    f.wind_down();
    f.check_invariants("a call beside a backlog");
}

#[test]
fn credit_goes_ahead_of_the_data_its_stream_has_queued() {
    let mut f = Fixture::with_window(At::Open, 128 << 10);
    // B (the handler) has two frames of output queued, unwritten, when it reads A's input:
    // the credit it owes A goes out in B's next frame.
    for _ in 0..40 {
        f.a_send(&MSG).expect("credit");
    }
    f.net.a_to_b();
    for _ in 0..80 {
        f.b_send(&MSG).expect("credit");
    }
    for _ in 0..40 {
        assert_eq!(f.b_recv(), Some(Ok(Bytes::from_static(&MSG))));
    }
    // The reads are reported on the next poll.
    let _ = f.b_recv();
    let before = f.net.a.received.len();
    f.net.b_to_a_one();
    let frame = &f.net.a.received[before..];
    assert!(
        first(frame, Op::UnblockClientMux).is_some(),
        "credit waits behind data"
    );
    assert!(first(frame, Op::MuxServerMsg).is_some(), "a full frame");
    assert!(f.net.a.e.credit(Side::Caller, f.a) > 0);
    f.net.pump();
    f.wind_down();
    f.check_invariants("credit beside a backlog");
}

#[test]
fn credit_granted_while_a_grant_waits_joins_it() {
    let mut f = Fixture::with_window(At::Open, 4 << 10);
    for _ in 0..3 {
        f.a_send(&MSG).expect("credit");
    }
    f.net.a_to_b();
    // B reads the three one by one, reporting each (a message is over an eighth of the
    // window): three grants, and only one Unblock on the wire.
    for _ in 0..3 {
        assert_eq!(f.b_recv(), Some(Ok(Bytes::from_static(&MSG))));
    }
    let _ = f.b_recv();
    let before = f.net.a.received.len();
    f.net.b_to_a();
    let grants = f.net.a.received[before..]
        .iter()
        .filter(|m| m.op == Op::UnblockClientMux)
        .count();
    assert_eq!(grants, 1, "grants coalesced");
    f.wind_down();
    f.check_invariants("coalesced credit");
}

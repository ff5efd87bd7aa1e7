//! What goes ahead of queued stream data, stepped: credit and single calls are written in
//! the next frame however much stream data waits, so a saturating stream neither holds a
//! sender back on credit it is owed nor adds its backlog to a small call's latency.

use bytes::Bytes;

use super::fixture::{At, Fixture};
use crate::codec::Op;
use crate::engine::Side;

/// Encoded as queued, and 43 of them fill a frame.
static MSG: [u8; 1500] = [1; 1500];

/// A stream open with a window of `window` bytes, on which A sent `n` of [`MSG`].
fn sent(window: u64, n: usize) -> Fixture {
    let mut f = Fixture::with_window(At::Open, window);
    for _ in 0..n {
        f.a_send(&MSG).expect("credit");
    }
    f
}

/// B reads `n` of [`MSG`].
fn b_reads(f: &mut Fixture, n: usize) {
    for _ in 0..n {
        assert_eq!(f.b_recv(), Some(Ok(Bytes::from_static(&MSG))));
    }
}

/// Where `op` first appears in what `received` holds, if it does.
fn first(received: &[crate::codec::Message], op: Op) -> Option<usize> {
    received.iter().position(|m| m.op == op)
}

/// One writer turn of `side` (one frame) carries `op` and its stream's data (`data`):
/// `op` did not wait behind the data queued before it (`waits` says what failed).
fn assert_in_the_next_frame(f: &mut Fixture, side: Side, op: Op, data: Op, waits: &str) {
    let received = match side {
        Side::Caller => {
            let before = f.net.b.received.len();
            f.net.a_to_b_one();
            &f.net.b.received[before..]
        }
        Side::Handler => {
            let before = f.net.a.received.len();
            f.net.b_to_a_one();
            &f.net.a.received[before..]
        }
    };
    assert!(first(received, op).is_some(), "{waits}");
    assert!(first(received, data).is_some(), "a full frame");
}

#[test]
fn a_single_call_goes_ahead_of_a_streams_backlog() {
    // A has frames' worth of stream data queued, then makes a call.
    let mut f = sent(1 << 20, 300);
    let call = f.net.call(b"small", 60);
    let waits = "the call waits behind stream data";
    assert_in_the_next_frame(&mut f, Side::Caller, Op::Request, Op::MuxClientMsg, waits);
    f.net.a.e.call(call).abandon();
    f.wind_down_and_check("a call beside a backlog");
}

#[test]
fn credit_goes_ahead_of_the_data_its_stream_has_queued() {
    // B (the handler) has two frames of output queued, unwritten, when it reads A's input:
    // the credit it owes A goes out in B's next frame.
    let mut f = sent(128 << 10, 40);
    f.net.a_to_b();
    for _ in 0..80 {
        f.b_send(&MSG).expect("credit");
    }
    b_reads(&mut f, 40);
    // The reads are reported on the next poll.
    let _ = f.b_recv();
    let (op, data) = (Op::UnblockClientMux, Op::MuxServerMsg);
    assert_in_the_next_frame(&mut f, Side::Handler, op, data, "credit waits behind data");
    assert!(f.a_stream(f.a).credit() > 0);
    f.wind_down_and_check("credit beside a backlog");
}

#[test]
fn credit_granted_while_a_grant_waits_joins_it() {
    let mut f = sent(4 << 10, 3);
    f.net.a_to_b();
    // B reads the three one by one, reporting each (a message is over an eighth of the
    // window): three grants, and only one Unblock on the wire.
    b_reads(&mut f, 3);
    let _ = f.b_recv();
    let before = f.net.a.received.len();
    f.net.b_to_a();
    let grants = f.net.a.received[before..]
        .iter()
        .filter(|m| m.op == Op::UnblockClientMux)
        .count();
    assert_eq!(grants, 1, "grants coalesced");
    f.wind_down_and_check("coalesced credit");
}

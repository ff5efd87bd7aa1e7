//! The bookkeeping of what both users sent and answered, and of the stream ends they hold.

use std::collections::HashMap;

use crate::engine::{Engine, Key, RecvBatch, Side};

use super::Peer;

/// What both users sent and answered, for the checks on what arrives.
#[derive(Default)]
pub(super) struct Book {
    /// Streams by (caller, the caller's mux id).
    pub(super) flows: HashMap<(Peer, u64), Flow>,
    /// Answers handlers gave (their payload's length) by (caller, mux id).
    pub(super) answers: HashMap<(Peer, u64), usize>,
}

/// One stream as both users see it.
#[derive(Default)]
pub(super) struct Flow {
    /// The caller's messages accepted for sending, by length.
    pub(super) up: Vec<usize>,
    /// The caller finished its direction (a real EOF).
    pub(super) finished: bool,
    /// The handler's messages accepted for sending, by length.
    pub(super) down: Vec<usize>,
    /// The handler returned, successfully or not.
    pub(super) returned: Option<bool>,
}

impl Flow {
    pub(super) fn sent(&mut self, side: Side) -> &mut Vec<usize> {
        match side {
            Side::Caller => &mut self.up,
            Side::Handler => &mut self.down,
        }
    }
}

/// A stream's user ends held on one side.
pub(super) struct Ends {
    pub(super) side: Side,
    pub(super) key: Key,
    /// The caller's mux id, which names the stream in the book.
    pub(super) flow: (Peer, u64),
    pub(super) sender: bool,
    pub(super) receiver: Option<RecvBatch>,
    /// Messages received.
    pub(super) got: usize,
    /// How the receiver ended (its first end): cleanly or not.
    pub(super) end: Option<bool>,
    /// The sender holds a lease and what it staged under it (a stream handler's output
    /// mid-poll), across other steps.
    pub(super) lease: Option<(crate::engine::Lease, crate::engine::Staged)>,
}

/// Ends the lease an end's sender holds, queueing what it staged: as a handler's poll does
/// when it returns, and its sender before anything else it does.
pub(super) fn end_lease(e: &mut Engine, x: &mut Ends) {
    if let Some((_, mut staged)) = x.lease.take() {
        e.stream(x.side, x.key).send_staged(&mut staged);
    }
}

/// The ends a caller gets when its stream opened.
pub(super) fn caller_ends(p: Peer, key: Key, ack: crate::codec::Ack) -> Ends {
    Ends {
        side: Side::Caller,
        key,
        flow: (p, key.mux_id()),
        sender: ack.in_window > 0,
        receiver: Some(RecvBatch::default()),
        got: 0,
        end: None,
        lease: None,
    }
}

/// Drops a stream's ends still held (a sender without `finish`).
pub(super) fn drop_ends(e: &mut Engine, mut x: Ends) {
    end_lease(e, &mut x);
    if x.sender {
        e.stream(x.side, x.key).drop_sender();
    }
    if let Some(mut r) = x.receiver.take() {
        r.release(e.stream(x.side, x.key));
    }
}

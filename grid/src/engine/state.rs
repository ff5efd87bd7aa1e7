//! The state of one stream on one side: where it stands, what only its side has, and its
//! two directions.
//!
//! ```text
//!   Unanswered ──ack (caller) / accept (handler)──> Open ──end──> Closed
//!      │                                                          ^
//!      └──────────────refused / cancel / deadline─────────────────┘
//! ```
//!
//! The phases are the same on both sides; what differs is in [`Role`], so a caller's
//! stream cannot hold a handler's state or the other way round. A state only moves
//! forward. Each direction ends on its own: the sending half when this
//! side finished (EOF) or the stream closed, the receiving half when the peer's EOF came or
//! the stream closed. `Closed` means over on the wire; the user's ends may still read what
//! was delivered before the end, then see the end.

use std::task::Waker;
use std::time::Instant;

use bytes::Bytes;

use super::assembly::Payload;
use super::header::Header;
use super::recv_queue::RecvQueue;
use super::tuning::Tuning;
#[cfg(doc)]
use super::window::cost;
use super::window::{RecvWindow, SendCredit};
use super::Side;
use crate::codec::{Ack, Flags, HandlerId, Message, MessageRef, Op};
use crate::error::Error;

/// Where a stream stands. See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamState {
    /// Caller: the open is queued or sent, and not yet answered. Handler: admitted, and
    /// its handler has not started.
    Unanswered,
    /// Accepted: messages flow.
    Open,
    /// Over on the wire for this side.
    Closed,
}

/// A caller's answer to its open, until the opening future takes it.
pub(crate) type Opened = Option<Result<Ack, Error>>;

/// What only one side's stream has.
#[derive(Debug)]
pub(crate) enum Role {
    /// The caller's.
    Caller {
        /// The answer to the open, until the opening future takes it.
        opened: Opened,
        /// The opening future, waiting for that answer.
        open_waker: Option<Waker>,
    },
    /// The handler side's.
    Handler {
        /// The reader's batch that admitted the stream: cancelled in that batch, it never
        /// starts its handler.
        batch: u64,
        /// When the caller last sent anything on the stream, pings included.
        last_heard: Instant,
    },
}

/// The sending direction of a stream, as this side sees it.
#[derive(Debug)]
pub(crate) struct SendHalf {
    pub(crate) credit: SendCredit,
    /// The last sequence number used.
    pub(crate) seq: u32,
    /// Why nothing more may be sent, once that is so.
    pub(crate) end: Option<Error>,
    /// The user's sender is waiting for credit (or for a lease to end).
    pub(crate) waker: Option<Waker>,
    /// The sender holds a lease (`StreamView::lease`): messages may be staged that are not
    /// queued yet, so nothing else may be sent on the stream until it ends.
    pub(crate) leased: bool,
}

impl SendHalf {
    fn new(peer_max_window: u64) -> Self {
        Self {
            credit: SendCredit::new(peer_max_window),
            seq: 0,
            end: None,
            waker: None,
            leased: false,
        }
    }
}

/// The receiving direction of a stream, as this side sees it.
#[derive(Debug)]
pub(crate) struct RecvHalf {
    pub(crate) window: RecvWindow,
    /// What decides the window's size as the stream runs.
    pub(crate) tuning: Tuning,
    /// Credit granted and not yet written (in the control lane, `control.rs`).
    pub(crate) credit_pending: u64,
    /// The sequence number the next message must carry.
    pub(crate) next_seq: u32,
    /// Delivered and not yet handed to the receiver; with `lent`, within the window (plus
    /// one message).
    pub(crate) queue: RecvQueue,
    /// What the queue's messages cost against the window ([`cost`]).
    pub(crate) queued: u64,
    /// The cost of the messages handed to the receiver (a batch at a time) and not yet
    /// reported read by it.
    pub(crate) lent: u64,
    /// How the direction ends once the queue is read: `Ok` for the peer's EOF.
    pub(crate) end: Option<Result<(), Error>>,
    /// The end was handed to the user: the receiver is done.
    pub(crate) done: bool,
    /// The receiver has taken nothing since the last stream tick (see
    /// [`RecvHalf::detach_if_stale`]).
    pub(crate) stale: bool,
    /// The user dropped the receiver: messages are discarded and their credit returned.
    pub(crate) discard: bool,
    pub(crate) waker: Option<Waker>,
}

impl RecvHalf {
    fn new() -> Self {
        Self {
            window: RecvWindow::new(0),
            tuning: Tuning::new(0, 0),
            credit_pending: 0,
            next_seq: 1,
            queue: RecvQueue::default(),
            queued: 0,
            lent: 0,
            stale: false,
            end: None,
            done: false,
            discard: false,
            waker: None,
        }
    }

    /// Queues a message costing `cost` for the receiver; the receiver's waker, to wake.
    pub(crate) fn deliver(&mut self, payload: Payload, cost: u64) -> Option<Waker> {
        self.queue.push(payload);
        self.queued += cost;
        self.waker.take()
    }

    /// As [`RecvHalf::deliver`], for a message whose payload is `start..end` of `frame`.
    #[inline]
    pub(crate) fn deliver_in(
        &mut self,
        frame: &Bytes,
        start: usize,
        end: usize,
        cost: u64,
    ) -> Option<Waker> {
        self.queue.push_in(frame, start, end);
        self.queued += cost;
        self.waker.take()
    }

    /// At a stream tick: a receiver that took nothing since the last one is not reading, so
    /// the small messages waiting for it are copied out of their frames
    /// ([`Payload::detach`], the copy they would get when handed out): what it holds is then
    /// what its window counts, not the read buffers its messages arrived in. A receiver
    /// that reads never pays for this.
    pub(crate) fn detach_if_stale(&mut self) {
        if std::mem::replace(&mut self.stale, true) {
            self.queue.detach();
        }
    }

    /// Drops what was delivered and not yet handed out; returns its cost.
    pub(crate) fn drop_queue(&mut self) -> u64 {
        self.queue.clear();
        std::mem::take(&mut self.queued)
    }

    /// Ends the direction, unless it already ended (the first end wins).
    pub(crate) fn end_with(&mut self, end: Result<(), Error>) {
        if self.end.is_none() {
            self.end = Some(end);
        }
    }
}

/// One stream, on either side.
#[derive(Debug)]
pub(crate) struct Stream {
    /// The mux id on the wire (this side's key for a caller, the peer's id for a handler).
    pub(crate) mux_id: u64,
    pub(crate) handler: HandlerId,
    pub(crate) state: StreamState,
    pub(crate) role: Role,
    pub(crate) send: SendHalf,
    pub(crate) recv: RecvHalf,
    /// What it is counted against, its timer, its messages to send.
    pub(crate) header: Header,
    /// Caller: a ping is queued. Handler: a pong is queued.
    pub(crate) ping_queued: bool,
}

impl Stream {
    /// A new stream; the peer grants at most `peer_max_window` bytes of credit.
    pub(crate) fn new(
        side: Side,
        mux_id: u64,
        handler: HandlerId,
        now: Instant,
        peer_max_window: u64,
    ) -> Self {
        Self {
            mux_id,
            handler,
            state: StreamState::Unanswered,
            role: match side {
                Side::Caller => Role::Caller {
                    opened: None,
                    open_waker: None,
                },
                Side::Handler => Role::Handler {
                    batch: 0,
                    last_heard: now,
                },
            },
            send: SendHalf::new(peer_max_window),
            recv: RecvHalf::new(),
            header: Header::for_stream(),
            ping_queued: false,
        }
    }

    /// Handler side: the caller was heard on the stream at `now`.
    pub(crate) fn heard(&mut self, now: Instant) {
        if let Role::Handler { last_heard, .. } = &mut self.role {
            *last_heard = now;
        }
    }

    /// Caller side: the answer to the open, until the opening future takes it, and that
    /// future's waker.
    pub(crate) fn opening(&mut self) -> Option<(&mut Opened, &mut Option<Waker>)> {
        match &mut self.role {
            Role::Caller { opened, open_waker } => Some((opened, open_waker)),
            Role::Handler { .. } => None,
        }
    }

    /// Which side this stream is on.
    pub(crate) fn side(&self) -> Side {
        match self.role {
            Role::Caller { .. } => Side::Caller,
            Role::Handler { .. } => Side::Handler,
        }
    }

    /// The next data message of this side (numbered in sending order).
    pub(crate) fn next_data(&mut self, flags: Flags, payload: Option<Bytes>) -> Message {
        self.send.seq = self.send.seq.wrapping_add(1);
        let mut m = Message::new(self.data_op());
        m.mux_id = self.mux_id;
        m.handler = self.handler;
        m.seq = self.send.seq;
        m.flags = flags;
        m.payload = payload;
        m
    }

    /// As [`Stream::next_data`], with the payload borrowed (to be encoded at once).
    pub(crate) fn next_data_ref<'p>(&mut self, flags: Flags, payload: &'p [u8]) -> MessageRef<'p> {
        self.send.seq = self.send.seq.wrapping_add(1);
        MessageRef {
            mux_id: self.mux_id,
            seq: self.send.seq,
            deadline_ms: 0,
            handler: self.handler,
            op: self.data_op(),
            flags,
            subroute: None,
            payload: Some(payload),
        }
    }

    /// The op of this side's data messages.
    pub(crate) fn data_op(&self) -> Op {
        match self.side() {
            Side::Caller => Op::MuxClientMsg,
            Side::Handler => Op::MuxServerMsg,
        }
    }

    /// The op that returns credit to the peer.
    pub(crate) fn unblock_op(&self) -> Op {
        match self.side() {
            Side::Caller => Op::UnblockServerMux,
            Side::Handler => Op::UnblockClientMux,
        }
    }

    /// The op that ends the stream abnormally from this side.
    pub(crate) fn cancel_op(&self) -> Op {
        match self.side() {
            Side::Caller => Op::DisconnectServerMux,
            Side::Handler => Op::DisconnectClientMux,
        }
    }

    /// The op of the peer's data messages (whose partial payloads are dropped on an end).
    pub(crate) fn peer_data_op(&self) -> Op {
        match self.side() {
            Side::Caller => Op::MuxServerMsg,
            Side::Handler => Op::MuxClientMsg,
        }
    }

    /// Takes the wakers of everything waiting on this stream.
    pub(crate) fn take_wakers(&mut self, into: &mut Vec<Waker>) {
        into.extend(
            [
                self.send.waker.take(),
                self.recv.waker.take(),
                match &mut self.role {
                    Role::Caller { open_waker, .. } => open_waker.take(),
                    Role::Handler { .. } => None,
                },
            ]
            .into_iter()
            .flatten(),
        );
    }
}

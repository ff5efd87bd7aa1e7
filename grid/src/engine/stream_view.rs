//! One stream's end on one side, borrowed from the engine ([`Engine::stream`]).
//!
//! What the user's sender and receiver do to their stream (`stream_ends.rs`,
//! `send_stage.rs`, and the fuzz harness, which plays the user) goes through this view:
//! they name the stream once, when they borrow it, and what they may do is the view's
//! methods (sending in `stream_send.rs`, reading in `stream_recv.rs`), not every engine
//! method that takes a side and a key. quinn-proto's `SendStream`/`RecvStream` are the
//! model. The view holds the engine for as long as it lives, so it lives for one step
//! under the session's lock.

use std::task::{Context, Poll};

use super::{Engine, Key, Side};
use crate::codec::Ack;
use crate::error::Error;

/// A stream's end on `side`, keyed `key`, borrowed with the engine it lives in. A key
/// whose stream is gone is answered as the methods say (mostly: cancelled, nothing).
pub(crate) struct StreamView<'a> {
    engine: &'a mut Engine,
    side: Side,
    key: Key,
}

impl Engine {
    /// The view of the stream end `key` on `side`.
    pub(crate) fn stream(&mut self, side: Side, key: Key) -> StreamView<'_> {
        StreamView {
            engine: self,
            side,
            key,
        }
    }
}

impl StreamView<'_> {
    /// The caller's open: its answer (the capacities granted, or why the stream did not
    /// open). On success the opening future's hold becomes the ends' (a receiver, and a
    /// sender when the handler takes input). Cancelled on a handler side's view.
    pub(crate) fn poll_opened(&mut self, cx: &mut Context<'_>) -> Poll<Result<Ack, Error>> {
        match self.side {
            Side::Caller => self.engine.poll_opened(self.key, cx),
            Side::Handler => Poll::Ready(Err(Error::Cancelled)),
        }
    }

    /// The caller's opening future was dropped before it took the answer: the stream is
    /// cancelled. Nothing on a handler side's view.
    pub(crate) fn abandon_open(self) {
        if self.side == Side::Caller {
            self.engine.drop_opening(self.key);
        }
    }

    /// The engine, and which stream end this is.
    pub(super) fn parts(&mut self) -> (&mut Engine, Side, Key) {
        (self.engine, self.side, self.key)
    }
}

//! Receiving on a stream: handing what arrived to the receiver, and returning credit as it
//! reads.

use std::task::{Context, Poll};

use bytes::Bytes;

use super::recv_queue::{RecvQueue, Taking};
use super::state::StreamState;
use super::stream_view::StreamView;
use super::streams::Ending;
use super::tuning::Decision;
use super::window::ReadTally;
use super::{Engine, Key, Side};
use crate::error::Error;

impl Engine {
    /// Hands everything delivered so far to the receiver, in order, into `into` (one step
    /// for all the messages a frame brought), after counting what it consumed since its
    /// last call (`read`: their cost, in bytes): their credit goes back to the sender (in
    /// batches). Ready with `Some(Ok(n))` when `into` got messages (the receiver reports
    /// what it read once it read `n` bytes' worth, [`Engine::count_read`], so that credit
    /// goes back while it works through a long batch), the direction's end once all was
    /// handed out, or Pending with the waker registered.
    ///
    /// Messages handed out count against the window until reported read, so the receiver's
    /// own buffer never lets the sender exceed the window.
    fn poll_recv(
        &mut self,
        side: Side,
        key: Key,
        read: u64,
        into: &mut RecvQueue,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<u64, Error>>> {
        self.count_read(side, key, read);
        let Some(s) = self.stream_mut(side, key) else {
            return Poll::Ready(None);
        };
        if s.recv.done {
            return Poll::Ready(None);
        }
        if !s.recv.queue.is_empty() {
            s.recv.stale = false;
            s.recv.lent += std::mem::take(&mut s.recv.queued);
            into.append(&mut s.recv.queue);
            return Poll::Ready(Some(Ok(s.recv.window.batch())));
        }
        if let Some(end) = s.recv.end.take() {
            s.recv.done = true;
            return Poll::Ready(end.err().map(Err));
        }
        s.recv.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The receiver consumed messages handed to it costing `read` bytes: their credit is
    /// owed back, and returned once enough is owed (while the stream is open).
    pub(super) fn count_read(&mut self, side: Side, key: Key, read: u64) {
        if read == 0 {
            return;
        }
        let Some(s) = self.stream_mut(side, key) else {
            return;
        };
        s.recv.lent = s.recv.lent.saturating_sub(read);
        if s.recv.window.read(read) {
            self.return_owed(side, key);
        }
    }

    /// Returns what the receiver read, resizing the window on the way: more credit than
    /// was read to grow it (out of the budget), less to shrink it (PROTOCOL.md §6).
    fn return_owed(&mut self, side: Side, key: Key) {
        // The engine reads no clock: the last message's arrival is the time.
        let (now, rtt) = (self.timers.last_heard, self.rtt);
        let Some(s) = self.stream_mut(side, key) else {
            return;
        };
        let w = &s.recv.window;
        let (window, owed) = (w.size(), w.owed());
        let decision = if s.state == StreamState::Open && !s.recv.discard {
            s.recv.tuning.next(now, &rtt, window, owed)
        } else {
            Decision::default()
        };
        if decision.probe {
            self.probe_rtt(now);
        }
        let mut grant = owed;
        if let Some(mut target) = decision.size {
            if self.budget.pressed(now) {
                // Someone was denied growth: a window above its share gives some back.
                let share = self.budget.share();
                if window > share {
                    target = target.min(share.max(window / 2));
                }
            }
            if target > window {
                grant += self.budget.grow(target - window, now);
            } else {
                let cut = (window - target).min(owed);
                self.budget.shrink(cut);
                grant -= cut;
            }
        }
        if let Some(s) = self.stream_mut(side, key) {
            s.recv.window.give(grant);
        }
        self.return_credit(side, key, grant);
    }

    /// The receiver was dropped, after consuming `read` of the messages handed to it (the
    /// rest it never read). A caller's receiver dropped before the end cancels the stream;
    /// a handler's just stops taking messages (their credit goes straight back).
    fn drop_receiver(&mut self, side: Side, key: Key, read: u64) {
        self.count_read(side, key, read);
        let Some(s) = self.stream_mut(side, key) else {
            return;
        };
        s.header.holders = s.header.holders.saturating_sub(1);
        let unfinished = !s.recv.done;
        s.recv.done = true;
        match side {
            Side::Caller if unfinished => self.end_stream(side, key, Ending::cancelled()),
            Side::Caller => {}
            Side::Handler => {
                s.recv.discard = true;
                let unread = s.recv.drop_queue() + std::mem::take(&mut s.recv.lent);
                let n = s.recv.window.discard(unread);
                self.return_credit(side, key, n);
            }
        }
        self.settle(side, key);
    }

    /// Returns `n` bytes of credit to the sender (while the stream is open), ahead of any
    /// data waiting to be written.
    pub(super) fn return_credit(&mut self, side: Side, key: Key, n: u64) {
        let open = self
            .stream_mut(side, key)
            .is_some_and(|s| s.state == StreamState::Open);
        if n > 0 && open {
            self.push_credit(side, key, n);
        }
    }
}

/// A receiver's end of the hand-over: the messages it took from the engine in one step,
/// read one by one without the engine's lock, and the count of those read, reported back
/// (under the lock) when it asks for more or, mid-batch, once a batch's worth of credit is
/// owed. `StreamReceiver` is this behind the session's lock.
#[derive(Debug, Default)]
pub(crate) struct RecvBatch {
    ready: RecvQueue,
    /// The frame the next message is in.
    taking: Taking,
    read: ReadTally,
}

impl RecvBatch {
    /// No message in hand: time to [`RecvBatch::refill`].
    pub(crate) fn is_empty(&self) -> bool {
        self.ready.is_empty()
    }

    /// The next message's payload in hand, without the lock (with `copy`, a small one
    /// copied out of the frame it came in, see [`RecvQueue::pop`]); `None` when the batch
    /// is used up. Then [`RecvBatch::report`] says whether to report reads now.
    #[inline]
    pub(crate) fn next(&mut self, copy: bool) -> Option<Bytes> {
        self.ready.pop(&mut self.taking, copy)
    }

    /// The next message's payload handed to `read` where it lies ([`RecvQueue::pop_with`]),
    /// with its length; `None` when the batch is used up.
    #[inline]
    pub(crate) fn next_with<R>(&mut self, read: impl FnOnce(&[u8]) -> R) -> Option<(R, usize)> {
        self.ready.pop_with(&mut self.taking, read)
    }

    /// What to report read now ([`Engine::count_read`]), if it is time: after each message
    /// taken with [`RecvBatch::next`], with its payload's length.
    #[inline]
    pub(crate) fn report(&mut self, len: usize) -> Option<u64> {
        self.read.read_one(len, !self.ready.is_empty())
    }

    /// Takes the next batch from the engine (reporting what was read of the last).
    /// Ready with `Some(Ok(()))` when messages came, the end (`None`, or the error), or
    /// Pending with the waker registered.
    pub(crate) fn refill(
        &mut self,
        mut stream: StreamView<'_>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<(), Error>>> {
        let (e, side, key) = stream.parts();
        let read = self.read.take();
        e.poll_recv(side, key, read, &mut self.ready, cx)
            .map(|r| match r {
                Some(Ok(report_every)) => {
                    self.read.handed(report_every);
                    Some(Ok(()))
                }
                Some(Err(err)) => Some(Err(err)),
                None => None,
            })
    }

    /// The receiver is gone: what it read is reported, what it held unread is dropped.
    pub(crate) fn release(&mut self, mut stream: StreamView<'_>) {
        let (e, side, key) = stream.parts();
        self.ready.clear();
        self.taking = None;
        e.drop_receiver(side, key, self.read.take());
    }
}

impl StreamView<'_> {
    /// The receiver consumed messages handed to it costing `read` bytes (reported
    /// mid-batch, once a batch's worth is read): their credit is owed back, and returned
    /// once enough is owed (while the stream is open).
    pub(crate) fn count_read(&mut self, read: u64) {
        let (e, side, key) = self.parts();
        e.count_read(side, key, read);
    }
}

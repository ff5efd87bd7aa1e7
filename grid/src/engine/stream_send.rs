//! Sending on a stream: credit, messages in order, and the sender's end (finish or drop).
//!
//! A message is sent only while the stream's credit (bytes, `SendCredit`) is positive,
//! and spends its cost ([`cost`]): by [`StreamView::poll_send`], which waits for credit and
//! sends in one step, or by [`StreamView::send`] after [`StreamView::poll_credit`] said there is
//! some (a permit, or a batch). Only the stream's one sender spends its credit, so credit
//! seen there stays until it sends. The receiving side grants it back as its user reads.
//!
//! A sender may also take a [`Lease`] and encode its small messages itself, outside the
//! lock ([`Staged`]), then queue them in one step ([`StreamView::send_staged`]): the same
//! messages, numbered and charged the same way, for one lock per batch instead of one per
//! message (a stream handler's sender does, `send_stage`).

use std::task::{Context, Poll};

use bytes::Bytes;

use super::out_queue::ENCODE_EARLY;
use super::state::Stream;
use super::state::StreamState;
use super::stream_view::StreamView;
use super::streams::Ending;
use super::transmit::MAX_BATCH;
use super::window::cost;
use super::{Engine, Key, Side};
use crate::codec::{DataHead, Flags};
use crate::error::Error;

/// What a sender needs to encode its stream's next messages itself, from
/// [`StreamView::lease`]: how much it may send before it must come back (credit, room in the
/// send buffer) and how its messages are numbered and addressed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lease {
    /// Credit (bytes) the stream holds; a message may be staged while what the staged ones
    /// cost is below it (the last may overrun it, as with [`StreamView::poll_send`]).
    credit: u64,
    /// Room left in the send buffer for streams' messages (payload bytes), likewise.
    room: usize,
    /// The number of the stream's last message sent.
    seq: u32,
    /// The stream's data messages' header, but for number and length.
    head: DataHead,
}

/// Messages a stream's sender encoded itself under a [`Lease`], to be queued in one step
/// by [`StreamView::send_staged`]: numbered and charged exactly as [`StreamView::poll_send`] would
/// have, one at a time, had it been asked at the same moment (only the stream's one sender
/// spends its credit and numbers its messages, so nothing changes them meanwhile).
#[derive(Debug, Default)]
pub(crate) struct Staged {
    /// The messages, encoded back to back (as in an early lane: see `out_queue`).
    bytes: Vec<u8>,
    /// Each message's encoded and payload lengths.
    lens: Vec<(u32, u32)>,
    payload: usize,
    cost: u64,
    /// The number of the last message staged (of the stream's last sent, before any).
    seq: u32,
}

/// What [`Staged::push_with`] did.
#[derive(Debug)]
pub(crate) enum InPlace<E, F> {
    /// The message is staged.
    Staged,
    /// The lease is used up: nothing was encoded; the encoder, back.
    NoRoom(F),
    /// The payload, encoded but not staged (empty, or larger than [`ENCODE_EARLY`]): to be
    /// sent on its own.
    Whole(Bytes),
    /// The encoding failed: nothing was staged.
    Failed(E),
}

/// Drops what a message begun in a stage wrote, unless forgotten once the message is
/// complete: an encoding that fails or panics leaves no partial message behind.
struct Rewind<'a> {
    buf: &'a mut Vec<u8>,
    to: usize,
}

impl Rewind<'_> {
    fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Rewind<'_> {
    fn drop(&mut self) {
        self.buf.truncate(self.to);
    }
}

/// A stage is queued once it holds this many bytes...
const STAGE_BYTES: usize = 32 * 1024;
/// ...or this many messages (half of a merged frame's most).
const STAGE_MESSAGES: usize = MAX_BATCH / 2;

impl Staged {
    /// Whether no message is staged.
    pub(crate) fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Stages a message if the lease still allows one (true), as [`StreamView::poll_send`]
    /// would send it: while the credit and the room are not used up. Only payloads up to
    /// [`ENCODE_EARLY`] are staged (a larger one is queued whole, to be sent in chunks).
    pub(crate) fn push(&mut self, lease: &mut Lease, payload: &[u8]) -> bool {
        if payload.len() > ENCODE_EARLY || !self.has_room(lease) {
            return false;
        }
        let seq = self.next_seq(lease);
        let before = self.bytes.len();
        lease.head.encode_into(&mut self.bytes, seq, payload);
        self.count(seq, before, payload.len());
        true
    }

    /// The lease still allows a message: neither its credit nor its room is used up (the
    /// last message may overrun them, as with [`StreamView::poll_send`]).
    #[inline]
    fn has_room(&self, lease: &Lease) -> bool {
        self.cost < lease.credit && self.payload < lease.room
    }

    /// The number of the next message staged under `lease`.
    #[inline]
    fn next_seq(&self, lease: &Lease) -> u32 {
        if self.is_empty() { lease.seq } else { self.seq }.wrapping_add(1)
    }

    /// Counts the message numbered `seq`, encoded from `before` to the end of the stage,
    /// with a payload of `len` bytes.
    #[inline]
    fn count(&mut self, seq: u32, before: usize, len: usize) {
        self.seq = seq;
        self.lens
            .push(((self.bytes.len() - before) as u32, len as u32));
        self.payload += len;
        self.cost += cost(len);
    }

    /// Stages a message whose payload `encode` writes straight into the stage (no buffer of
    /// its own), if the lease still allows one: the same bytes, number and charge as
    /// [`Staged::push`] of that payload. A payload that turns out empty or larger than
    /// [`ENCODE_EARLY`] is not staged but handed back, to be sent on its own; an encoding
    /// that fails (or panics) leaves the stage as it was.
    pub(crate) fn push_with<E, F>(&mut self, lease: &mut Lease, encode: F) -> InPlace<E, F>
    where
        F: FnOnce(&mut Vec<u8>) -> Result<(), E>,
    {
        if !self.has_room(lease) {
            return InPlace::NoRoom(encode);
        }
        let seq = self.next_seq(lease);
        let before = self.bytes.len();
        let rewind = Rewind {
            buf: &mut self.bytes,
            to: before,
        };
        let at = lease.head.begin(rewind.buf, seq);
        if let Err(e) = encode(rewind.buf) {
            return InPlace::Failed(e);
        }
        let len = rewind.buf.len() - at;
        if len > ENCODE_EARLY || !DataHead::end(rewind.buf, at) {
            return InPlace::Whole(Bytes::copy_from_slice(
                rewind.buf.get(at..).unwrap_or_default(),
            ));
        }
        rewind.keep();
        self.count(seq, before, len);
        InPlace::Staged
    }

    /// Whether the stage should be queued now: it holds a good part of a frame, or used
    /// its lease up.
    pub(crate) fn full(&self, lease: &Lease) -> bool {
        self.bytes.len() >= STAGE_BYTES
            || self.lens.len() >= STAGE_MESSAGES
            || self.cost >= lease.credit
            || self.payload >= lease.room
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.lens.clear();
        self.payload = 0;
        self.cost = 0;
    }
}

impl Engine {
    /// A stream that may still send, with the room left in the send buffer (see
    /// `stream_room`); or why it may not: its sending ended, or it is gone.
    fn sending(&mut self, side: Side, key: Key) -> Result<(&mut Stream, usize), Error> {
        let room = self.stream_room(side, key);
        let s = self.stream_mut(side, key).ok_or(Error::Cancelled)?;
        match &s.send.end {
            Some(ended) => Err(ended.clone()),
            None => Ok((s, room)),
        }
    }
}

impl StreamView<'_> {
    /// [`Engine::sending`], for this stream.
    fn sending(&mut self) -> Result<(&mut Stream, usize), Error> {
        let (e, side, key) = self.parts();
        e.sending(side, key)
    }

    /// Ready with the credit (bytes, at least one) once there is some, or the stream's
    /// end; Pending with the waker registered while there is none.
    pub(crate) fn poll_credit(&mut self, cx: &mut Context<'_>) -> Poll<Result<u64, Error>> {
        let (s, room) = match self.sending() {
            Ok(sending) => sending,
            Err(ended) => return Poll::Ready(Err(ended)),
        };
        if s.send.credit.open() && room > 0 && !s.send.leased {
            Poll::Ready(Ok(s.send.credit.available().min(room as u64)))
        } else {
            s.send.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// Sends `payload` once there is credit, or waits for some (with the waker
    /// registered): [`StreamView::poll_credit`] and [`StreamView::send`] in one step, the common
    /// path. A small payload is encoded into the stream's queue at once and left in
    /// `payload` for the caller to drop (after the lock); a larger one is taken.
    pub(crate) fn poll_send(
        &mut self,
        payload: &mut Option<Bytes>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Error>> {
        let (e, side, key) = self.parts();
        let (s, room) = match e.sending(side, key) {
            Ok(sending) => sending,
            Err(ended) => return Poll::Ready(Err(ended)),
        };
        if !s.send.credit.open() || room == 0 || s.send.leased {
            s.send.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let len = payload.as_ref().map_or(0, Bytes::len);
        s.send.credit.spend(cost(len));
        if s.header.out.encodes_early(len) {
            // Encoded into the stream's queue now; the payload itself stays with the caller,
            // which frees it after the lock.
            let m = s.next_data_ref(Flags::NONE, payload.as_deref().unwrap_or_default());
            s.header.out.push_encoded(&m);
            let newly = s.header.out.mark_ready();
            e.queued(side, key, len, newly);
        } else {
            let m = s.next_data(Flags::NONE, Some(payload.take().unwrap_or_default()));
            e.push_out(side, key, m);
        }
        Poll::Ready(Ok(()))
    }

    /// Leave for the stream's sender to encode its next messages itself ([`Staged`]), if
    /// it may send now: the stream is open for sending, has credit and room in the send
    /// buffer, and nothing of it is queued whole (staged messages are queued behind what
    /// was encoded when queued, so nothing whole may be ahead of them). None otherwise:
    /// the sender then sends one at a time, waiting as [`StreamView::poll_send`] does.
    pub(crate) fn lease(&mut self) -> Option<Lease> {
        let (e, side, key) = self.parts();
        let room = e.stream_room(side, key);
        let s = e.stream_mut(side, key)?;
        let may = s.send.end.is_none() && s.send.credit.open() && room > 0;
        if !may || s.send.leased || !s.header.out.takes_staged() {
            return None;
        }
        s.send.leased = true;
        Some(Lease {
            credit: s.send.credit.available(),
            room,
            seq: s.send.seq,
            head: DataHead::new(s.mux_id, s.handler, s.data_op()),
        })
    }

    /// Ends the lease [`StreamView::lease`] gave, queueing the messages `staged` under it
    /// (emptying it) in one step: their credit spent, the stream's numbering moved past
    /// them, the writer woken. If the stream's sending ended meanwhile they are dropped, as
    /// its queued messages were. Every lease ends here, staged messages or none.
    pub(crate) fn send_staged(&mut self, staged: &mut Staged) {
        let (e, side, key) = self.parts();
        let (count, payload) = (staged.lens.len(), staged.payload);
        let Some(s) = e.stream_mut(side, key) else {
            return staged.clear();
        };
        // Whoever waited for the lease to end may go on.
        let waiting = std::mem::take(&mut s.send.leased)
            .then(|| s.send.waker.take())
            .flatten();
        if s.send.end.is_none() && count > 0 {
            s.send.credit.spend(staged.cost);
            let first_seq = s.send.seq.wrapping_add(1);
            s.send.seq = staged.seq;
            s.header
                .out
                .push_staged(first_seq, &mut staged.bytes, &mut staged.lens, payload);
            let newly = s.header.out.mark_ready();
            e.queued_many(side, key, payload, count, newly);
        }
        staged.clear();
        e.wake(waiting);
    }

    /// Ready once the stream's sender holds no lease (at once, nearly always: a lease
    /// ends when the poll of the task that took it does); Pending with the waker
    /// registered until then. For what must not overtake staged messages.
    pub(crate) fn poll_unleased(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let (e, side, key) = self.parts();
        match e.stream_mut(side, key) {
            Some(s) if s.send.leased => {
                s.send.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }

    /// Why the sending direction ended, if it did.
    pub(crate) fn send_ended(&mut self) -> Option<Error> {
        let (e, side, key) = self.parts();
        match e.stream_mut(side, key) {
            Some(s) => s.send.end.clone(),
            None => Some(Error::Cancelled),
        }
    }

    /// Credit (bytes) the sender could use right now.
    pub(crate) fn credit(&mut self) -> u64 {
        let (e, side, key) = self.parts();
        e.stream_mut(side, key)
            .filter(|s| s.send.end.is_none())
            .map_or(0, |s| s.send.credit.available())
    }

    /// Sends a message; call only after [`StreamView::poll_credit`] found credit (this
    /// sender's own, which nothing else spends).
    pub(crate) fn send(&mut self, payload: Bytes) -> Result<(), Error> {
        let (e, side, key) = self.parts();
        let Some(s) = e.stream_mut(side, key) else {
            return Err(Error::Cancelled);
        };
        if let Some(e) = &s.send.end {
            return Err(e.clone());
        }
        if !s.send.credit.open() {
            // Never the case for a permit or a batch: their credit is this sender's own.
            return Err(Error::Protocol("a stream message without credit".into()));
        }
        s.send.credit.spend(cost(payload.len()));
        let m = s.next_data(Flags::NONE, Some(payload));
        e.push_out(side, key, m);
        Ok(())
    }

    /// The sender ends its direction. A caller's EOF goes to the handler; a handler's
    /// direction ends when it returns, so finishing its sender only releases it.
    pub(crate) fn finish(&mut self) {
        let (e, side, key) = self.parts();
        let Some(s) = e.stream_mut(side, key) else {
            return;
        };
        s.header.holders = s.header.holders.saturating_sub(1);
        if s.send.end.is_none() {
            s.send.end = Some(Error::StreamEnded);
            if side == Side::Caller && s.state == StreamState::Open {
                let eof = s.next_data(Flags::EOF, None);
                e.push_out(side, key, eof);
            }
        }
        e.settle(side, key);
    }

    /// The sender was dropped. A caller's sender dropped without `finish` cancels the
    /// stream: a half-sent upload must never look complete.
    pub(crate) fn drop_sender(&mut self) {
        let (e, side, key) = self.parts();
        let Some(s) = e.stream_mut(side, key) else {
            return;
        };
        s.header.holders = s.header.holders.saturating_sub(1);
        let abandoned = s.send.end.is_none();
        if side == Side::Caller && abandoned {
            e.end_stream(side, key, Ending::cancelled());
        }
        e.settle(side, key);
    }
}

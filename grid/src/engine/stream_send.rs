//! Sending on a stream: credit, messages in order, and the sender's end (finish or drop).
//!
//! A message is sent only while the stream's credit (bytes, `SendCredit`) is positive,
//! and spends its cost ([`cost`]): by [`Engine::poll_send`], which waits for credit and
//! sends in one step, or by [`Engine::send`] after [`Engine::poll_credit`] said there is
//! some (a permit, or a batch). Only the stream's one sender spends its credit, so credit
//! seen there stays until it sends. The receiving side grants it back as its user reads.

use std::task::{Context, Poll};

use bytes::Bytes;

use super::state::StreamState;
use super::streams::Ending;
use super::window::cost;
use super::{Engine, Key, Side};
use crate::codec::Flags;
use crate::error::Error;

impl Engine {
    /// Ready with the credit (bytes, at least one) once there is some, or the stream's
    /// end; Pending with the waker registered while there is none.
    pub(crate) fn poll_credit(
        &mut self,
        side: Side,
        key: Key,
        cx: &mut Context<'_>,
    ) -> Poll<Result<u64, Error>> {
        let room = self.stream_room(side, key);
        let Some(s) = self.stream_mut(side, key) else {
            return Poll::Ready(Err(Error::Cancelled));
        };
        if let Some(e) = &s.send.end {
            return Poll::Ready(Err(e.clone()));
        }
        if s.send.credit.open() && room > 0 {
            Poll::Ready(Ok(s.send.credit.available().min(room as u64)))
        } else {
            s.send.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    /// Sends `payload` once there is credit, or waits for some (with the waker
    /// registered): [`Engine::poll_credit`] and [`Engine::send`] in one step, the common
    /// path. A small payload is encoded into the stream's queue at once and left in
    /// `payload` for the caller to drop (after the lock); a larger one is taken.
    pub(crate) fn poll_send(
        &mut self,
        side: Side,
        key: Key,
        payload: &mut Option<Bytes>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Error>> {
        let room = self.stream_room(side, key);
        let Some(s) = self.stream_mut(side, key) else {
            return Poll::Ready(Err(Error::Cancelled));
        };
        if let Some(e) = &s.send.end {
            return Poll::Ready(Err(e.clone()));
        }
        if !s.send.credit.open() || room == 0 {
            s.send.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let len = payload.as_ref().map_or(0, Bytes::len);
        s.send.credit.spend(cost(len));
        if s.out.encodes_early(len) {
            // Encoded into the stream's queue now; the payload itself stays with the caller,
            // which frees it after the lock.
            let m = s.next_data_ref(Flags::NONE, payload.as_deref().unwrap_or_default());
            s.out.push_encoded(&m);
            let newly = s.out.mark_ready();
            self.queued(side, key, len, newly);
        } else {
            let m = s.next_data(Flags::NONE, Some(payload.take().unwrap_or_default()));
            self.push_out(side, key, m);
        }
        Poll::Ready(Ok(()))
    }

    /// Why the sending direction ended, if it did.
    pub(crate) fn send_ended(&mut self, side: Side, key: Key) -> Option<Error> {
        match self.stream_mut(side, key) {
            Some(s) => s.send.end.clone(),
            None => Some(Error::Cancelled),
        }
    }

    /// Credit (bytes) the sender could use right now.
    pub(crate) fn credit(&mut self, side: Side, key: Key) -> u64 {
        self.stream_mut(side, key)
            .filter(|s| s.send.end.is_none())
            .map_or(0, |s| s.send.credit.available())
    }

    /// Sends a message; call only after [`Engine::poll_credit`] found credit (this
    /// sender's own, which nothing else spends).
    pub(crate) fn send(&mut self, side: Side, key: Key, payload: Bytes) -> Result<(), Error> {
        let Some(s) = self.stream_mut(side, key) else {
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
        self.push_out(side, key, m);
        Ok(())
    }

    /// The sender ends its direction. A caller's EOF goes to the handler; a handler's
    /// direction ends when it returns, so finishing its sender only releases it.
    pub(crate) fn finish(&mut self, side: Side, key: Key) {
        let Some(s) = self.stream_mut(side, key) else {
            return;
        };
        s.handles = s.handles.saturating_sub(1);
        if s.send.end.is_none() {
            s.send.end = Some(Error::StreamEnded);
            if side == Side::Caller && s.state == StreamState::Open {
                let eof = s.next_data(Flags::EOF, None);
                self.push_out(side, key, eof);
            }
        }
        self.settle(side, key);
    }

    /// The sender was dropped. A caller's sender dropped without `finish` cancels the
    /// stream: a half-sent upload must never look complete.
    pub(crate) fn drop_sender(&mut self, side: Side, key: Key) {
        let Some(s) = self.stream_mut(side, key) else {
            return;
        };
        s.handles = s.handles.saturating_sub(1);
        let abandoned = s.send.end.is_none();
        if side == Side::Caller && abandoned {
            self.end_stream(side, key, Ending::cancelled());
        }
        self.settle(side, key);
    }
}

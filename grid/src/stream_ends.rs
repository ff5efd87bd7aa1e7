//! The ends of a stream that users hold: a [`StreamSender`] that waits for credit before
//! each message, and a [`StreamReceiver`] that returns credit as it reads.
//!
//! Both are handles on the stream's state in the connection's engine. Credit is what bounds
//! memory: a sender holds credit in bytes (a message costs its payload plus a small fixed
//! charge), granted by the receiving side as its user reads, so no side ever buffers more
//! than the window it granted (plus one message), whatever the speed difference.
//!
//! End of input is explicit: a sender ends its direction with [`StreamSender::finish`]. A
//! caller's sender dropped without it cancels the stream, and so does a caller's receiver
//! dropped before the end, so an abandoned stream reaches the handler as
//! [`Error::Cancelled`], never as a clean end.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;

use crate::engine::{Key, RecvBatch, Side, WriterVisit, ENCODE_EARLY};
use crate::error::{Error, Result};
use crate::send_stage::{self, FrameWaiting, StagedWith};
use crate::session::Session;

/// Most messages [`StreamSender::send_all`] queues in one step.
const SEND_ALL_BATCH: usize = 256;

/// Sends one direction of a stream. Not `Clone`: messages are numbered in the order they
/// are sent.
///
/// A caller's sender must be ended with [`StreamSender::finish`]; dropped without it, it
/// cancels the stream (the handler's input ends with [`Error::Cancelled`]). A handler's
/// sender needs no `finish`: the handler's return ends its direction.
pub struct StreamSender {
    session: Arc<Session>,
    side: Side,
    key: Key,
    max_message: usize,
    /// `finish` consumed the sender: its drop does nothing more.
    finished: bool,
    /// The last message sent filled a frame's worth: the next send first waits for the
    /// writer to come for it (after this visit of the writer's).
    step_aside: FrameWaiting,
}

impl std::fmt::Debug for StreamSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSender")
            .field("side", &self.side)
            .field("mux", &self.key.mux_id())
            .finish()
    }
}

impl StreamSender {
    pub(crate) fn new(session: Arc<Session>, side: Side, key: Key) -> Self {
        Self {
            max_message: session.send_limit,
            session,
            side,
            key,
            finished: false,
            step_aside: None,
        }
    }

    fn check_size(&self, payload: &Bytes) -> Result<()> {
        if payload.len() > self.max_message {
            return Err(Error::MessageTooLarge {
                size: payload.len(),
                limit: self.max_message,
            });
        }
        Ok(())
    }

    /// Sends one message, first waiting for credit if the receiver is behind.
    ///
    /// A stream handler's own sender, used in the handler's task, does not queue each
    /// small message on its own: it encodes it at once and queues it with the next ones in
    /// one step, at the latest when the handler's task yields (awaits something not ready,
    /// or returns). A handler that sends and then computes for a long time without an
    /// `.await` delays its messages until it does (as it delays everything else on its
    /// thread, the connection's writer included).
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] for a payload over the maximum message size (nothing is
    /// sent, the stream carries on). Once the stream ended: [`Error::StreamEnded`] when the
    /// other side finished normally, [`Error::Cancelled`] when it was cancelled,
    /// [`Error::Disconnected`] when the connection was lost, or the stream's own error.
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped before it completes, nothing was sent and no
    /// credit was taken. Once a message is accepted it goes out whole, chunked or not.
    pub async fn send(&mut self, payload: Bytes) -> Result<()> {
        self.check_size(&payload)?;
        self.step_aside_first().await;
        if self.side == Side::Handler {
            // A handler's own output, in its task: staged, queued with the others.
            if let Some(step_aside) = send_stage::stage(&self.session, self.key, &payload) {
                self.step_aside = step_aside;
                return Ok(());
            }
            // Not staged: nothing of this sender's is left in the stage either.
        }
        self.send_whole(payload).await
    }

    /// Sends one message whose payload `encode` writes, as [`StreamSender::send`] sends
    /// it: a stream handler's own output, in its task, encodes it straight into the stage
    /// (see `send_stage`), any other into a buffer of its own.
    ///
    /// # Cancel safety
    /// As [`StreamSender::send`].
    pub(crate) async fn send_encoded(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        self.step_aside_first().await;
        // Staged payloads are at most ENCODE_EARLY bytes: under any larger size limit.
        let encode = if self.side == Side::Handler && self.max_message >= ENCODE_EARLY {
            match send_stage::stage_with(&self.session, self.key, encode) {
                StagedWith::Staged(step_aside) => {
                    self.step_aside = step_aside;
                    return Ok(());
                }
                StagedWith::Failed(e) => return Err(e),
                StagedWith::Whole(payload) => {
                    self.check_size(&payload)?;
                    return self.send_whole(payload).await;
                }
                StagedWith::NotHere(encode) => encode,
            }
        } else {
            encode
        };
        let payload = crate::arena::encode_with(encode)?;
        self.check_size(&payload)?;
        self.send_whole(payload).await
    }

    /// When the last message filled a frame for the writer, waits until the writer came for
    /// it (before the next message, so a send cancelled here has sent nothing). Waiting,
    /// not yielding: a task that wakes itself to yield makes tokio wake an idle worker to
    /// steal it, and a sender and its writer then pass every frame between two threads.
    /// Woken by the writer, the sender runs next on the writer's thread. (Measured, one
    /// stream of 16 KiB messages over a 10 ms path: 0.55-0.68x a raw WebSocket with a
    /// yield, 0.64-0.91x waiting.)
    async fn step_aside_first(&mut self) {
        if let Some(since) = self.step_aside.take() {
            self.writer_back(since).await;
        }
    }

    /// Waits until the writer came for a frame after `since`.
    async fn writer_back(&self, since: WriterVisit) {
        poll_fn(|cx| self.session.with(|e| e.poll_writer_back(since, cx))).await;
    }

    /// Sends one message on its own (not staged), first waiting for credit.
    async fn send_whole(&mut self, payload: Bytes) -> Result<()> {
        let (side, key) = (self.side, self.key);
        let mut payload = Some(payload);
        let mut step_aside = None;
        poll_fn(|cx| {
            self.session.with(|e| {
                let sent = e.stream(side, key).poll_send(&mut payload, cx);
                step_aside = if sent.is_ready() {
                    e.take_frame_waiting()
                } else {
                    None
                };
                sent
            })
        })
        .await?;
        self.step_aside = step_aside;
        Ok(())
    }

    /// Sends every message of `messages`, in order, waiting for credit whenever the
    /// receiver is behind. Each time there is credit, as many messages as it covers (up to
    /// a bound) are taken from the iterator and queued in one step, so a batch costs one
    /// wait and one lock rather than one per message. (A stream handler's own output, in
    /// the handler's task, stages them as [`StreamSender::send`] does, which costs less.)
    ///
    /// # Errors
    /// As [`StreamSender::send`]: the messages before the failing one were sent, it and
    /// the rest were not. A payload over the maximum message size stops the batch with
    /// [`Error::MessageTooLarge`] (the stream carries on).
    ///
    /// # Cancel safety
    /// Not cancel safe: if the future is dropped while it waits for credit, the messages
    /// before were sent and the rest were not (one of them may already have been taken
    /// from the iterator). Send one at a time with [`StreamSender::send`] to know exactly
    /// which.
    pub async fn send_all<I>(&mut self, messages: I) -> Result<()>
    where
        I: IntoIterator<Item = Bytes>,
    {
        let (side, key) = (self.side, self.key);
        if self.stages() {
            // A stream handler's own output, in its task: each message is staged as `send`
            // stages it, and queued with the others in one step (cheaper than the batches
            // below, which queue each message under the lock).
            for payload in messages {
                self.send(payload).await?;
            }
            return Ok(());
        }
        // Fused: an iterator that ended (a typed batch stops at an item it cannot encode)
        // is never asked again.
        let mut messages = messages.into_iter().fuse().peekable();
        let mut batch = Vec::new();
        while messages.peek().is_some() {
            let session = &self.session;
            let credit =
                poll_fn(|cx| session.with(|e| e.stream(side, key).poll_credit(cx))).await?;
            // Taken outside the lock: the messages the credit covers (the last may overrun
            // it, as a single send may). Only this sender spends the credit, so it is still
            // there when they are queued.
            let mut covered = 0;
            while covered < credit && batch.len() < SEND_ALL_BATCH {
                let Some(p) = messages.next() else { break };
                covered += crate::engine::cost(p.len());
                batch.push(p);
            }
            let fits = batch
                .iter()
                .position(|p| self.check_size(p).is_err())
                .unwrap_or(batch.len());
            let step_aside = self.session.with(|e| {
                batch
                    .drain(..fits)
                    .try_for_each(|p| e.stream(side, key).send(p))
                    .map(|()| e.take_frame_waiting())
            })?;
            if let Some(since) = step_aside {
                self.writer_back(since).await;
            }
            if let Some(too_large) = batch.first() {
                return self.check_size(too_large);
            }
        }
        Ok(())
    }

    /// Whether this sender is a stream handler's own output, used in the handler's task:
    /// its small messages are staged (see [`StreamSender::send`]).
    pub(crate) fn stages(&self) -> bool {
        send_stage::stages(&self.session, self.side, self.key)
    }

    /// Waits until there is credit and returns a [`Permit`], which then sends one message
    /// without waiting.
    ///
    /// # Errors
    /// As [`StreamSender::send`] once the stream ended.
    ///
    /// # Cancel safety
    /// Cancel safe: nothing is taken or sent if the future is dropped.
    pub async fn reserve(&mut self) -> Result<Permit<'_>> {
        let (side, key) = (self.side, self.key);
        let session = self.session.clone();
        send_stage::flush(&session, side, key);
        if let Some(since) = session.with(|e| e.take_frame_waiting()) {
            // What earlier permits sent fills a frame: let the writer take it first.
            self.writer_back(since).await;
        }
        poll_fn(|cx| session.with(|e| e.stream(side, key).poll_credit(cx))).await?;
        Ok(Permit { sender: self })
    }

    /// Bytes of credit the sender holds now: a message may be sent without waiting while
    /// this is above zero (it costs its payload plus a fixed 64 bytes; the last one may
    /// overrun the credit). Grows as the receiver reads.
    pub fn credit(&self) -> usize {
        send_stage::flush(&self.session, self.side, self.key);
        let bytes = self
            .session
            .with(|e| e.stream(self.side, self.key).credit());
        usize::try_from(bytes).unwrap_or(usize::MAX)
    }

    /// Ends this direction after the messages already sent: the receiver's stream ends
    /// cleanly once it has read them. (A handler's direction ends when the handler returns;
    /// finishing its sender early only gives it up.)
    ///
    /// # Errors
    /// The stream's error if it had already ended some other way: the end then did not
    /// reach the other side as a clean one.
    ///
    /// # Cancel safety
    /// Cancel safe. It waits only when a handler's sender was moved to another task while
    /// the handler's task, running on another thread, still holds messages it staged (see
    /// [`StreamSender::send`]), until that task's poll returns; dropped there, the sender is
    /// released as a dropped one is (a handler's direction ends when the handler returns).
    pub async fn finish(mut self) -> Result<()> {
        let (side, key) = (self.side, self.key);
        send_stage::flush(&self.session, side, key);
        // A handler's sender moved to another task may have messages staged in the
        // handler's (`send_stage`): they go first.
        let session = &self.session;
        poll_fn(|cx| session.with(|e| e.stream(side, key).poll_unleased(cx))).await;
        self.finished = true;
        let ended = self.session.with(|e| {
            let mut stream = e.stream(side, key);
            let ended = stream.send_ended();
            stream.finish();
            ended
        });
        match ended {
            None | Some(Error::StreamEnded) => Ok(()),
            Some(err) => Err(err),
        }
    }
}

impl Drop for StreamSender {
    fn drop(&mut self) {
        if !self.finished {
            let (side, key) = (self.side, self.key);
            send_stage::flush(&self.session, side, key);
            self.session.with(|e| e.stream(side, key).drop_sender());
        }
    }
}

/// The right to send one message on a [`StreamSender`] without waiting, from
/// [`StreamSender::reserve`]. Dropping it sends nothing and costs nothing.
pub struct Permit<'a> {
    sender: &'a mut StreamSender,
}

impl std::fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("sender", &self.sender)
            .finish()
    }
}

impl Permit<'_> {
    /// Sends one message on the credit, without waiting.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] for a payload over the maximum message size: nothing is
    /// sent, the permit is used up, and the stream carries on. The stream's error if it
    /// ended since the permit was given.
    pub fn send(self, payload: Bytes) -> Result<()> {
        self.sender.check_size(&payload)?;
        let (side, key) = (self.sender.side, self.sender.key);
        self.sender
            .session
            .with(|e| e.stream(side, key).send(payload))
    }
}

/// Receives one direction of a stream: a [`futures::Stream`] of messages, ending with
/// `None` after the sender's clean end, or with one `Err` item.
///
/// A caller's receiver dropped (or [`cancel`](StreamReceiver::cancel)led) before the end
/// cancels the stream, and with it the remote handler.
///
/// A message under 16 KiB is copied out of the connection's read buffer as it is handed
/// out, so keeping it costs only its bytes; a larger one shares that buffer (no copy).
pub struct StreamReceiver {
    session: Arc<Session>,
    side: Side,
    key: Key,
    /// Messages taken from the engine in one step (all that had arrived), read without
    /// locking anything; what was read is reported back for credit.
    batch: RecvBatch,
    /// The end was returned (or the receiver cancelled): nothing more comes.
    done: bool,
}

impl std::fmt::Debug for StreamReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReceiver")
            .field("side", &self.side)
            .field("mux", &self.key.mux_id())
            .field("done", &self.done)
            .finish()
    }
}

impl StreamReceiver {
    pub(crate) fn new(session: Arc<Session>, side: Side, key: Key) -> Self {
        Self {
            session,
            side,
            key,
            batch: RecvBatch::default(),
            done: false,
        }
    }

    /// Tells the engine the receiver is gone, with what it read of what it was handed.
    fn release(&mut self) {
        let (side, key, batch) = (self.side, self.key, &mut self.batch);
        self.session.with(|e| batch.release(e.stream(side, key)));
    }

    /// The next message; `None` after the end.
    ///
    /// # Cancel safety
    /// Cancel safe: a message is never lost by dropping this future.
    pub async fn recv(&mut self) -> Option<Result<Bytes>> {
        futures::StreamExt::next(self).await
    }

    /// Cancels the stream (caller side): the remote handler is cancelled and this receiver
    /// ends (`None`). Does nothing on a handler's input or after the end.
    pub fn cancel(&mut self) {
        if self.side == Side::Caller && !self.done {
            self.done = true;
            self.release();
        }
    }
}

impl Stream for StreamReceiver {
    type Item = Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // A chunked message's parts are joined here, outside the engine's lock; a small
        // message is copied out of the read buffer, so keeping it costs only its bytes.
        self.get_mut().poll_payload(true, cx)
    }
}

impl StreamReceiver {
    /// The next message handed to `read` where it lies (in the frame it arrived in, with no
    /// `Bytes` of its own), for a taker that decodes it at once (typed receivers): what
    /// `read` made of it.
    pub(crate) fn poll_read<R>(
        &mut self,
        read: impl FnOnce(&[u8]) -> R,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<R>>> {
        self.poll_take(cx, |batch| batch.next_with(read))
    }

    /// The next message; with `copy`, a small one copied out of the read buffer.
    fn poll_payload(&mut self, copy: bool, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes>>> {
        self.poll_take(cx, |batch| {
            batch.next(copy).map(|payload| {
                let len = payload.len();
                (payload, len)
            })
        })
    }

    /// The next message, as `take` takes it from the batch (refilled first if empty),
    /// with its payload's length.
    fn poll_take<R>(
        &mut self,
        cx: &mut Context<'_>,
        take: impl FnOnce(&mut RecvBatch) -> Option<(R, usize)>,
    ) -> Poll<Option<Result<R>>> {
        let this = self;
        if this.done {
            return Poll::Ready(None);
        }
        let (side, key) = (this.side, this.key);
        if this.batch.is_empty() {
            let batch = &mut this.batch;
            match this.session.with(|e| batch.refill(e.stream(side, key), cx)) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(()))) => {}
                Poll::Ready(end) => {
                    this.done = true;
                    this.release();
                    return Poll::Ready(end.and_then(|r| r.err()).map(Err));
                }
            }
        }
        let Some((made, len)) = take(&mut this.batch) else {
            // A refill that brought nothing (never expected): poll again.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        };
        if let Some(read) = this.batch.report(len) {
            // Working through a long batch: the sender gets its credit back now.
            this.session.with(|e| e.stream(side, key).count_read(read));
        }
        Poll::Ready(Some(Ok(made)))
    }
}

impl Drop for StreamReceiver {
    fn drop(&mut self) {
        if !self.done {
            self.release();
        }
    }
}

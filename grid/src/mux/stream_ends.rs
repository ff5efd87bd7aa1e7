//! The ends of a stream that users hold: a [`StreamSender`] that waits for credit before
//! each message, and a [`StreamReceiver`] that returns credit as it is read.
//!
//! Credit is what bounds memory: a sender holds one credit per message it may still send,
//! granted by the receiving side as its user consumes messages, so no side ever buffers
//! more than the capacity it declared, whatever the speed difference.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Sleep;

use super::outbox::Outbox;
use super::streams::StreamTables;
use crate::codec::{Flags, HandlerId, Message, Op};
use crate::error::{Error, Result};

/// One direction's credit, shared by its sender end and the reader task that grants it.
pub(crate) struct Credit {
    permits: Semaphore,
    ended: Mutex<Option<Error>>,
}

impl Credit {
    pub(crate) fn new(initial: u32) -> Arc<Self> {
        Arc::new(Self {
            permits: Semaphore::new(initial as usize),
            ended: Mutex::new(None),
        })
    }

    /// Grants the initial window (from the ack).
    pub(crate) fn start(&self, n: u32) {
        self.permits.add_permits(n as usize);
    }

    /// Adds credit the receiving side returned. More than `capacity` outstanding is a
    /// protocol violation by the peer.
    pub(crate) fn grant(&self, n: u32, capacity: u32) -> Result<(), String> {
        if self.permits.available_permits() as u64 + u64::from(n) > u64::from(capacity) {
            return Err(format!(
                "peer granted credit beyond the capacity of {capacity}"
            ));
        }
        self.permits.add_permits(n as usize);
        Ok(())
    }

    /// Ends the direction: the sender's next `reserve` fails with `why`.
    pub(crate) fn end(&self, why: Error) {
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        ended.get_or_insert(why);
        self.permits.close();
    }

    fn ended(&self) -> Error {
        let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        ended.clone().unwrap_or(Error::Cancelled)
    }
}

/// Sends one direction of a stream. Not `Clone`: messages are numbered in the order they
/// are sent.
pub struct StreamSender {
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) credit: Arc<Credit>,
    pub(crate) mux_id: u64,
    pub(crate) handler: HandlerId,
    pub(crate) op: Op,
    pub(crate) seq: Arc<AtomicU32>,
    /// Caller side: dropping the sender ends the direction with EOF.
    pub(crate) eof_on_drop: bool,
    /// Credits already taken from `credit` and not yet spent (taking them in batches keeps
    /// the shared semaphore off the per-message path).
    pub(crate) held: u32,
    /// The largest payload one message may carry (the manager's max message size).
    pub(crate) max_message: usize,
}

impl std::fmt::Debug for StreamSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSender")
            .field("mux_id", &self.mux_id)
            .field("credit", &self.credit.permits.available_permits())
            .finish()
    }
}

impl StreamSender {
    /// Sends one message, first waiting for credit if the receiver is behind.
    ///
    /// # Errors
    /// The stream ended: [`Error::Cancelled`] once the other side finished or cancelled,
    /// [`Error::Disconnected`] if the connection was lost, or the stream's own error.
    ///
    /// # Cancel safety
    /// Cancel safe while waiting for credit. Once sending started, a payload over 64 KiB
    /// goes in several parts; dropping the future then fails the stream.
    pub async fn send(&mut self, payload: Bytes) -> Result<()> {
        self.reserve().await?.send(payload).await
    }

    /// Waits for one credit and holds it in a [`Permit`], which then sends without waiting
    /// for the receiver. Dropping the permit gives the credit back.
    ///
    /// # Cancel safety
    /// Cancel safe: no credit is taken if the future is dropped.
    pub async fn reserve(&mut self) -> Result<Permit<'_>> {
        if self.credit.permits.is_closed() {
            return Err(self.credit.ended());
        }
        if self.held == 0 {
            let credit = self.credit.clone();
            match credit.permits.acquire().await {
                Ok(p) => p.forget(),
                Err(_) => return Err(self.credit.ended()),
            }
            // Take whatever else is available now, too.
            let more = credit.permits.available_permits() as u32;
            if more > 0 {
                if let Ok(p) = credit.permits.try_acquire_many(more) {
                    p.forget();
                    self.held = more;
                }
            }
        } else {
            self.held -= 1;
        }
        Ok(Permit {
            sender: self,
            spent: false,
        })
    }

    /// Messages that could be sent right now without waiting.
    pub fn credit(&self) -> usize {
        self.credit.permits.available_permits() + self.held as usize
    }

    /// Ends this direction (EOF) after the messages already sent.
    ///
    /// # Cancel safety
    /// Cancel safe; if dropped, the EOF is still sent.
    pub async fn close(mut self) -> Result<()> {
        self.eof_on_drop = false;
        let mut eof = self.message(Flags::EOF);
        eof.seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.outbox.send(&eof).await
    }

    fn message(&self, flags: Flags) -> Message {
        let mut m = Message::new(self.op);
        m.mux_id = self.mux_id;
        m.handler = self.handler;
        m.flags = flags;
        m
    }
}

impl Drop for StreamSender {
    fn drop(&mut self) {
        if self.eof_on_drop {
            let mut eof = self.message(Flags::EOF);
            eof.seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
            self.outbox.send_soon(eof);
        }
    }
}

/// One credit of a [`StreamSender`], taken by [`StreamSender::reserve`].
pub struct Permit<'a> {
    sender: &'a mut StreamSender,
    spent: bool,
}

impl Permit<'_> {
    /// Sends one message on the credit.
    ///
    /// # Cancel safety
    /// As [`StreamSender::send`] once sending started.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`] for a payload over the maximum message size: nothing is
    /// sent, the credit is kept, and the stream carries on.
    pub async fn send(mut self, payload: Bytes) -> Result<()> {
        let limit = self.sender.max_message;
        if payload.len() > limit {
            return Err(Error::MessageTooLarge {
                size: payload.len(),
                limit,
            });
        }
        self.spent = true;
        let s = &*self.sender;
        let head = s.message(Flags::NONE);
        s.outbox.send_numbered(head, payload, &s.seq).await
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.spent {
            self.sender.held += 1;
        }
    }
}

/// Counts messages delivered to a [`StreamReceiver`] and not yet read, so the reader task
/// can refuse a peer that sends beyond its credit.
#[derive(Default)]
pub(crate) struct Unread(AtomicU32);

impl Unread {
    /// Counts one more delivered message; false if that exceeds `capacity`.
    pub(crate) fn deliver(&self, capacity: u32) -> bool {
        self.0.fetch_add(1, Ordering::AcqRel) < capacity
    }

    fn read(&self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What to do when the caller's receiver goes away before the stream ended.
pub(crate) struct CancelOnDrop {
    pub(crate) tables: Arc<StreamTables>,
}

/// Receives one direction of a stream: a [`futures::Stream`] of messages, ending with
/// `None` after the sender's EOF, or with one `Err` item.
///
/// A caller's receiver that is dropped (or [`cancel`](StreamReceiver::cancel)led) before
/// the end cancels the remote handler.
pub struct StreamReceiver {
    pub(crate) items: mpsc::UnboundedReceiver<Result<Bytes>>,
    pub(crate) unread: Arc<Unread>,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) mux_id: u64,
    pub(crate) unblock: Op,
    /// Credit is returned in batches of this many messages.
    pub(crate) batch: u32,
    pub(crate) owed: u32,
    pub(crate) deadline: Option<Pin<Box<Sleep>>>,
    pub(crate) cancel_on_drop: Option<CancelOnDrop>,
    pub(crate) done: bool,
}

impl std::fmt::Debug for StreamReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReceiver")
            .field("mux_id", &self.mux_id)
            .field("done", &self.done)
            .finish()
    }
}

impl StreamReceiver {
    /// The next message; `None` after the end.
    ///
    /// # Cancel safety
    /// Cancel safe: a message is never lost by dropping this future.
    pub async fn recv(&mut self) -> Option<Result<Bytes>> {
        futures::StreamExt::next(self).await
    }

    /// Cancels the stream (caller side): the remote handler is cancelled and this receiver
    /// ends. Does nothing on a handler's input or after the end.
    pub fn cancel(&mut self) {
        self.finish();
        if let Some(c) = self.cancel_on_drop.take() {
            if c.tables.client_cancel(self.mux_id) {
                let mut m = Message::new(Op::DisconnectServerMux);
                m.mux_id = self.mux_id;
                self.outbox.send_soon(m);
            }
        }
    }

    fn finish(&mut self) {
        self.done = true;
        self.items.close();
    }

    fn give_credit(&mut self) {
        self.owed += 1;
        if self.owed >= self.batch {
            let mut m = Message::new(self.unblock);
            m.mux_id = self.mux_id;
            m.payload = Some(encode_credit(self.owed));
            self.owed = 0;
            self.outbox.send_soon(m);
        }
    }
}

impl Stream for StreamReceiver {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(deadline) = self.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                self.cancel();
                return Poll::Ready(Some(Err(Error::DeadlineExceeded)));
            }
        }
        match self.items.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => {
                self.unread.read();
                self.give_credit();
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.finish();
                self.cancel_on_drop = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.finish();
                self.cancel_on_drop = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for StreamReceiver {
    fn drop(&mut self) {
        if !self.done {
            self.cancel();
        }
    }
}

/// The payload of an unblock message: the credit returned, as a MessagePack uint.
pub(crate) fn encode_credit(n: u32) -> Bytes {
    let mut buf = Vec::with_capacity(5);
    let _ = rmp::encode::write_uint(&mut buf, u64::from(n));
    Bytes::from(buf)
}

/// Reads the credit of an unblock message.
pub(crate) fn decode_credit(payload: Option<&[u8]>) -> Result<u32, String> {
    let mut p = payload.ok_or("unblock without credit")?;
    rmp::decode::read_int(&mut p).map_err(|e| format!("bad credit: {e}"))
}

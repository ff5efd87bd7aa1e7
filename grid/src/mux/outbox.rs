//! The sending side of a live socket as the rest of the crate sees it: two queues that the
//! writer task drains (messages, merged; and chunks of large payloads, interleaved).
//!
//! An `Outbox` holds only channel ends, so calls, streams and handlers can send without
//! knowing about sockets or tasks. When the socket dies the writer drops the receiving ends
//! and every send fails at once with `Disconnected`.

use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::codec::{Flags, Message};
use crate::error::{Error, Result};

/// What the writer task takes from the queue: one encoded message, or several produced
/// together (the answers to one received frame), which it merges like any others.
pub(crate) enum Outgoing {
    One(Bytes),
    Batch(Vec<Bytes>),
    /// The answer to a WebSocket-level ping (not a grid message).
    WebSocketPong(Bytes),
}

/// Payloads larger than this travel in chunks of this size through the bulk lane, which
/// the writer interleaves with other traffic.
pub(crate) const CHUNK: usize = 64 * 1024;

/// Encodes a sender's small messages into slices of one larger buffer, so that a stream
/// sending many small messages does not allocate once per message.
#[derive(Default)]
pub(crate) struct Arena {
    scratch: Vec<u8>,
    buf: bytes::BytesMut,
}

thread_local! {
    static THREAD_ARENA: std::cell::RefCell<Arena> = std::cell::RefCell::new(Arena::default());
}

impl Arena {
    const BLOCK: usize = 4 * 1024;
    /// Payloads up to this size are encoded into an arena; larger ones get their own buffer.
    const SMALL: usize = 1024;

    pub(crate) fn encode(&mut self, msg: &Message, checksum: bool) -> Bytes {
        self.scratch.clear();
        msg.encode_into(&mut self.scratch, checksum);
        let mut scratch = std::mem::take(&mut self.scratch);
        let bytes = self.copy(&scratch);
        scratch.clear();
        self.scratch = scratch;
        bytes
    }

    /// Copies `data` into the arena.
    fn copy(&mut self, data: &[u8]) -> Bytes {
        if self.buf.capacity() - self.buf.len() < data.len() {
            self.buf = bytes::BytesMut::with_capacity(Self::BLOCK.max(data.len()));
        }
        self.buf.extend_from_slice(data);
        self.buf.split().freeze()
    }
}

/// Runs `write` into a reused per-thread buffer and returns what it wrote as `Bytes` from the
/// per-thread arena (small results) or a buffer of their own (large ones): typed payloads are
/// encoded without an allocation each.
pub(crate) fn encode_with<E>(
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<Bytes, E> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(256));
    }
    let mut write = Some(write);
    let pooled = SCRATCH.try_with(|scratch| {
        let mut scratch = scratch.try_borrow_mut().ok()?;
        scratch.clear();
        let result = write.take().map(|w| w(&mut scratch))?;
        Some(result.map(|()| {
            if scratch.len() > Arena::SMALL {
                return Bytes::copy_from_slice(&scratch);
            }
            THREAD_ARENA
                .try_with(|a| a.try_borrow_mut().ok().map(|mut a| a.copy(&scratch)))
                .ok()
                .flatten()
                .unwrap_or_else(|| Bytes::copy_from_slice(&scratch))
        }))
    });
    match pooled.ok().flatten() {
        Some(result) => result,
        None => {
            let mut buf = Vec::with_capacity(256);
            match write.take() {
                Some(w) => w(&mut buf).map(|()| Bytes::from(buf)),
                None => Ok(Bytes::from(buf)),
            }
        }
    }
}

/// A chunk of a large payload, and who wants to know when it is on the socket.
pub(crate) struct BulkItem {
    pub(crate) bytes: Bytes,
    pub(crate) written: Option<oneshot::Sender<()>>,
}

/// The two queues of a live socket.
pub(crate) struct Outbox {
    out: mpsc::Sender<Outgoing>,
    bulk: mpsc::Sender<BulkItem>,
    checksum: bool,
}

impl Outbox {
    pub(crate) fn new(
        out: mpsc::Sender<Outgoing>,
        bulk: mpsc::Sender<BulkItem>,
        checksum: bool,
    ) -> Self {
        Self {
            out,
            bulk,
            checksum,
        }
    }

    /// Whether messages carry checksums on this socket.
    pub(crate) fn checksum(&self) -> bool {
        self.checksum
    }

    /// Encodes a message; small ones go into the current thread's arena (no allocation per
    /// message).
    pub(crate) fn encode(&self, msg: &Message) -> Bytes {
        if msg.payload.as_ref().is_some_and(|p| p.len() > Arena::SMALL) {
            return Bytes::from(msg.encode(self.checksum));
        }
        // `try_with`: a message sent from a destructor while the thread exits finds no arena.
        THREAD_ARENA
            .try_with(|a| {
                a.try_borrow_mut()
                    .ok()
                    .map(|mut a| a.encode(msg, self.checksum))
            })
            .ok()
            .flatten()
            .unwrap_or_else(|| Bytes::from(msg.encode(self.checksum)))
    }

    /// Queues a message for the writer task.
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped before it completes, the message was not queued.
    pub(crate) async fn send(&self, msg: &Message) -> Result<()> {
        self.out
            .send(Outgoing::One(self.encode(msg)))
            .await
            .map_err(|_| Error::Disconnected)
    }

    /// Sends `head` with `payload`: in one message when it is small, else in chunks (flag
    /// MORE on all but the last, every part repeating the header) through the bulk lane.
    ///
    /// # Cancel safety
    /// If the future is dropped after some chunks were queued, the peer holds a partial
    /// payload: the caller must then send a cancel through [`Outbox::send_bulk_soon`], which
    /// travels behind those chunks and tells the peer to drop them.
    ///
    /// With `wait_written`, a chunked payload returns only once its last chunk is on the
    /// socket, so that a following message of the same mux (sent through the normal lane)
    /// cannot overtake it: streams need that order.
    pub(crate) async fn send_payload(
        &self,
        mut head: Message,
        payload: Option<Bytes>,
        wait_written: bool,
    ) -> Result<()> {
        let p = match payload {
            Some(p) if p.len() > CHUNK => p,
            small => {
                head.payload = small;
                return self.send(&head).await;
            }
        };
        let base = head.flags;
        let parts = p.len().div_ceil(CHUNK);
        for i in 0..parts {
            let end = ((i + 1) * CHUNK).min(p.len());
            head.flags = if i + 1 < parts {
                base | Flags::MORE
            } else {
                base
            };
            head.payload = Some(p.slice(i * CHUNK..end));
            let last = i + 1 == parts;
            let (written, done) = if last && wait_written {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            } else {
                (None, None)
            };
            let chunk = BulkItem {
                bytes: self.encode(&head),
                written,
            };
            self.bulk
                .send(chunk)
                .await
                .map_err(|_| Error::Disconnected)?;
            if let Some(done) = done {
                done.await.map_err(|_| Error::Disconnected)?;
            }
        }
        Ok(())
    }

    /// Sends a stream message numbered from `seq` (the next number is taken only once the
    /// message is sure to be queued, so a dropped send leaves no gap).
    ///
    /// # Cancel safety
    /// Cancel safe for payloads up to [`CHUNK`]; a larger payload dropped half-way leaves a
    /// partial message that fails the stream on the peer.
    pub(crate) async fn send_numbered(
        &self,
        mut head: Message,
        payload: Bytes,
        seq: &AtomicU32,
    ) -> Result<()> {
        if payload.len() <= CHUNK {
            let permit = self.out.reserve().await.map_err(|_| Error::Disconnected)?;
            head.seq = seq.fetch_add(1, Ordering::Relaxed) + 1;
            head.payload = Some(payload);
            permit.send(Outgoing::One(self.encode(&head)));
            return Ok(());
        }
        head.seq = seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.send_payload(head, Some(payload), true).await
    }

    /// Queues a message behind the chunks already in the bulk lane, without waiting.
    pub(crate) fn send_bulk_soon(&self, msg: Message) {
        let item = BulkItem {
            bytes: self.encode(&msg),
            written: None,
        };
        if let Err(mpsc::error::TrySendError::Full(item)) = self.bulk.try_send(item) {
            let bulk = self.bulk.clone();
            tokio::spawn(async move {
                let _ = bulk.send(item).await;
            });
        }
    }

    /// Queues a message if there is room right now. Returns false if the queue is full or
    /// the writer is gone.
    pub(crate) fn try_send(&self, msg: &Message) -> bool {
        self.out.try_send(Outgoing::One(self.encode(msg))).is_ok()
    }

    /// Queues a message without waiting: at once if there is room, else from a small task
    /// (used from `Drop`, which cannot wait).
    pub(crate) fn send_soon(&self, msg: Message) {
        self.queue_soon(Outgoing::One(self.encode(&msg)));
    }

    /// Queues already-encoded messages as one item, like [`Outbox::send_soon`].
    pub(crate) fn send_batch_soon(&self, batch: Vec<Bytes>) {
        self.queue_soon(Outgoing::Batch(batch));
    }

    /// Queues the answer to a WebSocket-level ping.
    pub(crate) fn websocket_pong(&self, payload: Bytes) {
        self.queue_soon(Outgoing::WebSocketPong(payload));
    }

    fn queue_soon(&self, item: Outgoing) {
        if let Err(mpsc::error::TrySendError::Full(item)) = self.out.try_send(item) {
            let out = self.out.clone();
            tokio::spawn(async move {
                let _ = out.send(item).await;
            });
        }
    }
}

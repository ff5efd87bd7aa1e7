//! One live socket of a connection: its outgoing queue, its call tables and its liveness.
//!
//! A session exists from a successful handshake until its socket dies. Nothing survives it:
//! when it ends, its tables are closed (every waiting caller gets its error, every handler
//! is aborted) and its queue's receiver (owned by the writer task) is dropped, so anything
//! still trying to send fails at once instead of waiting on a dead socket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use crate::codec::{Flags, FrameLimits, Message};
use crate::error::{Error, Result};
use crate::mux::CallTables;

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

pub(crate) struct Session {
    out: mpsc::Sender<Outgoing>,
    bulk: mpsc::Sender<Bytes>,
    pub(crate) calls: CallTables,
    pub(crate) checksum: bool,
    pub(crate) limits: FrameLimits,
    started: Instant,
    last_seen_ms: AtomicU64,
}

impl Session {
    pub(crate) fn new(
        (out, bulk): (mpsc::Sender<Outgoing>, mpsc::Sender<Bytes>),
        idle: Arc<Notify>,
        checksum: bool,
        limits: FrameLimits,
    ) -> Self {
        Self {
            out,
            bulk,
            calls: CallTables::new(idle),
            checksum,
            limits,
            started: Instant::now(),
            last_seen_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn encode(&self, msg: &Message) -> Bytes {
        Bytes::from(msg.encode(self.checksum))
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
    /// payload: the caller must then send a cancel through [`Session::send_bulk_soon`], which
    /// travels behind those chunks and tells the peer to drop them.
    pub(crate) async fn send_payload(
        &self,
        mut head: Message,
        payload: Option<Bytes>,
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
            self.bulk
                .send(self.encode(&head))
                .await
                .map_err(|_| Error::Disconnected)?;
        }
        Ok(())
    }

    /// Queues a message behind the chunks already in the bulk lane, without waiting.
    pub(crate) fn send_bulk_soon(&self, msg: Message) {
        if let Err(mpsc::error::TrySendError::Full(bytes)) = self.bulk.try_send(self.encode(&msg)) {
            let bulk = self.bulk.clone();
            tokio::spawn(async move {
                let _ = bulk.send(bytes).await;
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

    /// Queues already-encoded messages as one item, like [`Session::send_soon`].
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

    /// Records that the peer just sent something.
    pub(crate) fn saw_peer(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_seen_ms.store(ms, Ordering::Relaxed);
    }

    /// How long the peer has been silent.
    pub(crate) fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_seen_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Nanoseconds since the session started, carried by pings to measure round trips.
    pub(crate) fn clock_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }
}

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

use crate::codec::{FrameLimits, Message};
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

pub(crate) struct Session {
    out: mpsc::Sender<Outgoing>,
    pub(crate) calls: CallTables,
    pub(crate) checksum: bool,
    pub(crate) limits: FrameLimits,
    started: Instant,
    last_seen_ms: AtomicU64,
}

impl Session {
    pub(crate) fn new(
        out: mpsc::Sender<Outgoing>,
        idle: Arc<Notify>,
        checksum: bool,
        limits: FrameLimits,
    ) -> Self {
        Self {
            out,
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

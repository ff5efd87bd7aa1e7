//! One live socket of a connection: its outbox, its call tables and its liveness.
//!
//! A session exists from a successful handshake until its socket dies. Nothing survives it:
//! when it ends, its tables are closed (every waiting caller gets its error, every handler
//! is aborted) and its queue's receiver (owned by the writer task) is dropped, so anything
//! still trying to send fails at once instead of waiting on a dead socket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::codec::FrameLimits;
use crate::error::Error;
use crate::mux::{CallTables, Outbox, StreamTables};

pub(crate) struct Session {
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) calls: CallTables,
    pub(crate) streams: Arc<StreamTables>,
    pub(crate) limits: FrameLimits,
    started: Instant,
    last_seen_ms: AtomicU64,
}

impl Session {
    pub(crate) fn new(outbox: Outbox, idle: Arc<Notify>, limits: FrameLimits) -> Self {
        Self {
            outbox: Arc::new(outbox),
            calls: CallTables::new(idle.clone()),
            streams: Arc::new(StreamTables::new(idle)),
            limits,
            started: Instant::now(),
            last_seen_ms: AtomicU64::new(0),
        }
    }

    /// Ends every call and stream of this session with `err`.
    pub(crate) fn close(&self, err: &Error) {
        self.calls.close(err);
        self.streams.close(err);
    }

    /// Calls and streams in flight: (made or opened here, served here).
    pub(crate) fn in_flight(&self) -> (usize, usize) {
        let (calls, handlers) = self.calls.counts();
        let (opened, served) = self.streams.counts();
        (calls + opened, handlers + served)
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

//! Per-connection counters, updated with relaxed atomics on the hot path and read as a
//! [`ConnectionStats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::codec::HandlerId;

/// A snapshot of one connection's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// Protocol messages received (a merged frame counts each message it carries).
    pub messages_in: u64,
    /// Protocol messages sent.
    pub messages_out: u64,
    /// WebSocket frames received.
    pub frames_in: u64,
    /// WebSocket frames sent.
    pub frames_out: u64,
    /// Received frames that carried several merged messages.
    pub merged_frames_in: u64,
    /// Sent frames that carried several merged messages.
    pub merged_frames_out: u64,
    /// Bytes received (frame payloads).
    pub bytes_in: u64,
    /// Bytes sent (frame payloads).
    pub bytes_out: u64,
    /// Connections established after the first one.
    pub reconnects: u64,
    /// Times the remote came back with a new instance id (it restarted).
    pub remote_restarts: u64,
    /// Sockets closed because a side broke the protocol or went past the other's limits:
    /// found here, or reported by the peer's close frame (`Connection::last_error` says
    /// what was wrong).
    pub protocol_errors: u64,
    /// Calls to the remote's `#[grid(idempotent)]` methods made again after a lost
    /// connection or a busy answer, by handler id (ordered by id).
    pub retries: Vec<(HandlerId, u64)>,
    /// Round-trip time of the last answered ping.
    pub last_ping_rtt: Option<Duration>,
    /// Bytes of chunked payloads received so far whose last chunk has not arrived.
    pub assembling_bytes: u64,
    /// Calls and streams this side made or opened that have not finished.
    pub in_flight_calls: usize,
    /// Handlers (single calls and streams) running on this side for the remote.
    pub in_flight_handlers: usize,
    /// Bytes of stream windows this side grants the remote now: what its streams may have
    /// in flight to this side (within `ManagerBuilder::stream_budget`, beyond 4 KiB a
    /// stream).
    pub stream_window_bytes: u64,
    /// This side's window on its large payloads to the remote: the bytes of chunks it may
    /// have sent that the remote has not yet confirmed reading (PROTOCOL.md §2, "The
    /// chunk window"). It starts at 256 KiB and grows on a long path.
    pub chunk_window_bytes: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub merged_frames_in: AtomicU64,
    pub merged_frames_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub reconnects: AtomicU64,
    pub remote_restarts: AtomicU64,
    pub protocol_errors: AtomicU64,
    /// Retries by handler (few, and counted off the call path: a lock is fine).
    pub retries: std::sync::Mutex<std::collections::BTreeMap<HandlerId, u64>>,
}

impl Counters {
    /// Frames received and sent so far.
    pub(crate) fn frames(&self) -> u64 {
        self.frames_in
            .load(Relaxed)
            .wrapping_add(self.frames_out.load(Relaxed))
    }

    pub(crate) fn frame_in(&self, messages: usize, bytes: usize) {
        self.frames_in.fetch_add(1, Relaxed);
        self.messages_in.fetch_add(messages as u64, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
        if messages > 1 {
            self.merged_frames_in.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn frame_out(&self, messages: usize, bytes: usize) {
        self.frames_out.fetch_add(1, Relaxed);
        self.messages_out.fetch_add(messages as u64, Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
        if messages > 1 {
            self.merged_frames_out.fetch_add(1, Relaxed);
        }
    }

    /// One more retry of a call to `handler`.
    pub(crate) fn retried(&self, handler: HandlerId) {
        *self
            .retries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(handler)
            .or_default() += 1;
    }

    /// The counters, with what the live session reports (zeros without one).
    pub(crate) fn snapshot(&self, live: Live) -> ConnectionStats {
        let Live {
            in_flight_calls,
            in_flight_handlers,
            assembling_bytes,
            last_ping_rtt,
            stream_window_bytes,
            chunk_window_bytes,
        } = live;
        ConnectionStats {
            messages_in: self.messages_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            frames_in: self.frames_in.load(Relaxed),
            frames_out: self.frames_out.load(Relaxed),
            merged_frames_in: self.merged_frames_in.load(Relaxed),
            merged_frames_out: self.merged_frames_out.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            remote_restarts: self.remote_restarts.load(Relaxed),
            protocol_errors: self.protocol_errors.load(Relaxed),
            retries: self
                .retries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(h, n)| (*h, *n))
                .collect(),
            last_ping_rtt,
            assembling_bytes,
            in_flight_calls,
            in_flight_handlers,
            stream_window_bytes,
            chunk_window_bytes,
        }
    }
}

/// What a live session adds to a connection's snapshot (zeros without one).
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub(crate) in_flight_calls: usize,
    pub(crate) in_flight_handlers: usize,
    pub(crate) assembling_bytes: u64,
    pub(crate) last_ping_rtt: Option<Duration>,
    pub(crate) stream_window_bytes: u64,
    pub(crate) chunk_window_bytes: u64,
}

/// What the calls to many peers (`crate::many`) of one manager came to.
#[derive(Debug, Default)]
pub(crate) struct FanoutCounters {
    quorums_met: AtomicU64,
    quorums_failed: AtomicU64,
    hedged_calls: AtomicU64,
    hedges_sent: AtomicU64,
    hedges_won: AtomicU64,
}

/// A snapshot of [`FanoutCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fanout {
    pub quorums_met: u64,
    pub quorums_failed: u64,
    pub hedged_calls: u64,
    pub hedges_sent: u64,
    pub hedges_won: u64,
}

impl FanoutCounters {
    pub(crate) fn quorum(&self, met: bool) {
        let c = if met {
            &self.quorums_met
        } else {
            &self.quorums_failed
        };
        c.fetch_add(1, Relaxed);
    }

    /// A hedged call that sent `extra` calls beyond the first, answered by one of them or
    /// not.
    pub(crate) fn hedged(&self, extra: usize, won_by_extra: bool) {
        self.hedged_calls.fetch_add(1, Relaxed);
        self.hedges_sent.fetch_add(extra as u64, Relaxed);
        if won_by_extra {
            self.hedges_won.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> Fanout {
        let n = |c: &AtomicU64| c.load(Relaxed);
        Fanout {
            quorums_met: n(&self.quorums_met),
            quorums_failed: n(&self.quorums_failed),
            hedged_calls: n(&self.hedged_calls),
            hedges_sent: n(&self.hedges_sent),
            hedges_won: n(&self.hedges_won),
        }
    }
}

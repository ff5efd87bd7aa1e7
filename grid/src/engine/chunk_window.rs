//! The sender's window on large payloads, with no I/O: how many bytes of chunks may be on
//! their way to the peer and not yet read by it.
//!
//! Without it, a large payload goes to the socket as fast as the kernel takes it, and on a
//! fast path the peer's receive buffer fills with megabytes of it: every small message
//! written after that (a call, an answer, credit) waits behind them (PROTOCOL.md §2, "The
//! chunk window").
//!
//! The peer's pongs say what it has read: every connection ping carries, after its time,
//! the count of chunk bytes this side had sent when the ping was queued, and the peer reads
//! in order, so its pong proves it has read them all.
//!
//! The window starts at [`CHUNK_WINDOW_START`]. Once per round trip (at least [`MIN_SPAN`]),
//! at a confirmation, it looks at what the peer read in that span: when half the window or
//! more was read per round trip, the window is what holds the sender back, and it doubles,
//! up to the peer's reassembly window; otherwise (the path or the peer is the limit, or
//! little is sent) it stays. So on a path of tens of microseconds, where a reader's pace
//! and not the window is the limit, it stays at its start, and on a long path it grows to
//! about twice what the path carries per round trip.
//!
//! It doubles every round trip, not every few as a stream's window does, because a large
//! payload is often sent once: a 16 MiB answer over a 10 ms path lasts a few round trips.
//! It keeps its size while nothing is sent: it holds no memory (the sender has the
//! payload anyway), and the next large payload on the same path should not start over.
//! And it does not come down when the pings show a queue, as a stream's does: the pongs
//! of a busy path come in bursts (measured through peerbench's 10 ms link emulator: round
//! trips 1-4 ms over the path's), and cutting the window at each cut 16 MiB echoes from
//! 540 to 70-100 MiB/s.
//!
//! Invariants:
//! - `read <= sent`: a pong never confirms more than was sent, whatever it says;
//! - a chunk is taken only while `sent - read` is below the window, and whenever that
//!   closes the window a ping follows the chunk, so an answer to it reopens the window;
//! - the window stays between its start and the peer's reassembly window.

use std::time::{Duration, Instant};

use super::outbox::CHUNK;
use super::tuning::Rtt;

/// What the window starts with: four chunks. Measured on loopback beside back-to-back
/// 16 MiB echoes (peerbench `large`, 2 cores): 256 KiB kept a small call's p99 at 7.6-9x
/// its idle p99 (7 runs), 320 KiB at 8-12x, 512 KiB at 11-12x, no window at 16-26x; the
/// echoes' rate (770-1,130 MiB/s) moved less between these than between runs.
pub(crate) const CHUNK_WINDOW_START: u64 = 256 * 1024;

/// On a long path (a round trip of [`LONG_PATH`] or more) a ping follows every this much of
/// the window (at least a chunk apart), so that the window reopens a little at a time, as
/// the pongs come back, rather than half of it at once a round trip apart: through a 10 ms
/// emulated link, 16 MiB echoes went at 360 MiB/s with a ping every half window and at
/// 510-540 MiB/s with one every sixteenth. On a shorter path, a ping every half window
/// costs less: on loopback beside 16 MiB echoes, a ping behind every chunk cost the echoes
/// 15-20 % of their rate.
const PROBE_EVERY: u64 = 16;
/// The round trip from which a path is long (see [`PROBE_EVERY`]).
const LONG_PATH: Duration = Duration::from_millis(1);

/// The shortest span a sizing decision looks at: on a short path, what a round trip of
/// tens of microseconds reads is one pong's burst, not a rate.
const MIN_SPAN: Duration = Duration::from_millis(2);

/// Chunk bytes sent and confirmed read, and how many may be outstanding.
#[derive(Debug)]
pub(super) struct ChunkWindow {
    sent: u64,
    read: u64,
    /// `sent` when the last ping was asked for.
    probed: u64,
    window: u64,
    cap: u64,
    /// The span being measured: since when, and the bytes confirmed in it.
    since: Option<Instant>,
    span_read: u64,
}

impl ChunkWindow {
    /// A window for a peer that holds at most `cap` bytes of chunked payloads half
    /// received (its reassembly window).
    pub(super) fn new(cap: u64) -> Self {
        let start = CHUNK_WINDOW_START.min(cap.max(1));
        Self {
            sent: 0,
            read: 0,
            probed: 0,
            window: start,
            cap: cap.max(start),
            since: None,
            span_read: 0,
        }
    }

    /// Whether another chunk may be taken.
    pub(super) fn is_open(&self) -> bool {
        self.sent - self.read < self.window
    }

    /// Chunk bytes taken so far: what a ping queued now confirms when answered.
    pub(super) fn sent(&self) -> u64 {
        self.sent
    }

    /// The window's size now.
    pub(super) fn size(&self) -> u64 {
        self.window
    }

    /// A chunk of `n` bytes was taken, on a path of round trip `rtt`: whether a ping should
    /// follow it (every half window, or every [`PROBE_EVERY`]th of it on a long path, but at
    /// least a chunk apart; and whenever the window is now closed).
    pub(super) fn on_sent(&mut self, n: u64, rtt: &Rtt) -> bool {
        self.sent += n;
        let long = rtt.get().is_some_and(|r| r >= LONG_PATH);
        let every = if long {
            self.window / PROBE_EVERY
        } else {
            self.window / 2
        };
        if self.sent - self.probed >= every.max(CHUNK as u64) || !self.is_open() {
            self.probed = self.sent;
            true
        } else {
            false
        }
    }

    /// A pong confirmed that the peer read the first `offset` chunk bytes, at `now`: whether
    /// that reopened a closed window (the writer has chunks to take).
    pub(super) fn on_confirmed(&mut self, now: Instant, rtt: &Rtt, offset: u64) -> bool {
        let was_open = self.is_open();
        let offset = offset.min(self.sent);
        if offset <= self.read {
            return false;
        }
        self.span_read += offset - self.read;
        self.read = offset;
        self.resize(now, rtt);
        if self.read == self.sent {
            // All read: a span starts with the next chunk, not across the quiet.
            self.since = None;
            self.span_read = 0;
        }
        !was_open && self.is_open()
    }

    /// Asserts the invariants of the module's doc.
    #[cfg(any(test, fuzzing))]
    pub(super) fn check(&self) {
        assert!(self.read <= self.sent, "confirmed more than was sent");
        assert!(
            self.sent - self.read < self.window + CHUNK as u64,
            "{} chunk bytes unconfirmed, window {}",
            self.sent - self.read,
            self.window
        );
        assert!(self.window <= self.cap, "the window passed the peer's");
    }

    /// Sizes the window once a span has passed (see the module's doc).
    fn resize(&mut self, now: Instant, rtt: &Rtt) {
        let Some(min) = rtt.get() else {
            return;
        };
        let since = *self.since.get_or_insert(now);
        let elapsed = now.saturating_duration_since(since);
        if elapsed < min.max(MIN_SPAN) {
            return;
        }
        let per_rtt = u128::from(std::mem::take(&mut self.span_read)) * min.as_nanos()
            / elapsed.as_nanos().max(1);
        let per_rtt = u64::try_from(per_rtt).unwrap_or(u64::MAX);
        self.since = Some(now);
        if per_rtt.saturating_mul(2) >= self.window {
            self.window = self.window.saturating_mul(2).min(self.cap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_closes_after_its_size_unconfirmed_with_a_ping_behind_the_last_chunk() {
        let mut w = ChunkWindow::new(64 << 20);
        let chunk = 64 * 1024;
        let mut pings = Vec::new();
        while w.is_open() {
            if w.on_sent(chunk, &Rtt::default()) {
                pings.push(w.sent());
            }
        }
        assert_eq!(w.sent(), CHUNK_WINDOW_START);
        // A ping each half window, and one behind the chunk that closed it.
        assert_eq!(pings, vec![CHUNK_WINDOW_START / 2, CHUNK_WINDOW_START]);
        let now = Instant::now();
        let rtt = Rtt::default();
        assert!(w.on_confirmed(now, &rtt, 192 * 1024), "reopened");
        assert!(w.is_open());
        // An old or repeated confirmation does nothing.
        assert!(!w.on_confirmed(now, &rtt, 64 * 1024));
        assert!(w.is_open());
    }

    #[test]
    fn on_a_long_path_a_ping_follows_every_sixteenth_of_the_window_or_every_chunk() {
        let mut path = Rtt::default();
        path.sample(Duration::from_millis(10), Instant::now());
        let mut w = ChunkWindow::new(64 << 20);
        let pings = (0..5).filter(|_| w.on_sent(64 * 1024, &path)).count();
        assert_eq!(pings, 5);
    }

    #[test]
    fn a_confirmation_beyond_what_was_sent_counts_only_what_was_sent() {
        let mut w = ChunkWindow::new(64 << 20);
        w.on_sent(CHUNK_WINDOW_START, &Rtt::default());
        assert!(!w.is_open());
        w.on_confirmed(Instant::now(), &Rtt::default(), u64::MAX);
        w.on_sent(CHUNK_WINDOW_START, &Rtt::default());
        assert!(!w.is_open(), "the lie opened no more than one window");
    }

    #[test]
    fn a_window_smaller_than_the_start_is_the_peers_reassembly_window() {
        let mut w = ChunkWindow::new(100 * 1024);
        assert_eq!(w.size(), 100 * 1024);
        assert!(w.on_sent(100 * 1024, &Rtt::default()));
        assert!(!w.is_open());
    }

    /// Sends through a path of round trip `rtt_ms` that carries at most `per_ms` bytes a
    /// millisecond, confirming bytes a round trip after they left, for `ms` milliseconds.
    fn run(rtt_ms: u64, per_ms: u64, ms: u64, cap: u64) -> (ChunkWindow, Rtt, Instant) {
        let t0 = Instant::now();
        let mut path = Rtt::default();
        path.sample(Duration::from_millis(rtt_ms), t0);
        let mut w = ChunkWindow::new(cap);
        let mut in_flight: std::collections::VecDeque<(u64, u64)> = Default::default();
        for t in 0..ms {
            let now = t0 + Duration::from_millis(t);
            while in_flight.front().is_some_and(|(at, _)| *at <= t) {
                if let Some((_, offset)) = in_flight.pop_front() {
                    path.sample(Duration::from_millis(rtt_ms), now);
                    w.on_confirmed(now, &path, offset);
                }
            }
            let mut budget = per_ms;
            while w.is_open() && budget > 0 {
                let n = budget.min(64 * 1024);
                budget -= n;
                w.on_sent(n, &path);
                in_flight.push_back((t + rtt_ms, w.sent()));
            }
        }
        (w, path, t0 + Duration::from_millis(ms))
    }

    #[test]
    fn on_a_long_path_the_window_grows_to_what_the_path_carries_and_stops_at_the_cap() {
        // 10 ms, 100 MB/s: a megabyte in flight fills it.
        let (w, ..) = run(10, 100_000, 2_000, 64 << 20);
        assert!(w.size() >= 1_000_000, "grew to {}", w.size());
        assert!(w.size() <= 4_000_000, "but not far past it: {}", w.size());
        let (capped, ..) = run(10, 100_000, 2_000, 512 * 1024);
        assert_eq!(capped.size(), 512 * 1024);
    }

    #[test]
    fn on_a_short_path_the_window_stays_at_its_start() {
        let (w, ..) = run(1, 100_000, 2_000, 64 << 20);
        assert_eq!(w.size(), CHUNK_WINDOW_START);
    }

    #[test]
    fn the_window_keeps_its_size_through_a_quiet_spell_and_the_quiet_is_not_measured() {
        let (mut w, path, end) = run(10, 100_000, 2_000, 64 << 20);
        // Everything still in flight is read, then nothing is sent for a minute.
        w.on_confirmed(end, &path, w.sent());
        let grown = w.size();
        assert!(grown > CHUNK_WINDOW_START);
        // Then a window's worth goes, and half of it is read within one round trip: the
        // window held the sender back, so it doubles. Measured across the quiet minute, the
        // span would have read almost nothing per round trip.
        let t1 = end + Duration::from_secs(60);
        let base = w.sent();
        while w.is_open() {
            w.on_sent(64 * 1024, &path);
        }
        let quarter = grown / 4;
        w.on_confirmed(t1 + Duration::from_millis(10), &path, base + quarter);
        assert_eq!(w.size(), grown, "kept through the quiet");
        w.on_confirmed(t1 + Duration::from_millis(20), &path, base + 2 * quarter);
        assert_eq!(w.size(), 2 * grown);
    }
}
